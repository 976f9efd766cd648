"""Pydantic models of the files in mappings/ and the clinical rules they carry (bands, response).

Codes in the files are written `prefix:code` (`loinc:44261-6`, `assessment:madrs-total`); the
prefixes resolve to the code system URIs in `SYSTEMS`.
"""

from __future__ import annotations

from functools import cached_property
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

CANONICAL = "https://fhir-bridge.org/fhir"
UCUM = "http://unitsofmeasure.org"
SID = f"{CANONICAL}/sid"

SYSTEMS: dict[str, str] = {
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "unii": "http://fdasis.nlm.nih.gov",
    "assessment": f"{CANONICAL}/CodeSystem/assessment",
    "severity": f"{CANONICAL}/CodeSystem/severity",
    "visit": f"{CANONICAL}/CodeSystem/visit",
    "dose-role": f"{CANONICAL}/CodeSystem/dose-role",
}


def split_code(ref: str) -> tuple[str, str]:
    """`prefix:code` → (system URI, code)."""
    prefix, _, code = ref.partition(":")
    return SYSTEMS[prefix], code


def _check_code_ref(ref: str) -> str:
    prefix, sep, code = ref.partition(":")
    if not sep or prefix not in SYSTEMS or not code:
        raise ValueError(f"code {ref!r} must be prefix:code with a prefix in {sorted(SYSTEMS)}")
    return ref


class Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AnswerOption(Spec):
    code: str
    display: str
    score: int

    _code = field_validator("code")(_check_code_ref)


class ItemSpec(Spec):
    link_id: str = Field(pattern=r"^[A-Za-z0-9.\-]+$")
    code: str
    text: str
    min: int
    max: int
    answers: str | None = None
    summed: bool = True

    _code = field_validator("code")(_check_code_ref)

    @property
    def coding(self) -> tuple[str, str]:
        return split_code(self.code)


class TotalSpec(Spec):
    code: str
    display: str
    min: int
    max: int
    # "sum": total = sum of the summed items; "highest-positive": the position (1-based) of
    # the last item scored above its minimum, 0 when none (C-SSRS ideation severity).
    rule: Literal["sum", "highest-positive"]

    _code = field_validator("code")(_check_code_ref)


class Band(Spec):
    code: str = Field(pattern=r"^[a-z0-9\-]+$")
    display: str
    min: int
    max: int


class ItemRule(Spec):
    """Interpretation from item values: any listed item ≥ `min` gives `code`."""

    items: list[str]
    min: int
    code: str
    display: str
    otherwise_code: str
    otherwise_display: str
    source: str


class ResponseRule(Spec):
    min_reduction_percent: float = Field(gt=0, le=100)
    source: str


class RemissionRule(Spec):
    comparator: Literal["lt", "le"]
    threshold: int
    setting: str | None = None
    source: str


class InstrumentSpec(Spec):
    """One rating scale: items, answer options, scoring rule, bands and outcome definitions."""

    id: str = Field(pattern=r"^[a-z0-9\-]+$")
    name: str
    title: str
    description: str
    version: str = "1"
    source: list[str] = Field(min_length=1)
    rater: Literal["clinician", "self"]
    recall: str
    panel_code: str | None
    total: TotalSpec
    answer_sets: dict[str, list[AnswerOption]] = {}
    items: list[ItemSpec] = Field(min_length=1)
    bands: list[Band]
    bands_source: str | None
    item_rule: ItemRule | None = None
    response: ResponseRule | None
    remission: RemissionRule | None

    @model_validator(mode="after")
    def _consistent(self) -> InstrumentSpec:
        link_ids = [item.link_id for item in self.items]
        if len(set(link_ids)) != len(link_ids):
            raise ValueError("item link_id values must be unique")
        codes = [item.code for item in self.items] + [self.total.code]
        if len(set(codes)) != len(codes):
            raise ValueError("item and total codes must be unique")
        for item in self.items:
            if item.min > item.max:
                raise ValueError(f"item {item.link_id}: min > max")
            if item.answers is not None:
                options = self.answer_sets.get(item.answers)
                if options is None:
                    raise ValueError(f"item {item.link_id}: unknown answer set {item.answers!r}")
                scores = sorted(option.score for option in options)
                if scores[0] != item.min or scores[-1] != item.max:
                    raise ValueError(f"item {item.link_id}: answer scores must span min..max")
        if self.total.rule == "sum":
            summed = [item for item in self.items if item.summed]
            low, high = sum(i.min for i in summed), sum(i.max for i in summed)
        else:
            low, high = 0, len(self.items)
        if (low, high) != (self.total.min, self.total.max):
            raise ValueError(f"total range must be {low}..{high} for rule {self.total.rule}")
        if self.bands:
            expected = self.total.min
            for band in sorted(self.bands, key=lambda b: b.min):
                if band.min != expected or band.max < band.min:
                    raise ValueError(f"bands must cover {low}..{high} without gap or overlap")
                expected = band.max + 1
            if expected != self.total.max + 1:
                raise ValueError(f"bands must cover {low}..{high} without gap or overlap")
        if self.item_rule and not set(self.item_rule.items) <= set(link_ids):
            raise ValueError("item_rule names unknown items")
        return self

    @property
    def total_coding(self) -> tuple[str, str]:
        return split_code(self.total.code)

    @property
    def questionnaire_url(self) -> str:
        return f"{CANONICAL}/Questionnaire/{self.id}"

    @property
    def profile_name(self) -> str:
        return f"{self.id}-observation"

    @property
    def profile_url(self) -> str:
        return f"{CANONICAL}/StructureDefinition/{self.profile_name}"

    def item(self, link_id: str) -> ItemSpec | None:
        return next((item for item in self.items if item.link_id == link_id), None)

    @cached_property
    def _items_by_code(self) -> dict[tuple[str, str], ItemSpec]:
        return {item.coding: item for item in self.items}

    def item_for_code(self, system: str, code: str) -> ItemSpec | None:
        return self._items_by_code.get((system, code))

    @cached_property
    def _summed(self) -> tuple[str, ...]:
        return tuple(item.link_id for item in self.items if item.summed)

    def score(self, values: dict[str, int]) -> int | None:
        """Total from item values keyed by linkId; None when an item the rule needs is missing."""
        if self.total.rule == "sum":
            total = 0
            for link_id in self._summed:
                if link_id not in values:
                    return None
                total += values[link_id]
            return total
        if any(item.link_id not in values for item in self.items):
            return None
        positive = [i for i, item in enumerate(self.items, 1) if values[item.link_id] > item.min]
        return max(positive, default=0)

    def severity(self, score: int) -> Band | None:
        """The severity band a total falls in (None for instruments without bands)."""
        return next((band for band in self.bands if band.min <= score <= band.max), None)

    def interpretation(self, values: dict[str, int], score: int | None) -> tuple[str, str] | None:
        """(code, display) in the severity CodeSystem for an administration, if any applies."""
        if score is not None and (band := self.severity(score)) is not None:
            return band.code, band.display
        rule = self.item_rule
        if rule is None or any(link_id not in values for link_id in rule.items):
            return None
        if any(values[link_id] >= rule.min for link_id in rule.items):
            return rule.code, rule.display
        return rule.otherwise_code, rule.otherwise_display

    def is_response(self, baseline: int, current: int) -> bool | None:
        """≥ the response reduction from baseline; None without a response definition."""
        if self.response is None or baseline <= 0:
            return None
        return (baseline - current) * 100 >= self.response.min_reduction_percent * baseline

    def is_remission(self, score: int, threshold: int | None = None) -> bool | None:
        """Total below (or at, per comparator) the remission threshold; configurable."""
        rule = self.remission
        if rule is None:
            return None
        limit = rule.threshold if threshold is None else threshold
        return score < limit if rule.comparator == "lt" else score <= limit


class ConceptSpec(Spec):
    code: str
    display: str
    definition: str | None = None


class CodeSystemSpec(Spec):
    id: str
    url: str
    name: str
    title: str
    description: str
    source: str
    concepts_from: Literal["instruments", "bands", "protocol"] | None
    concepts: list[ConceptSpec]


class VisitSpec(Spec):
    code: str = Field(pattern=r"^[a-z0-9.\-]+$")
    visit: str
    display: str
    kind: Literal[
        "screening",
        "enrollment",
        "preparatory",
        "assessment",
        "dosing",
        "integration",
        "study-end",
    ]
    anchor: str | None
    offset_days: int
    window_days: int = Field(ge=0)
    timing_source: str
    instruments: list[str]
    session: Literal["preparatory", "integration"] | None = None


class ObjectiveSpec(Spec):
    name: str
    type: Literal["primary", "secondary", "exploratory"]


class CitationSpec(Spec):
    citation: str
    url: str


class ArmSpec(Spec):
    name: str
    description: str


class StudySpec(Spec):
    eudract: str
    sponsor_protocol: str
    title: str
    description: str
    status: str
    status_source: str
    phase: str
    primary_purpose: str
    condition: str
    condition_display: str
    start: str
    sponsor: str
    site: str
    arm: ArmSpec
    objectives: list[ObjectiveSpec]
    citations: list[CitationSpec]

    _condition = field_validator("condition")(_check_code_ref)


class ProtocolSpec(Spec):
    """The study and its visit schedule; visit order in the file is protocol order."""

    id: str
    source: list[str] = Field(min_length=1)
    study: StudySpec
    instrument_schedule_source: str
    visits: list[VisitSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _anchors(self) -> ProtocolSpec:
        codes = [visit.code for visit in self.visits]
        if len(set(codes)) != len(codes):
            raise ValueError("visit codes must be unique")
        for visit in self.visits:
            if visit.anchor is not None and visit.anchor not in codes:
                raise ValueError(f"visit {visit.code}: unknown anchor {visit.anchor!r}")
        if sum(visit.anchor is None for visit in self.visits) != 1:
            raise ValueError("exactly one visit must be the schedule anchor (anchor null)")
        return self

    def visit(self, code: str) -> VisitSpec | None:
        return next((visit for visit in self.visits if visit.code == code), None)

    def nominal_day(self, code: str) -> int:
        """Days from the anchor visit, following the anchor chain."""
        visit = self.visit(code)
        if visit is None:
            raise KeyError(code)
        return visit.offset_days + (self.nominal_day(visit.anchor) if visit.anchor else 0)


class MedicationSpec(Spec):
    id: str
    source: list[str] = Field(min_length=1)
    code: str
    text: str
    dose_unit: Literal["mg"]
    route: str
    route_display: str
    max_session_dose_mg: int
    max_session_dose_source: str

    _code = field_validator("code", "route")(_check_code_ref)


class ConceptMapElement(Spec):
    code: str
    display: str
    target: str
    equivalence: Literal["equivalent", "equal", "wider", "narrower"]


class ConceptMapGroup(Spec):
    source: str
    target: str
    elements: list[ConceptMapElement]


class ConceptMapSpec(Spec):
    id: str
    url: str
    name: str
    title: str
    description: str
    source: str
    groups: list[ConceptMapGroup]


class ColumnInstrument(Spec):
    instrument: str
    prefix: str


class ColumnMapSpec(Spec):
    """CSV layout: one row per participant and visit, one column per item."""

    name: str
    source: str
    description: str
    subject_column: str
    visit_column: str
    date_column: str
    # participant columns: written by export from the ResearchSubject, not read by import
    status_column: str
    withdrawal_column: str
    instruments: list[ColumnInstrument]


class IGSpec(Spec):
    package_name: str = Field(pattern=r"^[a-z0-9][a-z0-9.\-]*$")
    version: str
    title: str
    canonical: str
    fhir_version: str
    publisher: str
    license: str
    source: str

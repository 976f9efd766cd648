"""The protocol's schedule as rules: which instruments a visit collects, visit dates in protocol
order and inside their windows, nothing assessed after a participant's withdrawal, one score per
instrument and visit. Pure: the caller reads the participant's other resources from the store.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.mapping.spec import SYSTEMS, InstrumentSpec, VisitSpec

if TYPE_CHECKING:
    from fhir_bridge.mapping.loader import Mappings

VISIT_OUTSIDE_WINDOW = "visit-outside-window"  # mappings/codesystems/data-quality.json
UNSCHEDULED_ASSESSMENT = "unscheduled-assessment"


def day(value: Any) -> date | None:
    """The calendar day of a FHIR date or dateTime as written (its own time zone); None for
    anything else, or a partial date (a year or month says no day)."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        return date.fromisoformat(value[:10])
    except ValueError:
        return None


def in_future(value: Any) -> bool:
    """Later than today anywhere on Earth (UTC+14): a date the clinic cannot have seen yet."""
    when = day(value)
    return when is not None and when > (datetime.now(UTC) + timedelta(hours=14)).date()


def visit_of(encounter: dict[str, Any], m: Mappings) -> VisitSpec | None:
    """The protocol visit an Encounter's type names, if any."""
    types = encounter.get("type")
    for concept in types if isinstance(types, list) else []:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for c in codings if isinstance(codings, list) else []:
            if isinstance(c, dict) and c.get("system") == SYSTEMS["visit"]:
                return m.visit(str(c.get("code")))
    return None


def visit_start(encounter: dict[str, Any]) -> Any:
    period = encounter.get("period")
    return period.get("start") if isinstance(period, dict) else None


def check_scheduled(spec: InstrumentSpec, visit: VisitSpec, path: str, m: Mappings) -> Issue | None:
    """An instrument at a visit the protocol does not schedule it at: refused, or a warning
    for the instruments the protocol file lets be assessed at any visit."""
    if spec.id in visit.instruments:
        return None
    text = (
        f"the protocol does not schedule {spec.name} at visit {visit.code} ({visit.visit}); "
        f"it is collected at: {', '.join(_visits_of(spec, m)) or 'no visit'}"
    )
    if spec.id in m.protocol.unscheduled_allowed:
        return Issue("warning", "business-rule", f"{text} (accepted: unscheduled allowed)", path)
    return Issue("error", "business-rule", text, path)


def _visits_of(spec: InstrumentSpec, m: Mappings) -> list[str]:
    return [visit.code for visit in m.protocol.visits if spec.id in visit.instruments]


def check_visit_dates(
    visit: VisitSpec, start: date, others: dict[str, date], m: Mappings
) -> tuple[list[Issue], bool]:
    """The visit's date against the participant's other visits (visit code -> day): protocol
    order (error), and the window around its anchor visit (a warning; True when outside)."""
    path = "Encounter.period.start"
    order = [v.code for v in m.protocol.visits]
    position = order.index(visit.code)
    issues: list[Issue] = []
    for code, when in others.items():
        if code == visit.code or code not in order:
            continue
        before = order.index(code) < position
        if (before and when > start) or (not before and when < start):
            other = m.visit(code)
            assert other is not None
            relation = "before" if before else "after"
            issues.append(
                Issue(
                    "error",
                    "business-rule",
                    f"visit {visit.code} ({visit.visit}) on {start} is dated {relation} visit "
                    f"{code} ({other.visit}) on {when}: visits follow protocol order",
                    path,
                )
            )
    anchor = others.get(visit.anchor) if visit.anchor else None
    if anchor is None or issues:
        return issues, False
    expected = anchor + timedelta(days=visit.offset_days)
    if abs((start - expected).days) <= visit.window_days:
        return issues, False
    text = (
        f"visit {visit.code} ({visit.visit}) on {start} is outside its window: "
        f"{visit.offset_days:+d} ± {visit.window_days} days from {visit.anchor} on {anchor}"
    )
    return [Issue("warning", "business-rule", text, path)], True


def check_after_withdrawal(when: date, withdrawn: date, path: str) -> Issue | None:
    """No outcome assessment dated after the participant's withdrawal (ResearchSubject
    status withdrawn, period.end); safety data are not assessments and stay accepted."""
    if when <= withdrawn:
        return None
    return Issue(
        "error",
        "business-rule",
        f"assessment after withdrawal: the participant withdrew on {withdrawn}, "
        f"this assessment is dated {when}",
        path,
    )

"""The outcome report of a trial: the trial views run over research-view resources, the tables
written as CSV (a Frictionless Data Package), outcomes.json, the figures and report.html.

The resources come from a Bulk Data export downloaded by `fhir-bridge report`, or from the
store through the research view (`services.research.research_resources`); either way they are
the research view, so nothing here sees an identity (DESIGN.md section 6).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from fhir_bridge.mapping.loader import Mappings
from fhir_bridge.pseudonym import ResearchView
from fhir_bridge.report.columns import load_views
from fhir_bridge.report.figures import trajectory_png
from fhir_bridge.report.files import write_tables
from fhir_bridge.report.html import write_html
from fhir_bridge.report.outcomes import outcome_table
from fhir_bridge.report.tables import Source, Tables, trial_tables
from fhir_bridge.services import cohort, resources
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.research import research_resources
from fhir_bridge.store.sql import now_instant

FIGURES = ("madrs", "sds")  # the primary and secondary outcome: a trajectory figure each
VIEW_TYPES = (
    "Patient",
    "ResearchSubject",
    "Encounter",
    "Observation",
    "QuestionnaireResponse",
    "MedicationAdministration",
    "AdverseEvent",
)


@dataclass
class Report:
    tables: Tables
    outcomes: dict[str, Any]
    files: list[Path]


def outcomes(source: Source, m: Mappings, remission_threshold: int | None = None) -> Report:
    """The tables and outcome table of the research-view resources of `source`."""
    tables = trial_tables(source, m, load_views())
    return Report(tables, outcome_table(tables.rows, m, remission_threshold), [])


def write_report(
    source: Source,
    out: Path,
    m: Mappings,
    remission_threshold: int | None = None,
    title: str | None = None,
) -> Report:
    """Every file of the report into `out`: {table}.csv and datapackage.json, outcomes.json,
    {instrument}-trajectory.png and report.html."""
    report = outcomes(source, m, remission_threshold)
    out.mkdir(parents=True, exist_ok=True)
    report.files += write_tables(report.tables, out)
    path = out / "outcomes.json"
    path.write_bytes(orjson.dumps(report.outcomes, option=orjson.OPT_INDENT_2))
    report.files.append(path)
    visits = [(v["visit"], v["label"]) for v in report.outcomes["visits"]]
    figures = []
    for instrument in FIGURES:
        spec = m.instrument(instrument)
        reference = None
        if spec.remission is not None:
            limit = spec.remission.threshold if remission_threshold is None else remission_threshold
            sign = "<" if spec.remission.comparator == "lt" else "≤"
            reference = (float(limit), f"remission: {spec.name} {sign} {limit}")
        png = trajectory_png(
            report.tables.rows["scores_long"],
            instrument,
            spec.name,
            visits,
            spec.total.max,
            reference,
        )
        path = out / f"{instrument}-trajectory.png"
        path.write_bytes(png)
        report.files.append(path)
        figures.append((f"{spec.title}: total over study days", png))
    study = m.protocol.study
    heading = title or f"{study.sponsor_protocol}: outcome report"
    report.files.append(
        write_html(out / "report.html", heading, report.outcomes, report.tables, figures)
    )
    return report


def study_outcomes(
    ctx: ServiceContext,
    view: ResearchView,
    study_id: str,
    m: Mappings,
    remission_threshold: int | None = None,
) -> dict[str, Any]:
    """`ResearchStudy/{id}/$outcomes`: the outcome table of the study's cohort Group as a
    Parameters resource, computed in-process from the research view of the stored data (one
    instant for every type read). An unknown study is 404, a deleted one 410.
    https://hl7.org/fhir/R4/parameters.html, https://hl7.org/fhir/R4/operations.html
    """
    resources.read(ctx, "ResearchStudy", study_id)
    group = cohort.group_id(study_id)
    with ctx.store.session() as session:
        stored = session.read("Group", group)
    enrolled = stored is not None and not stored.deleted
    until = now_instant()

    def source(resource_type: str) -> Iterable[dict[str, Any]]:
        if not enrolled:
            return iter(())
        return research_resources(ctx, view, [resource_type], group=group, until=until)

    table = outcomes(source, m, remission_threshold).outcomes
    return {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "study", "valueReference": {"reference": f"ResearchStudy/{study_id}"}},
            {"name": "cohort", "valueReference": {"reference": f"Group/{group}"}},
            *_parameters(table),
        ],
    }


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _parameters(value: dict[str, Any]) -> list[dict[str, Any]]:
    """outcomes.json as Parameters: a key per parameter (camelCase), a list of objects as the
    parameter repeated, an object as parts; None is left out."""
    out: list[dict[str, Any]] = []
    for key, item in value.items():
        name = _camel(key) if key.isidentifier() else key
        for each in item if isinstance(item, list) else [item]:
            if each is None:
                continue
            if isinstance(each, dict):
                out.append({"name": name, "part": _parameters(each)})
            elif isinstance(each, bool):
                out.append({"name": name, "valueBoolean": each})
            elif isinstance(each, int):
                out.append({"name": name, "valueInteger": each})
            elif isinstance(each, float):
                out.append({"name": name, "valueDecimal": each})
            else:
                out.append({"name": name, "valueString": str(each)})
    return out

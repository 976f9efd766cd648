"""The wide outcome table: one row per participant, a column per instrument and visit total
(`madrs_v3`, `madrs_v13`, `madrs_fu`, ...) beside the participant's status and withdrawal study
day, pivoted from `scores_long` in Python.

Columns: every instrument the protocol schedules at a visit (mappings/protocol), and any other
instrument and protocol visit the data holds; a total at no protocol visit stays in
`scores_long` only. A repeated administration at one visit counts once, the first in
study-day order, as in the outcome table (report/outcomes.py).
"""

from __future__ import annotations

import re

from fhir_bridge.mapping.loader import Mappings
from fhir_bridge.report.columns import Column
from fhir_bridge.report.tables import Row, Tables

WIDE = "outcomes_wide"
DESCRIPTION = (
    "Outcomes, wide: one row per participant, one column per instrument and visit total "
    "(instrument id _ protocol visit label), with the participant's status and withdrawal "
    "study day. Pivoted in Python from scores_long: the first administration in study-day "
    "order per participant, instrument and visit; empty where there is none."
)
PARTICIPANT = ("participant", "study_subject_id", "status", "withdrawal_day")
STEP = "Python after the views: fhir_bridge/report/wide.py"
TOTAL_PATH = "Observation.value.ofType(Quantity).value"


def column_name(instrument: str, visit_label: str) -> str:
    return f"{instrument}_{re.sub(r'[^a-z0-9]+', '_', visit_label.lower()).strip('_')}"


def outcomes_wide(tables: Tables, m: Mappings) -> tuple[list[Row], tuple[Column, ...]]:
    """The rows and columns of the wide outcome table, in participant order."""
    visits = {v.code: v for v in m.protocol.visits}
    visit_order = {code: n for n, code in enumerate(visits)}
    anchor = next(v for v in m.protocol.visits if v.anchor is None)
    instruments = dict.fromkeys([*anchor.instruments, *(s.id for s in m.instruments)])
    instrument_order = {i: n for n, i in enumerate(instruments)}
    pairs = {(i, v.code) for v in m.protocol.visits for i in v.instruments}
    totals: dict[tuple[str, str, str], int | float] = {}
    for row in tables.rows["scores_long"]:  # participant and study-day order
        instrument, visit, total = row["instrument"], row["visit"], row["total"]
        if instrument in instrument_order and visit in visits and total is not None:
            pairs.add((instrument, visit))
            key = (str(row["participant"]), instrument, visit)
            totals.setdefault(key, int(total) if float(total).is_integer() else total)
    ordered = sorted(pairs, key=lambda p: (instrument_order[p[0]], visit_order[p[1]]))
    names = {p: column_name(p[0], visits[p[1]].visit) for p in ordered}
    given = {c.name: c for c in tables.codebook["participants"]}
    rows = []
    for participant in tables.rows["participants"]:
        row = {name: participant[name] for name in PARTICIPANT}
        for (instrument, visit), name in names.items():
            row[name] = totals.get((str(participant["participant"]), instrument, visit))
        rows.append(row)
    columns = [given[name] for name in PARTICIPANT]
    for (instrument, visit), name in names.items():
        spec, at = m.instrument(instrument), visits[visit]
        integral = all(
            isinstance(r[name], int) for r in rows if r[name] is not None
        )  # totals are sums or highest scores of integer items
        columns.append(
            Column(
                name,
                "integer" if integral else "decimal",
                f"{spec.name} total at {at.visit} ({at.display}, visit code {visit}): "
                f"scores_long.total of the participant's first administration there; empty "
                f"when none. Range {spec.total.min}-{spec.total.max} (mappings/instruments).",
                derived=True,
                label=f"{spec.name} total, {at.visit}",
                unit="{score}",
                path=TOTAL_PATH,
                source=f"{STEP}: scores_long.total where instrument = {instrument} and "
                f"visit = {visit}",
                minimum=spec.total.min,
                maximum=spec.total.max,
            )
        )
    return rows, tuple(columns)

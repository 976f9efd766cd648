"""The trial's outcome table, computed from the rows of the trial views alone (pure).

Per outcome visit (the protocol's assessment visits: baseline, post-treatment, 7-month
follow-up) and instrument: n, mean (SD), median (IQR); change from baseline with its paired t
95 % CI and Cohen's d_z; MADRS response and remission; whether C-SSRS suicidal ideation rose
above baseline; withdrawals. Two analysis populations: all available data, and completers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from fhir_bridge.mapping.loader import Mappings
from fhir_bridge.mapping.spec import InstrumentSpec
from fhir_bridge.report.statistics import paired_change, summary

Rows = Sequence[Mapping[str, Any]]
SAFETY = "cssrs"  # suicidal ideation severity (C-SSRS): checked for rises, not for response
ALL, COMPLETERS = "all-available", "completers"

DEFINITIONS = {
    "study_day": "Days from the participant's baseline visit (V3, day 0), the anchor of the "
    "protocol's visit schedule (mappings/protocol).",
    "summary": "n, mean (SD: sample standard deviation, n - 1), median (IQR: first and third "
    "quartiles by linear interpolation, Hyndman-Fan type 7).",
    "change": "Change from baseline = score at the visit - score at baseline, in participants "
    "with both; mean with a 95 % paired t interval: mean +/- t(0.975, n - 1) * SD / sqrt(n). "
    "Negative = improvement on every scale reported.",
    "effect_size": "Within-group effect size Cohen's d_z = mean change / SD of change (paired "
    "standardized mean difference; negative = improvement).",
    ALL: "All available data: every participant with a score at the visit (changes, response "
    "and remission: every participant with a score at baseline and at the visit).",
    COMPLETERS: "Completers: participants with a primary-outcome (MADRS) score at every outcome "
    "visit (baseline, post-treatment and 7-month follow-up).",
}


def outcome_table(
    tables: Mapping[str, Rows], m: Mappings, remission_threshold: int | None = None
) -> dict[str, Any]:
    """The outcome table as JSON-ready data; `remission_threshold` overrides the threshold of
    the primary instrument's remission definition (setting `remission_threshold_madrs`)."""
    visits = [v.code for v in m.protocol.visits if v.kind == "assessment"]
    anchor = next(v for v in m.protocol.visits if v.anchor is None)
    baseline = anchor.code
    scored = [m.instrument(i) for i in anchor.instruments]
    primary = next(spec for spec in scored if spec.response is not None)
    totals = _totals(tables["scores_long"])
    participants = [str(p["participant"]) for p in tables["participants"]]
    completers = [p for p in participants if all((primary.id, v, p) in totals for v in visits)]
    populations = {ALL: participants, COMPLETERS: completers}
    labels = {v.code: v.visit for v in m.protocol.visits}
    result: dict[str, Any] = {
        "definitions": {
            **DEFINITIONS,
            "response": _response_text(primary),
            "remission": _remission_text(primary, remission_threshold),
        },
        "visits": [{"visit": v, "label": labels[v]} for v in visits],
        "populations": [
            {"population": name, "participants": len(members), "definition": DEFINITIONS[name]}
            for name, members in populations.items()
        ],
        "instruments": [
            {"instrument": s.id, "name": s.name, "title": s.title, "role": _role(s, primary)}
            for s in scored
        ],
        "scores": [],
        "changes": [],
        "response": [],
        "remission": [],
    }
    for population, members in populations.items():
        for spec in scored:
            for visit in visits:
                values = [
                    totals[(spec.id, visit, p)] for p in members if (spec.id, visit, p) in totals
                ]
                row = {"population": population, "instrument": spec.id, "visit": visit}
                result["scores"].append({**row, **asdict(summary(values))})
                if visit == baseline:
                    continue
                pairs = _pairs(totals, spec.id, baseline, visit, members)
                change = paired_change([later - first for first, later in pairs])
                result["changes"].append({**row, **asdict(change)})
                if spec is primary:
                    result["response"].append(
                        {**row, **_rate([spec.is_response(round(a), round(b)) for a, b in pairs])}
                    )
                    result["remission"].append(
                        {
                            **row,
                            **_rate(
                                [spec.is_remission(round(b), remission_threshold) for _, b in pairs]
                            ),
                        }
                    )
    result["suicidal_ideation"] = _ideation(tables["scores_long"], baseline, m)
    result["withdrawals"] = _withdrawals(tables["participants"], labels)
    result["enrolled"] = len(participants)
    result["exposure"] = _exposure(tables["dosing"])
    result["adverse_events"] = _adverse_events(tables["adverse_events"])
    result["visit_windows"] = {
        "visits": sum(1 for v in tables["visits"] if v["in_window"] is not None),
        "outside": sum(1 for v in tables["visits"] if v["in_window"] is False),
    }
    return result


def _role(spec: InstrumentSpec, primary: InstrumentSpec) -> str:
    if spec is primary:
        return "primary"
    if spec.id == "sds":
        return "secondary"  # protocol objective: change in SDS, baseline to post-treatment
    return "safety" if spec.id == SAFETY else "exploratory"


def _totals(rows: Rows) -> dict[tuple[str, str, str], float]:
    """(instrument, visit, participant) -> total; a repeated administration at one visit
    counts once, the first in study-day order."""
    totals: dict[tuple[str, str, str], float] = {}
    for row in rows:
        if row["instrument"] and row["visit"] and row["total"] is not None:
            key = (str(row["instrument"]), str(row["visit"]), str(row["participant"]))
            totals.setdefault(key, float(row["total"]))
    return totals


def _pairs(
    totals: dict[tuple[str, str, str], float],
    instrument: str,
    baseline: str,
    visit: str,
    members: list[str],
) -> list[tuple[float, float]]:
    return [
        (totals[(instrument, baseline, p)], totals[(instrument, visit, p)])
        for p in members
        if (instrument, baseline, p) in totals and (instrument, visit, p) in totals
    ]


def _rate(flags: list[bool | None]) -> dict[str, Any]:
    known = [flag for flag in flags if flag is not None]
    count = sum(known)
    return {"n": len(known), "count": count, "rate": count / len(known) if known else None}


def _response_text(spec: InstrumentSpec) -> str:
    rule = spec.response
    assert rule is not None
    return (
        f"{spec.name} total reduced by >= {rule.min_reduction_percent:g} % from baseline "
        f"(source: {rule.source})"
    )


def _remission_text(spec: InstrumentSpec, threshold: int | None) -> str:
    rule = spec.remission
    if rule is None:
        return f"{spec.name}: no remission definition in mappings/instruments"
    sign = "<" if rule.comparator == "lt" else "<="
    limit = rule.threshold if threshold is None else threshold
    where = (
        f"setting {rule.setting}"
        if threshold is not None and rule.setting
        else "mappings/instruments"
    )
    return (
        f"{spec.name} total {sign} {limit} at the visit "
        f"(threshold from {where}; source: {rule.source})"
    )


def _ideation(rows: Rows, baseline: str, m: Mappings) -> dict[str, Any]:
    """Whether any participant's ideation severity after baseline exceeded their baseline."""
    spec = m.instrument(SAFETY)
    first: dict[str, float] = {}
    for row in rows:
        if row["instrument"] == SAFETY and row["visit"] == baseline and row["total"] is not None:
            first.setdefault(str(row["participant"]), float(row["total"]))
    rises = [
        {
            "participant": row["participant"],
            "visit": row["visit"],
            "study_day": row["study_day"],
            "baseline": first[str(row["participant"])],
            "value": float(row["total"]),
        }
        for row in rows
        if row["instrument"] == SAFETY
        and row["visit"] != baseline
        and row["total"] is not None
        and str(row["participant"]) in first
        and float(row["total"]) > first[str(row["participant"])]
    ]
    later = {
        str(r["participant"])
        for r in rows
        if r["instrument"] == SAFETY and r["visit"] != baseline and str(r["participant"]) in first
    }
    return {
        "instrument": SAFETY,
        "name": f"{spec.name} ({spec.total.display})",
        "definition": f"{spec.total.display}, 0-{spec.total.max}, compared with the participant's "
        "own baseline at every later assessment",
        "participants_assessed": len(later),
        "rose_above_baseline": bool(rises),
        "rises": rises,
    }


def _withdrawals(participants: Rows, labels: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        {
            "participant": p["participant"],
            "study_subject_id": p["study_subject_id"],
            "withdrawal_day": p["withdrawal_day"],
            "after_visit": p["last_visit"],
            "after_visit_label": labels.get(str(p["last_visit"])),
        }
        for p in participants
        if p["status"] == "withdrawn"
    ]


def _exposure(doses: Rows) -> list[dict[str, Any]]:
    """Per dosing session: participants dosed, initial doses by amount, supplemental doses."""
    sessions: dict[str, dict[str, Any]] = {}
    for dose in doses:
        if dose["status"] != "completed" or not dose["session"]:
            continue
        entry = sessions.setdefault(
            str(dose["session"]), {"participants": set(), "initial": {}, "supplemental": {}}
        )
        entry["participants"].add(dose["participant"])
        amounts = entry["initial" if dose["role"] == "initial" else "supplemental"]
        label = f"{dose['dose']:g} {dose['dose_unit']}"
        amounts[label] = amounts.get(label, 0) + 1
    return [
        {
            "session": session,
            "participants": len(entry["participants"]),
            "initial": dict(sorted(entry["initial"].items())),
            "supplemental": dict(sorted(entry["supplemental"].items())),
        }
        for session, entry in sorted(sessions.items())
    ]


def _adverse_events(events: Rows) -> dict[str, Any]:
    actual = [e for e in events if e["actuality"] != "potential"]
    return {
        "events": len(actual),
        "participants": len({e["participant"] for e in actual}),
        # adverse-event-seriousness: Non-serious, Serious, or an SAE-... kind of serious
        "serious": sum(1 for e in actual if e["seriousness"] not in (None, "Non-serious")),
        "by_severity": dict(sorted(Counter(str(e["severity"]) for e in actual).items())),
    }

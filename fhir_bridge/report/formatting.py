"""The outcome table as rows of printed cells, shared by the HTML report and the command line.

Numbers are rounded for print only (one decimal, two for d_z, rates as percentages);
outcomes.json keeps them unrounded.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SCORE_HEADER = (
    "instrument",
    "visit",
    "n",
    "mean (SD)",
    "median (IQR)",
    "n paired",
    "change (95 % CI)",
    "d_z",
)
RATE_HEADER = ("outcome", "visit", "count / n", "rate", "definition")


def number(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "–"
    text = f"{value:.{digits}f}"
    return "0.0" if text in ("-0.0", "-0") else text.replace("-", "−")


def rate(count: int, n: int, value: float | None) -> tuple[str, str]:
    return f"{count}/{n}", "–" if value is None else f"{value * 100:.1f} %"


def score_rows(outcomes: Mapping[str, Any], population: str) -> list[tuple[str, ...]]:
    """One row per instrument and outcome visit: descriptive statistics and change."""
    names = {i["instrument"]: i["name"] for i in outcomes["instruments"]}
    labels = {v["visit"]: v["label"] for v in outcomes["visits"]}
    changes = {
        (c["instrument"], c["visit"]): c
        for c in outcomes["changes"]
        if c["population"] == population
    }
    rows: list[tuple[str, ...]] = []
    for s in outcomes["scores"]:
        if s["population"] != population:
            continue
        change = changes.get((s["instrument"], s["visit"]))
        paired = ("", "", "")
        if change is not None:
            interval = f"{number(change['ci_low'])} to {number(change['ci_high'])}"
            paired = (
                str(change["n"]),
                f"{number(change['mean'])} ({interval})",
                number(change["d_z"], 2),
            )
        rows.append(
            (
                names[s["instrument"]],
                f"{labels[s['visit']]} {s['visit']}",
                str(s["n"]),
                f"{number(s['mean'])} ({number(s['sd'])})",
                f"{number(s['median'])} ({number(s['q1'])}–{number(s['q3'])})",
                *paired,
            )
        )
    return rows


def rate_rows(outcomes: Mapping[str, Any], population: str) -> list[tuple[str, ...]]:
    """Response and remission counts and rates with their definitions."""
    labels = {v["visit"]: v["label"] for v in outcomes["visits"]}
    rows: list[tuple[str, ...]] = []
    for outcome in ("response", "remission"):
        for r in outcomes[outcome]:
            if r["population"] == population:
                count, share = rate(r["count"], r["n"], r["rate"])
                definition = outcomes["definitions"][outcome]
                visit = f"{labels[r['visit']]} {r['visit']}"
                rows.append((outcome, visit, count, share, definition))
    return rows


def text_table(outcomes: Mapping[str, Any]) -> str:
    """The outcome table as plain text, as the command line prints it."""
    lines = []
    for population in outcomes["populations"]:
        name = population["population"]
        lines.append(f"{name} ({population['participants']} participants)")
        rows = [SCORE_HEADER, *score_rows(outcomes, name)]
        widths = [max(len(row[n]) for row in rows) for n in range(len(SCORE_HEADER))]
        lines += [
            "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
        ]
        for outcome, visit, count, share, _ in rate_rows(outcomes, name):
            lines.append(f"  {outcome:<9} {visit:<20} {count:>6}  {share}")
        lines.append("")
    for outcome in ("response", "remission"):
        lines.append(f"{outcome}: {outcomes['definitions'][outcome]}")
    ideation = outcomes["suicidal_ideation"]
    lines.append(
        f"suicidal ideation ({ideation['name']}) above baseline: "
        f"{'yes' if ideation['rose_above_baseline'] else 'no'}, "
        f"{len(ideation['rises'])} rises in {ideation['participants_assessed']} participants"
    )
    for w in outcomes["withdrawals"]:
        lines.append(
            f"withdrawn: {w['study_subject_id']} on study day {w['withdrawal_day']}, "
            f"after {w['after_visit_label']} {w['after_visit']}"
        )
    return "\n".join(lines)

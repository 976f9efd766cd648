"""The outcome report as one self-contained HTML file: the outcome table, the safety and
exposure summaries, MADRS and SDS trajectory figures inlined as base64 PNG, and the codebook.

Every value is escaped; the page loads nothing from elsewhere (no scripts, fonts or links).
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from html import escape
from pathlib import Path
from typing import Any

from fhir_bridge.report.formatting import RATE_HEADER, SCORE_HEADER, rate_rows, score_rows
from fhir_bridge.report.tables import Tables

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; } h3 { font-size: 1rem; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.85rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f3f5f7; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
p.note, dd { font-size: 0.85rem; color: #444; } img { max-width: 100%; }
"""


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]], numeric: int = 0) -> str:
    """An HTML table; columns from `numeric` on are right-aligned (0: none)."""
    head = "".join(f"<th>{escape(str(h))}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{escape(str(c))}</td>'
            if numeric and n >= numeric
            else f"<td>{escape(str(c))}</td>"
            for n, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _figure(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<figure><img alt="{escape(alt)}" src="data:image/png;base64,{data}"></figure>'


def _definitions(outcomes: Mapping[str, Any]) -> str:
    items = "".join(
        f"<dt>{escape(key.replace('_', ' '))}</dt><dd>{escape(text)}</dd>"
        for key, text in outcomes["definitions"].items()
    )
    return f"<dl>{items}</dl>"


def _outcomes(outcomes: Mapping[str, Any]) -> list[str]:
    parts = []
    for population in outcomes["populations"]:
        name = population["population"]
        parts.append(f"<h3>{escape(name)}: {population['participants']} participants</h3>")
        parts.append(f'<p class="note">{escape(population["definition"])}</p>')
        parts.append(_table(SCORE_HEADER, score_rows(outcomes, name), numeric=2))
        parts.append(_table(RATE_HEADER, rate_rows(outcomes, name)))
    return parts


def _safety(outcomes: Mapping[str, Any]) -> list[str]:
    ideation = outcomes["suicidal_ideation"]
    rose = "yes" if ideation["rose_above_baseline"] else "no"
    events = outcomes["adverse_events"]
    windows = outcomes["visit_windows"]
    parts = [
        "<h2>Safety, withdrawals and exposure</h2>",
        f"<p>Suicidal ideation ({escape(ideation['name'])}) above the participant's baseline at "
        f"any later assessment: <strong>{rose}</strong> ({len(ideation['rises'])} rises; "
        f"{ideation['participants_assessed']} participants assessed after baseline). "
        f'<span class="note">{escape(ideation["definition"])}.</span></p>',
    ]
    if ideation["rises"]:
        rows = [
            (r["participant"], r["visit"], r["study_day"], r["baseline"], r["value"])
            for r in ideation["rises"]
        ]
        parts.append(_table(("participant", "visit", "study day", "baseline", "value"), rows))
    parts.append(
        f"<p>Adverse events: {events['events']} in {events['participants']} participants, "
        f"{events['serious']} serious; by severity: "
        f"{escape(', '.join(f'{k} {v}' for k, v in events['by_severity'].items()) or 'none')}.</p>"
    )
    withdrawals = [
        (w["study_subject_id"], w["withdrawal_day"], f"{w['after_visit_label']} {w['after_visit']}")
        for w in outcomes["withdrawals"]
    ]
    parts.append(f"<p>Enrolled: {outcomes['enrolled']}; withdrawn: {len(withdrawals)}.</p>")
    if withdrawals:
        parts.append(_table(("study subject", "withdrawal study day", "after visit"), withdrawals))
    sessions = [
        (
            s["session"],
            s["participants"],
            ", ".join(f"{k}: {v}" for k, v in s["initial"].items()),
            ", ".join(f"{k}: {v}" for k, v in s["supplemental"].items()) or "none",
        )
        for s in outcomes["exposure"]
    ]
    parts.append(
        _table(("session", "participants", "initial doses", "supplemental doses"), sessions)
    )
    parts.append(
        f"<p>Protocol visit windows: {windows['outside']} of {windows['visits']} visits outside "
        "their window.</p>"
    )
    return parts


def _codebook(tables: Tables) -> list[str]:
    parts = ["<h2>Codebook</h2>"]
    for name, columns in tables.codebook.items():
        parts.append(f"<h3>{escape(name)}.csv ({len(tables.rows[name])} rows)</h3>")
        parts.append(f'<p class="note">{escape(tables.descriptions[name])}</p>')
        rows = [(c.name, c.type, "Python" if c.derived else "view", c.description) for c in columns]
        parts.append(_table(("column", "type", "from", "description"), rows))
    return parts


def write_html(
    path: Path,
    title: str,
    outcomes: Mapping[str, Any],
    tables: Tables,
    figures: Sequence[tuple[str, bytes]],
) -> Path:
    """Write the report to `path`; `figures` are (caption, PNG) pairs."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        '<p class="note">Computed from the pseudonymised research view only. Participants are '
        "named by keyed pseudonyms or study subject ids; dates are shifted per participant, "
        "and times are given as study days from baseline.</p>",
        "<h2>Outcomes</h2>",
        *_outcomes(outcomes),
        "<h3>Definitions</h3>",
        _definitions(outcomes),
        "<h2>Trajectories</h2>",
        *(
            _figure(png, caption) + f'<p class="note">{escape(caption)}</p>'
            for caption, png in figures
        ),
        *_safety(outcomes),
        *_codebook(tables),
        "</body></html>",
    ]
    path.write_text("\n".join(parts), encoding="utf-8")
    return path

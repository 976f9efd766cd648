"""Trajectory figures of the report: every participant's totals of one instrument over study
days, with the mean at each outcome visit and its 95 % t confidence band (PNG bytes).

matplotlib's Agg backend draws without a display; figures are built with the object API
(`Figure`, not pyplot), so nothing global is kept between reports.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

from fhir_bridge.report.statistics import mean, mean_interval

Rows = Sequence[Mapping[str, Any]]


def trajectory_png(
    scores: Rows,
    instrument: str,
    name: str,
    visits: Sequence[tuple[str, str]],
    y_max: float,
    reference: tuple[float, str] | None = None,
) -> bytes:
    """Spaghetti plot of `instrument` in `scores` (scores_long rows) with the mean and its 95 %
    CI at each of `visits` ((code, label) pairs), placed at the visit's mean study day;
    `reference` draws a labelled horizontal line (e.g. the remission threshold)."""
    lines: dict[str, list[tuple[int, float]]] = {}
    for row in scores:
        if row["instrument"] == instrument and row["study_day"] is not None:
            point = (int(row["study_day"]), float(row["total"]))
            lines.setdefault(str(row["participant"]), []).append(point)
    # imported here: matplotlib costs a server process about 1 s and 40 MiB at start-up, and
    # only a report draws
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 4.2), dpi=110)
    axes = figure.subplots()
    for points in lines.values():
        points.sort()
        axes.plot(*zip(*points, strict=True), color="#9aa5b1", linewidth=0.9, marker="o", ms=2.5)
    centres, lows, highs, days, labels = [], [], [], [], []
    for code, label in visits:
        at = [r for r in scores if r["instrument"] == instrument and r["visit"] == code]
        values = [float(r["total"]) for r in at]
        interval = mean_interval(values)
        day = mean([float(r["study_day"]) for r in at if r["study_day"] is not None])
        centre = mean(values)
        if interval is None or day is None or centre is None:
            continue
        centres.append(centre)
        lows.append(interval[0])
        highs.append(interval[1])
        days.append(day)
        labels.append(f"{label}\nday {day:.0f}")
    axes.fill_between(days, lows, highs, color="#1f77b4", alpha=0.2, label="95 % CI of the mean")
    axes.plot(days, centres, color="#1f4e79", linewidth=2.5, marker="s", label="mean")
    if reference is not None:
        axes.axhline(reference[0], color="#2a9d8f", linestyle="--", linewidth=1, label=reference[1])
    axes.set_xticks(days, labels, fontsize=8)
    axes.set_ylim(0, y_max)
    axes.set_xlabel("study day (days from baseline, V3 = 0)")
    axes.set_ylabel(f"{name} total")
    axes.set_title(f"{name}: each participant (grey), mean and 95 % CI (blue), n = {len(lines)}")
    axes.grid(axis="y", alpha=0.3)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()

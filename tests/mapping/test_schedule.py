"""The protocol's schedule rules on their own: instruments per visit, visit order, windows,
assessments after withdrawal."""

from __future__ import annotations

from datetime import date

from fhir_bridge.domain.issues import Issue
from fhir_bridge.mapping import Mappings
from fhir_bridge.mapping.schedule import (
    check_after_withdrawal,
    check_scheduled,
    check_visit_dates,
    day,
)


def test_a_scheduled_instrument_passes(m: Mappings) -> None:
    baseline = m.visit("baseline")
    assert baseline is not None
    assert check_scheduled(m.instrument("madrs"), baseline, "Observation.encounter", m) is None


def test_an_unscheduled_safety_instrument_is_a_warning_others_an_error(m: Mappings) -> None:
    prep = m.visit("preparatory-1")
    assert prep is not None
    cssrs = check_scheduled(m.instrument("cssrs"), prep, "Observation.encounter", m)
    phq9 = check_scheduled(m.instrument("phq9"), prep, "Observation.encounter", m)
    assert cssrs is not None and cssrs.severity == "warning"
    assert phq9 is not None and phq9.severity == "error"


def test_a_visit_inside_its_window_is_not_flagged(m: Mappings) -> None:
    post = m.visit("post-treatment")
    assert post is not None
    others = {"baseline": date(2023, 3, 1)}
    assert check_visit_dates(post, date(2023, 6, 10), others, m) == ([], False)


def test_a_visit_is_placed_by_every_earlier_and_later_visit(m: Mappings) -> None:
    prep = m.visit("preparatory-3")
    assert prep is not None
    others = {"baseline": date(2023, 3, 10), "dosing-1": date(2023, 3, 5)}
    issues, _ = check_visit_dates(prep, date(2023, 3, 7), others, m)
    assert [i.diagnostics for i in issues] == [
        "visit preparatory-3 (V4) on 2023-03-07 is dated before visit baseline (V3) on "
        "2023-03-10: visits follow protocol order",
        "visit preparatory-3 (V4) on 2023-03-07 is dated after visit dosing-1 (V5) on "
        "2023-03-05: visits follow protocol order",
    ]


def test_an_assessment_on_the_day_of_withdrawal_is_accepted(m: Mappings) -> None:
    withdrawn = date(2023, 6, 17)
    path = "Observation.effectiveDateTime"
    assert check_after_withdrawal(date(2023, 6, 17), withdrawn, path) is None
    assert check_after_withdrawal(date(2023, 6, 18), withdrawn, path) == Issue(
        "error",
        "business-rule",
        "assessment after withdrawal: the participant withdrew on 2023-06-17, this assessment "
        "is dated 2023-06-18",
        path,
    )


def test_a_day_is_read_in_the_time_zone_it_is_written_in() -> None:
    assert day("2023-06-17T23:30:00-05:00") == date(2023, 6, 17)
    assert day("2023-06") is None
    assert day(20230617) is None

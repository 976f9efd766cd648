"""Parsing search parameters into a SearchRequest, and the value rules (dates, numbers, text)."""

from __future__ import annotations

import pytest

from fhir_bridge.domain.search import (
    ChainCriterion,
    HasCriterion,
    Include,
    ParamCriterion,
    SearchValue,
    SortKey,
    parse_query_string,
    parse_search,
)
from fhir_bridge.domain.search_parameters import parse_expression, search_parameter
from fhir_bridge.domain.search_values import (
    INDEXED_CHARS,
    MAX_TIME,
    MIN_TIME,
    date_range,
    indexed,
    indexed_prefix,
    normalize_string,
    number_range,
)
from fhir_bridge.errors import InvalidRequestError

MARCH_2025 = (1740787200.0, 1743465600.0)


def only(request_criteria: list) -> ParamCriterion:
    [criterion] = request_criteria
    assert isinstance(criterion, ParamCriterion)
    return criterion


def test_definitions_come_from_the_official_expressions() -> None:
    patient = search_parameter("Observation", "patient")
    assert patient is not None
    assert patient.expression == "Observation.subject.where(resolve() is Patient)"
    assert patient.targets == ("Group", "Patient")
    medication = search_parameter("MedicationAdministration", "medication")
    assert medication is not None
    assert medication.expression == "(MedicationAdministration.medication as Reference)"
    assert search_parameter("Observation", "_lastUpdated") is not None


def test_expression_subset_parses_unions_casts_and_filters() -> None:
    branches = parse_expression("(Observation.value as Quantity) | Observation.component.code")
    assert branches is not None
    assert [[s.kind for s in b] for b in branches] == [
        ["field", "field", "as"],
        ["field", "field", "field"],
    ]
    assert parse_expression("Patient.deceased.exists() and Patient.deceased != false") is None


def test_date_precision_gives_the_whole_period() -> None:
    assert date_range("2025") == (1735689600.0, 1767225600.0)
    assert date_range("2025-03") == MARCH_2025
    assert date_range("2025-03-04") == (1741046400.0, 1741132800.0)
    assert date_range("2025-03-04T10:00:00+01:00") == (1741078800.0, 1741078801.0)
    assert date_range("2025-03-04T10:00:00.25Z") == pytest.approx((1741082400.25, 1741082400.26))


def test_impossible_dates_are_rejected() -> None:
    for text in ("2025-13", "2025-02-30", "03/04/2025", "2025-03-04T25:00:00Z"):
        with pytest.raises(ValueError):
            date_range(text)


def test_dates_follow_the_gregorian_leap_years_from_year_1_to_9999() -> None:
    assert date_range("2000-02-29")[0] == 951782400.0
    assert date_range("2024-02-29")[0] == 1709164800.0
    assert date_range("1969-12-31") == (-86400.0, 0.0)
    assert date_range("0001-01-01")[0] == MIN_TIME
    assert date_range("9999-12-31")[1] == MAX_TIME
    for text in ("1900-02-29", "2023-02-29", "0000-01-01"):
        with pytest.raises(ValueError):
            date_range(text)


def test_number_range_follows_significant_digits() -> None:
    assert number_range("100") == (100.0, 99.5, 100.5)
    assert number_range("2.50") == (2.5, 2.495, 2.505)
    assert number_range("-7") == (-7.0, -7.5, -6.5)
    assert number_range("123456789012345") == (
        123456789012345.0,
        123456789012344.5,
        123456789012345.5,
    )
    big = 1.2345678901234568e18  # beyond a double's integers: the bounds round to the value
    assert number_range("1234567890123456789") == (big, big, big)


def test_strings_are_case_and_accent_insensitive() -> None:
    assert normalize_string("Ångström ") == "angstrom"
    assert normalize_string("MÜLLER") == normalize_string("muller")


def test_repeated_names_are_and_and_commas_are_or() -> None:
    request = parse_search("Observation", [("code", "a,b"), ("code", "c"), ("status", "final")])
    codes = [c for c in request.criteria if isinstance(c, ParamCriterion) and c.name == "code"]
    assert [[v.code for v in c.values] for c in codes] == [["a", "b"], ["c"]]
    assert len(request.criteria) == 3


def test_token_forms_distinguish_any_system_from_no_system() -> None:
    criterion = only(
        parse_search(
            "Observation", [("code", "http://loinc.org|44261-6,|local,sys|,plain")]
        ).criteria
    )
    assert [(v.system, v.code) for v in criterion.values] == [
        ("http://loinc.org", "44261-6"),
        ("", "local"),
        ("sys", None),
        (None, "plain"),
    ]


def test_escaped_comma_and_bar_stay_in_the_value() -> None:
    criterion = only(parse_search("Observation", [("identifier", r"a\|b|c\,d")]).criteria)
    assert criterion.values == (SearchValue(r"a\|b|c\,d", system="a|b", code="c,d"),)


def test_date_prefix_and_precision() -> None:
    criterion = only(parse_search("Observation", [("date", "ge2025-03")]).criteria)
    assert criterion.values[0].prefix == "ge"
    assert (criterion.values[0].low, criterion.values[0].high) == MARCH_2025


def test_bad_date_names_the_parameter() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_search("Observation", [("date", "gt2025-02-30")])
    assert caught.value.issues[0].expression == "date"
    assert caught.value.issues[0].code == "invalid"


def test_bad_prefix_is_an_invalid_value() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_search("Observation", [("value-quantity", "xx5")])
    assert caught.value.issues[0].expression == "value-quantity"


@pytest.mark.parametrize("value", ["1e1000000", "1e400", "-1e400"])
def test_numbers_beyond_a_double_are_invalid_values(value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_search("Observation", [("value-quantity", value)])
    assert caught.value.issues[0].expression == "value-quantity"


def test_quantity_value_system_and_code() -> None:
    criterion = only(
        parse_search(
            "Observation", [("value-quantity", "lt20|http://unitsofmeasure.org|{score}")]
        ).criteria
    )
    value = criterion.values[0]
    assert (value.prefix, value.number, value.system, value.code) == (
        "lt",
        20.0,
        "http://unitsofmeasure.org",
        "{score}",
    )
    loose = only(parse_search("Observation", [("value-quantity", "5.4||mg")]).criteria).values[0]
    assert (loose.number, loose.low, loose.high, loose.system, loose.code) == (
        5.4,
        5.35,
        5.45,
        None,
        "mg",
    )


def test_reference_forms() -> None:
    values = only(
        parse_search(
            "Observation",
            [("subject", "Patient/p1,p2,http://ehr.example/fhir/Patient/p3")],
        ).criteria
    ).values
    assert [(v.target_type, v.target_id, v.url) for v in values] == [
        ("Patient", "p1", None),
        (None, "p2", None),
        (None, None, "http://ehr.example/fhir/Patient/p3"),
    ]
    versioned = only(parse_search("Observation", [("subject", "Patient/p1/_history/2")]).criteria)
    assert (versioned.values[0].target_type, versioned.values[0].target_id) == ("Patient", "p1")
    odd = only(parse_search("Observation", [("subject", "_history")]).criteria)
    assert odd.values[0].target_id == "_history"  # an id like any other (and matches nothing)
    typed = only(parse_search("Observation", [("subject:Patient", "p1")]).criteria)
    assert typed.values[0].target_type == "Patient"
    single = only(parse_search("ResearchSubject", [("study", "s1")]).criteria)
    assert single.values[0].target_type == "ResearchStudy"


def test_canonical_reference_with_version() -> None:
    value = only(
        parse_search(
            "QuestionnaireResponse",
            [("questionnaire", "https://fhir-bridge.org/fhir/Questionnaire/madrs|1.0")],
        ).criteria
    ).values[0]
    assert (value.url, value.version) == ("https://fhir-bridge.org/fhir/Questionnaire/madrs", "1.0")


def test_missing_modifier_takes_a_boolean() -> None:
    criterion = only(parse_search("Observation", [("encounter:missing", "true")]).criteria)
    assert criterion.missing is True
    with pytest.raises(InvalidRequestError) as caught:
        parse_search("Observation", [("encounter:missing", "maybe")])
    assert caught.value.issues[0].expression == "encounter:missing"


def test_unsupported_modifier_is_refused() -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_search("Observation", [("code:below", "x")])
    assert caught.value.issues[0].code == "not-supported"
    assert caught.value.issues[0].expression == "code:below"


def test_modifiers_on_id_are_refused() -> None:
    with pytest.raises(InvalidRequestError):
        parse_search("Observation", [("_id:not", "o1")])


def test_reference_identifier_modifier_becomes_a_token_search() -> None:
    criterion = only(parse_search("Observation", [("subject:identifier", "sys|1")]).criteria)
    assert (criterion.name, criterion.type) == ("subject:identifier", "token")
    assert (criterion.values[0].system, criterion.values[0].code) == ("sys", "1")


def test_unknown_parameters_are_collected_not_raised() -> None:
    request = parse_search(
        "Observation",
        [("colour", "red"), ("code-value-quantity", "x$5"), ("_format", "json"), ("code", "a")],
    )
    assert request.unknown == [("colour", "red"), ("code-value-quantity", "x$5")]
    assert len(request.criteria) == 1


def test_chain_resolves_target_types_that_define_the_parameter() -> None:
    [criterion] = parse_search("Observation", [("subject:Patient.identifier", "sys|123")]).criteria
    assert isinstance(criterion, ChainCriterion)
    assert [t for t, _ in criterion.targets] == ["Patient"]
    [untyped] = parse_search("Observation", [("subject.name", "eva")]).criteria
    assert isinstance(untyped, ChainCriterion)
    assert [t for t, _ in untyped.targets] == ["Patient"]  # Group has no `name` parameter
    [deep] = parse_search(
        "QuestionnaireResponse", [("encounter.subject:Patient.identifier", "sys|1")]
    ).criteria
    assert isinstance(deep, ChainCriterion)
    inner = deep.targets[0][1]
    assert isinstance(inner, ChainCriterion) and inner.targets[0][0] == "Patient"


def test_reverse_chain() -> None:
    [criterion] = parse_search(
        "Patient", [("_has:Observation:patient:code", "madrs-total")]
    ).criteria
    assert isinstance(criterion, HasCriterion)
    assert (criterion.source_type, criterion.source_param) == ("Observation", "patient")
    assert isinstance(criterion.inner, ParamCriterion) and criterion.inner.name == "code"


def test_reverse_chain_must_point_at_the_searched_type() -> None:
    with pytest.raises(InvalidRequestError):
        parse_search("Encounter", [("_has:ResearchSubject:study:status", "on-study")])


def test_result_parameters() -> None:
    request = parse_search(
        "Observation",
        [
            ("_count", "50"),
            ("_offset", "10"),
            ("_sort", "-date,_id,code"),
            ("_summary", "count"),
            ("_total", "accurate"),
            ("_elements", "code,subject"),
            ("_include", "Observation:subject:Patient"),
            ("_include:iterate", "Observation:has-member"),
            ("_revinclude", "Provenance:target"),
            ("_cursor", "abc"),
        ],
    )
    assert (request.count, request.offset, request.summary, request.total) == (
        50,
        10,
        "count",
        "accurate",
    )
    assert request.sort == [
        SortKey("date", "date", True),
        SortKey("_id", "special"),
        SortKey("code", "token"),
    ]
    assert request.elements == ["code", "subject"]
    assert request.includes == [
        Include("Observation", "subject", "Patient"),
        Include("Observation", "has-member", None, iterate=True),
    ]
    assert request.revincludes == [Include("Provenance", "target")]
    assert request.cursor == "abc"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("_count", "-1"),
        ("_summary", "maybe"),
        ("_total", "all"),
        ("_sort", "colour"),
        ("_include", "Observation"),
        ("_include", "Observation:status"),
    ],
)
def test_bad_result_parameters_are_invalid(name: str, value: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_search("Observation", [(name, value)])
    assert caught.value.issues[0].expression == name


def test_query_string_keeps_order_and_decodes() -> None:
    assert parse_query_string("identifier=sys%7C123&status=final") == [
        ("identifier", "sys|123"),
        ("status", "final"),
    ]


CHAIN = "subject:Patient.link:Patient.link:Patient.link:Patient.gender"
HAS = "_has:Observation:subject:" * 4 + "status"


@pytest.mark.parametrize(
    ("resource_type", "params"),
    [
        ("Patient", [("gender", "male")] * 31),
        ("Patient", [("gender", ",".join(["male"] * 201))]),
        ("Observation", [(CHAIN, "male")]),
        ("Patient", [(HAS, "final")]),
        ("Patient", [("gender", ",".join(["male"] * 100))] * 11),
        ("Patient", [("_sort", ",".join(["_id"] * 9))]),
        ("ValueSet", [("url:above", "http://x" + "/a" * 33)]),
    ],
    ids=["criteria", "values", "chain-depth", "has-depth", "all-values", "sort-keys", "uri-levels"],
)
def test_searches_too_costly_to_run_are_refused(
    resource_type: str, params: list[tuple[str, str]]
) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_search(resource_type, params)
    assert info.value.issues[0].code == "too-costly"


@pytest.mark.parametrize(
    "value", ["2020-01-01T10:00+99:99", "2020-01-01T24:00:00Z", "2020-01-01T10:60Z"]
)
def test_impossible_times_are_not_dates(value: str) -> None:
    with pytest.raises(ValueError):
        date_range(value)


def test_indexed_text_is_bounded_and_keeps_long_values_apart() -> None:
    short, long = "x" * INDEXED_CHARS, "y" * 5000
    assert indexed(short) == short
    assert len(indexed(long) or "") == INDEXED_CHARS
    assert indexed(long) == indexed("y" * 5000) != indexed("y" * 4999 + "z")
    assert (indexed(long) or "").startswith(indexed_prefix(long))

"""FHIR JSON read and written as sent: decimals keep their text, a repeated key is a 400."""

from __future__ import annotations

import copy

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fhir_bridge.domain.fhir import parse_json
from fhir_bridge.domain.fhir_json import DecimalText, dumps, loads
from fhir_bridge.errors import InvalidRequestError

ALTERED_BY_FLOATS = ["1.50", "1e2", "1E2", "1.0000000000000001", "123456789012345678901234567890"]


@pytest.mark.parametrize("text", ALTERED_BY_FLOATS)
def test_a_decimal_a_float_would_alter_keeps_its_text(text: str) -> None:
    body = f'{{"resourceType":"Observation","valueQuantity":{{"value":{text}}}}}'.encode()
    value = loads(body)["valueQuantity"]["value"]
    assert isinstance(value, DecimalText) and value == float(text)
    assert dumps(loads(body)) == body


def test_numbers_a_float_keeps_are_plain_floats_and_integers() -> None:
    parsed = loads(b'{"a": 1.5, "b": [0.1, 100.0, 7, -0.0], "c": 1.50}')
    assert [type(v) for v in parsed["b"]] == [float, float, int, float]
    assert type(parsed["a"]) is float and type(parsed["c"]) is DecimalText


def test_whitespace_and_escapes_around_decimals_keep_their_text() -> None:
    body = b'{\n  "text": "caf\\u00e9 \\"1.50\\"",\n  "value" : 2.50,\n  "n": [1e2, 3]\n}'
    assert dumps(loads(body)) == b'{"text":"caf\xc3\xa9 \\"1.50\\"","value":2.50,"n":[1e2,3]}'


def test_a_decimal_text_survives_a_copy() -> None:
    value = copy.deepcopy(loads(b"[1.50]"))
    assert isinstance(value[0], DecimalText) and dumps(value) == b"[1.50]"


@given(
    st.lists(
        st.from_regex(
            r"-?(0|[1-9][0-9]{0,30})(\.[0-9]{1,20})?([eE][+-]?[0-9]{1,2})?", fullmatch=True
        ),
        min_size=1,
        max_size=5,
    )
)
def test_every_number_text_comes_back_as_sent(texts: list[str]) -> None:
    body = f'{{"v":[{",".join(texts)}]}}'.encode()
    parsed = loads(body)
    assert dumps(parsed) == body
    assert [float(v) for v in parsed["v"]] == [float(t) for t in texts]


@pytest.mark.parametrize(
    ("body", "expression"),
    [
        (b'{"resourceType":"Patient","id":"a","id":"b"}', "Patient.id"),
        (
            b'{"resourceType":"Patient","name":[{"family":"A","given":[],"family":"B"}]}',
            "Patient.name[0].family",
        ),
        (b'{"resourceType":"Patient","gender":"male","\\u0067ender":"female"}', "Patient.gender"),
        (b'[{"a":1},{"b":{"c":1.50,"c":2}}]', "$[1].b.c"),
    ],
    ids=["top-level", "nested", "escaped", "no-resource"],
)
def test_a_repeated_key_is_refused_naming_it(body: bytes, expression: str) -> None:
    with pytest.raises(InvalidRequestError) as raised:
        parse_json(body)
    key = expression.rsplit(".", 1)[-1]
    assert [i.to_fhir() for i in raised.value.issues] == [
        {
            "severity": "error",
            "code": "structure",
            "diagnostics": f"The key '{key}' appears more than once in one object",
            "expression": [expression],
        }
    ]


def test_a_key_that_differs_only_by_an_escaped_colon_is_not_repeated() -> None:
    body = b'{"a:b":1,"a\\u003ab2":2,"url":"http://x"}'
    assert loads(body) == orjson.loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b'{"name":"Bj\\u00f8rn \\"B\\" \\\\u0031\\/x\\n","value":1.5,"n":[1,2.25]}',
        b'{"a":"\\u0031\\u003a","value":1.5}',  # escapes that spell a digit and a colon
        b'{"a":"\\\\","b":"\\u005c","value":1.5}',
    ],
    ids=["escapes", "escaped-digit", "backslashes"],
)
def test_a_body_with_escapes_reads_as_orjson_reads_it(body: bytes) -> None:
    parsed = loads(body)
    assert parsed == orjson.loads(body) and type(parsed["value"]) is float


def test_an_escape_does_not_hide_an_altered_decimal() -> None:
    body = b'{"a":"\\u0031","value":1.50,"b":"\\u00e9"}'
    assert dumps(loads(body)) == '{"a":"1","value":1.50,"b":"é"}'.encode()

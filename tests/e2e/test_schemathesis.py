"""Schemathesis against a real `fhir-bridge serve` from openapi.yaml: no operation answers a 5xx,
and every error is an OperationOutcome. The default run takes under a minute per database;
FHIR_BRIDGE_TEST_SCHEMATHESIS_EXAMPLES=500 (examples per operation; 10 by default) runs it long."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import hypothesis
import psycopg
import pytest
import schemathesis
from schemathesis import Case, Response

from tests.conftest import BACKENDS, POSTGRES_URL
from tests.e2e.conftest import ServerURL, running_server
from tools.write_openapi import OPENAPI_PATH

EXAMPLES = int(os.environ.get("FHIR_BRIDGE_TEST_SCHEMATHESIS_EXAMPLES", "10"))


@pytest.fixture(scope="module", params=BACKENDS)
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerURL]:
    if request.param == "sqlite":
        database_url = f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'fhir.db'}"
        with running_server(database_url, rate_limit_per_second="0") as url:
            yield url
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with running_server(f"{POSTGRES_URL}?schema={schema}", rate_limit_per_second="0") as url:
        yield url
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


# Loaded at collection so that each operation is its own test; the server's address comes at
# call time (the lazy `schemathesis.pytest.from_fixture` loader does not run under pytest 9).
schema = schemathesis.openapi.from_path(OPENAPI_PATH)
schema.config.generation.update(max_examples=EXAMPLES)
# each request has its own 30 s time-out instead of a deadline; nothing is kept between runs
BOUNDED = hypothesis.settings(
    deadline=None, database=None, suppress_health_check=list(hypothesis.HealthCheck)
)


def assert_fhir_answer(response: Response) -> None:
    """No server error, and every refusal is an OperationOutcome (the token endpoint's are
    OAuth 2.0 errors: https://www.rfc-editor.org/rfc/rfc6749#section-5.2)."""
    request = f"{response.request.method} {response.request.url}"
    assert response.status_code < 500, f"{request} answered {response.status_code}: {response.text}"
    if response.status_code >= 400 and not str(response.request.url).endswith("/auth/token"):
        try:
            body: Any = response.json()
        except ValueError as error:
            raise AssertionError(f"{request} answered {response.status_code}: not JSON") from error
        assert isinstance(body, dict) and body.get("resourceType") == "OperationOutcome", (
            f"{request} answered {response.status_code} without an OperationOutcome: {body}"
        )


def _origin(server: ServerURL) -> str:
    return server.removesuffix("/fhir")  # openapi.yaml's paths start with /fhir


@schema.parametrize()
@hypothesis.settings(BOUNDED)
def test_every_operation_answers_without_server_error(case: Case, server: ServerURL) -> None:
    assert_fhir_answer(case.call(base_url=_origin(server), timeout=30))


# The stateful run's own copy, on create and the instance routes: its creates send a bare
# resource of a type that needs no element (the test above fuzzes create bodies), so that
# scenarios start from a stored resource and follow openapi.yaml's links to it.
BARE_TYPES = ("Medication", "Patient", "Practitioner")
CREATE = "POST /fhir/{resource_type}"
INSTANCE = "/fhir/{resource_type}/{resource_id}"
linked_schema = schemathesis.openapi.from_path(OPENAPI_PATH).include(
    lambda ctx: ctx.operation.label == CREATE or INSTANCE in ctx.operation.path
)


@linked_schema.hook
def map_case(context: schemathesis.HookContext, case: Case) -> Case:
    if case.operation.label == CREATE:
        generated = str(case.path_parameters["resource_type"])
        resource_type = BARE_TYPES[len(generated) % len(BARE_TYPES)]
        case.path_parameters["resource_type"] = resource_type
        case.body = {"resourceType": resource_type}
    return case


def test_linked_operations_answer_without_server_error(server: ServerURL) -> None:
    reached: set[str] = set()  # operations that answered 2xx on a stored resource

    class LinkedCalls(linked_schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": _origin(server), "timeout": 30}

        def validate_response(self, response: Response, case: Case, **kwargs: Any) -> None:
            assert_fhir_answer(response)
            if INSTANCE in case.operation.path and response.status_code < 300:
                reached.add(case.operation.label)

    LinkedCalls.run(
        settings=hypothesis.settings(BOUNDED, max_examples=3 * EXAMPLES, stateful_step_count=6)
    )
    assert f"GET {INSTANCE}" in reached, f"no scenario read a stored resource: {reached}"

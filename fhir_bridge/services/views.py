"""SQL on FHIR v2 `$viewdefinition-run`: its parameters checked, and the rows of a view over
inline resources or over the research view of this server's data, encoded as JSON, NDJSON,
CSV or Parquet while they stream.

https://sql-on-fhir.org/ig/latest/OperationDefinition-ViewDefinitionRun.html. The R4 mode runs
at the system level; a stored ViewDefinition runs at `ViewDefinition/[id]` too. Rows of this
server's data come from research_resources() only: pseudonymised, consent and withdrawal
applied. Inline resources are the client's own and run as given.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from itertools import islice
from typing import Any

import orjson

from fhir_bridge.domain.fhir_json import DecimalText
from fhir_bridge.domain.spreadsheet import safe_cell
from fhir_bridge.errors import (
    FHIRBridgeError,
    InvalidRequestError,
    PayloadTooLargeError,
    ResourceNotFoundError,
    UnprocessableResourceError,
)
from fhir_bridge.pseudonym import ResearchView
from fhir_bridge.services import view_definitions
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.history import since_instant
from fhir_bridge.services.research import research_resources
from fhir_bridge.services.resources import ID_PATTERN
from fhir_bridge.store.base import StoreSession
from fhir_bridge.store.sql import now_instant
from fhir_bridge.views import Row, ViewDefinition, as_dicts, run_tuples

log = logging.getLogger("fhir_bridge.views")

MEDIA_TYPES = {
    "json": "application/json",
    "ndjson": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
_FORMATS = {
    "json": "json",
    "application/json": "json",
    "ndjson": "ndjson",
    "application/x-ndjson": "ndjson",
    "application/ndjson": "ndjson",
    "csv": "csv",
    "text/csv": "csv",
    "parquet": "parquet",
    "application/parquet": "parquet",
    "application/vnd.apache.parquet": "parquet",
}
DEFAULT_FORMAT = "ndjson"  # the operation's default when neither _format nor Accept names one
MAX_PATIENTS = 1000  # `patient` values of one request
CHUNK = 64 * 1024  # bytes of output sent at once
CSV_BATCH = 256  # rows handed to the CSV writer at once
# Output made before the response starts: an error in it is still an OperationOutcome; one
# after it can only end the response unfinished (the status line is sent by then).
LOOKAHEAD = 64 * 1024
DATES = ("Instant", "DateTime", "Date", "String")  # value[x] types of a `_since`
REFERENCES = ("Reference", "String", "Uri", "Url", "Canonical")  # of a `viewReference`
_ONCE = ("viewResource", "viewReference", "_format", "header", "_limit", "_since", "group")


@dataclass(frozen=True, slots=True)
class Limits:
    """What one run may cost: inline resources (their bytes are bounded where the body is
    read) and rows."""

    max_resources: int
    max_rows: int


@dataclass(frozen=True, slots=True)
class Parameter:
    """One input parameter: a Parameters.parameter, or a URL query parameter as valueString."""

    name: str
    body: dict[str, Any]
    location: str  # `Parameters.parameter[n]`, or the name of a query parameter


@dataclass
class RunRequest:
    view: ViewDefinition
    location: str  # where the view came from, for the expressions of its errors
    format: str = DEFAULT_FORMAT
    header: bool = True
    limit: int | None = None
    resources: list[dict[str, Any]] | None = None  # inline: run over these only
    patients: list[str] | None = None
    group: str | None = None
    since: str | None = None


def query_parameters(items: Iterable[tuple[str, str]]) -> list[Parameter]:
    return [Parameter(name, {"name": name, "valueString": value}, name) for name, value in items]


def body_parameters(body: Any) -> list[Parameter]:
    """The parameters of a POSTed Parameters resource."""
    if not isinstance(body, dict) or body.get("resourceType") != "Parameters":
        raise InvalidRequestError("The body must be a Parameters resource", expression="Parameters")
    found = []
    for n, parameter in enumerate(body.get("parameter") or []):
        location = f"Parameters.parameter[{n}]"
        if not isinstance(parameter, dict) or not isinstance(parameter.get("name"), str):
            raise InvalidRequestError("A parameter needs a name", expression=location)
        found.append(Parameter(parameter["name"], parameter, location))
    return found


def parse_run(
    ctx: ServiceContext,
    base: str,
    params: Sequence[Parameter],
    instance: str | None,
    accept: str | None,
    limits: Limits,
) -> RunRequest:
    """The checked request: the view compiled (422 naming its element when invalid), the
    output format, the data it runs over. Everything is refused here, before any row."""
    seen: dict[str, Parameter] = {}
    resources: list[dict[str, Any]] = []
    patients: list[str] = []
    for param in params:
        if param.name in _ONCE and param.name in seen:
            raise InvalidRequestError(f"{param.name} may be given once", expression=param.location)
        seen[param.name] = param
        if param.name == "resource":
            if len(resources) >= limits.max_resources:
                raise PayloadTooLargeError(
                    f"At most {limits.max_resources} resource parameters; run larger data sets "
                    "over this server's data or with $viewdefinition-export"
                )
            resources.append(resource_of(param))
        elif param.name == "patient":
            patients.append(reference_of(param, "Patient", base))
        elif param.name == "source":
            raise InvalidRequestError(
                "source is not supported: views run over this server's data or inline resources",
                code="not-supported",
                expression=param.location,
            )
        elif param.name not in _ONCE:
            raise InvalidRequestError(
                f"The parameter '{param.name}' is not supported by $viewdefinition-run",
                code="not-supported",
                expression=param.location,
            )
    view, location = _view(ctx, base, seen, instance)
    request = RunRequest(view, location)
    request.format = _format(seen.get("_format"), accept)
    if "header" in seen:
        request.header = boolean_of(seen["header"])
    if "_limit" in seen:
        request.limit = _limit(seen["_limit"], limits.max_rows)
    if "_since" in seen:
        request.since = since_instant(string_of(seen["_since"], DATES), seen["_since"].location)
    if "group" in seen:
        request.group = reference_of(seen["group"], "Group", base)
    if len(patients) > MAX_PATIENTS:
        raise InvalidRequestError(f"At most {MAX_PATIENTS} patient values", code="too-costly")
    request.patients = patients or None
    if "resource" in seen:
        narrowed = [name for name in ("patient", "group", "_since") if name in seen]
        if narrowed:
            raise InvalidRequestError(
                f"{', '.join(narrowed)} apply to this server's data, not to resource parameters",
                code="not-supported",
                expression=seen[narrowed[0]].location,
            )
        request.resources = resources
    else:
        with ctx.store.session() as session:
            check_known(session, request.group, request.patients)
    return request


def _view(
    ctx: ServiceContext, base: str, seen: dict[str, Parameter], instance: str | None
) -> tuple[ViewDefinition, str]:
    given = [seen[name] for name in ("viewResource", "viewReference") if name in seen]
    if instance is not None:
        if given:
            raise InvalidRequestError(
                f"{given[0].name} is not for ViewDefinition/[id]/$viewdefinition-run, which "
                "runs the ViewDefinition of its URL",
                expression=given[0].location,
            )
        view = orjson.loads(view_definitions.read(ctx, instance).data)
        return view_definitions.checked(view), view_definitions.TYPE
    if len(given) != 1:
        raise InvalidRequestError(
            "Give one of viewResource (the ViewDefinition) and viewReference",
            code="required" if not given else "invalid",
            expression=given[1].location if given else "viewResource",
        )
    param = given[0]
    if param.name == "viewResource":
        location = f"{param.location}.resource"
        return view_definitions.checked(resource_of(param), location), location
    reference = string_of(param, REFERENCES)
    view = view_definitions.resolve(ctx, base, reference, param.location)
    return view_definitions.checked(view), view_definitions.TYPE


def value_of(param: Parameter, kinds: Sequence[str]) -> Any:
    found = [key for key in param.body if key.startswith("value")]
    if len(found) != 1 or found[0][5:] not in kinds:
        wanted = " or ".join(f"value{kind}" for kind in kinds)
        raise InvalidRequestError(
            f"{param.name} needs one {wanted}", code="structure", expression=param.location
        )
    return param.body[found[0]]


def string_of(param: Parameter, kinds: Sequence[str]) -> str:
    value = value_of(param, kinds)
    if isinstance(value, dict):  # a Reference
        value = value.get("reference")
    if not isinstance(value, str) or not value:
        raise InvalidRequestError(f"{param.name} must not be empty", expression=param.location)
    return value


def resource_of(param: Parameter) -> dict[str, Any]:
    resource = param.body.get("resource")
    if not isinstance(resource, dict):
        raise InvalidRequestError(
            f"{param.name} needs a resource", code="structure", expression=param.location
        )
    return resource


def reference_of(param: Parameter, resource_type: str, base: str) -> str:
    """The id of a local `[type]/[id]` reference (also as this server's absolute URL)."""
    reference = string_of(param, ("Reference", "String"))
    kind, _, resource_id = reference.removeprefix(f"{base}/").partition("/")
    if kind != resource_type or not ID_PATTERN.fullmatch(resource_id):
        raise InvalidRequestError(
            f"{param.name} must reference {resource_type}/[id], not '{reference}'",
            expression=param.location,
        )
    return resource_id


def _format(param: Parameter | None, accept: str | None) -> str:
    """`_format`, else the first media type of Accept that names a format, else ndjson."""
    if param is None:
        media = [part.split(";")[0].strip().lower() for part in (accept or "").split(",")]
        return next((_FORMATS[m] for m in media if m in _FORMATS), DEFAULT_FORMAT)
    return format_of(param, tuple(MEDIA_TYPES))


def format_of(param: Parameter, allowed: Sequence[str]) -> str:
    """The output format a `_format` names (a code or a media type), one of `allowed`."""
    value = string_of(param, ("Code", "String")).split(";")[0].strip().lower()
    if _FORMATS.get(value) not in allowed:
        raise InvalidRequestError(
            f"_format '{value}' is not supported; use {', '.join(allowed)}",
            code="not-supported",
            expression=param.location,
        )
    return _FORMATS[value]


def boolean_of(param: Parameter) -> bool:
    value = value_of(param, ("Boolean", "String"))
    if value in (True, "true"):
        return True
    if value in (False, "false"):
        return False
    raise InvalidRequestError(f"{param.name} must be true or false", expression=param.location)


def _limit(param: Parameter, max_rows: int) -> int:
    value = value_of(param, ("Integer", "PositiveInt", "UnsignedInt", "String"))
    number = int(value) if isinstance(value, str) and value.isdigit() else value
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise InvalidRequestError("_limit must be a positive integer", expression=param.location)
    if number > max_rows:
        raise InvalidRequestError(
            f"_limit may be at most {max_rows}; use $viewdefinition-export for more rows",
            code="too-costly",
            expression=param.location,
        )
    return number


def check_known(session: StoreSession, group: str | None, patients: Sequence[str] | None) -> None:
    """The Group and Patients a run or export over this server's data names exist (404)."""
    named = [("Group", group)] if group is not None else []
    named += [("Patient", patient) for patient in patients or ()]
    for resource_type, resource_id in named:
        current = session.read(resource_type, resource_id)
        if current is None or current.deleted:
            raise ResourceNotFoundError(
                f"{resource_type}/{resource_id} is not known", expression=resource_type.lower()
            )


def rows(
    ctx: ServiceContext, research_view: ResearchView, request: RunRequest, limits: Limits
) -> Iterator[Row]:
    """The view's rows as tuples in column order, at most `_limit` of them; over this
    server's data, read through the research view. Without `_limit`, more than `max_rows`
    rows are an error."""
    if request.resources is not None:
        source: Iterable[dict[str, Any]] = request.resources
    else:
        source = research_resources(
            ctx,
            research_view,
            [request.view.resource],
            group=request.group,
            patients=request.patients,
            since=request.since,
            until=now_instant(),
        )
    produced = _checked(run_tuples(request.view, source), request.location)
    if request.limit is not None:
        yield from islice(produced, request.limit)
        return
    yield from islice(produced, limits.max_rows)
    if next(produced, None) is not None:
        raise InvalidRequestError(
            f"The view yields more than {limits.max_rows} rows; give _limit, or use "
            "$viewdefinition-export",
            code="too-costly",
        )


def _checked(produced: Iterator[Row], location: str) -> Iterator[Row]:
    """Rows, a view that fails on the data being a 422 naming the element."""
    try:
        yield from produced
    except InvalidRequestError as error:
        relocated = [view_definitions.relocated(issue, location) for issue in error.issues]
        raise UnprocessableResourceError(issues=relocated) from error


def encoded(request: RunRequest, produced: Iterable[Row]) -> Iterator[bytes]:
    """The rows in the request's format, CHUNK bytes or so at a time: a JSON array, NDJSON
    lines, CSV (RFC 4180, a header row unless `header` is false; lists and objects as
    JSON text, booleans as true and false), or Parquet (a row group at a time)."""
    if request.format == "parquet":
        from fhir_bridge.services.view_parquet import parquet  # pyarrow loads on first use

        yield from parquet(request.view.output_columns, produced, _csv_cell)
        return
    if request.format == "csv":
        yield from _csv(request, iter(produced))
        return
    buffer = bytearray()
    array = request.format == "json"
    separator = b"," if array else b"\n"
    if array:
        buffer += b"["
    first = True
    for row in as_dicts(request.view, produced):
        if array and not first:
            buffer += separator
        buffer += orjson.dumps(row, default=_json_default)
        if not array:
            buffer += separator
        first = False
        if len(buffer) >= CHUNK:
            yield bytes(buffer)
            buffer.clear()
    if array:
        buffer += b"]"
    yield bytes(buffer)


def _csv(request: RunRequest, produced: Iterator[Row]) -> Iterator[bytes]:
    text = io.StringIO()
    writer = csv.writer(text)
    if request.header:
        writer.writerow(request.view.columns)
    # Strings and numbers go to the writer as they are (it writes null as empty and numbers
    # as str() does); only the other columns' values are converted, row by row.
    converted = [n for n, column in enumerate(request.view.output_columns) if not column.scalar]
    while batch := list(islice(produced, CSV_BATCH)):
        writer.writerows([_csv_row(row, converted) for row in batch] if converted else batch)
        if text.tell() >= CHUNK:
            yield text.getvalue().encode()
            text.seek(0)
            text.truncate()
    yield text.getvalue().encode()


def _csv_row(row: Row, converted: Sequence[int]) -> list[Any]:
    cells = list(row)
    for n in converted:
        cells[n] = _csv_cell(cells[n])
    return cells


def _json_default(value: Any) -> Any:
    if isinstance(value, DecimalText):  # a decimal of an inline resource, as sent
        return orjson.Fragment(value.text)
    if isinstance(value, Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


def _csv_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return orjson.dumps(value, default=_json_default).decode()
    return safe_cell(value) if isinstance(value, str) else str(value)


def started(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The output with its first LOOKAHEAD bytes already made: an error so far is raised
    here, as an OperationOutcome; a later one ends the response unfinished (logged without
    its text, which may quote data)."""
    made: list[bytes] = []
    size = 0
    for chunk in chunks:
        made.append(chunk)
        size += len(chunk)
        if size >= LOOKAHEAD:
            break
    return _rest(made, chunks)


def _rest(made: list[bytes], chunks: Iterator[bytes]) -> Iterator[bytes]:
    yield from made
    try:
        yield from chunks
    except FHIRBridgeError as error:
        codes = ", ".join(issue.code for issue in error.issues)
        log.warning("a view run failed after its response started (%s): it ends unfinished", codes)
        raise UnfinishedError from None


class UnfinishedError(Exception):
    """A run failed after its response had started; the response ends without its last
    chunk, which HTTP clients report as a failed transfer."""

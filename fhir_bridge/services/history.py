"""The history interactions: instance, type and system level, paged newest first.

https://hl7.org/fhir/R4/http.html#history
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlencode

from fhir_bridge.domain.fhir import parse_uint
from fhir_bridge.domain.search_values import date_range
from fhir_bridge.errors import InvalidRequestError, ResourceNotFoundError
from fhir_bridge.services import bundle_json
from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.resources import known_id


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """The parameters of a history interaction: `_since`, `_count`, `_cursor`, `_summary`."""

    since: str | None = None
    count: int | None = None
    cursor: str | None = None
    summary_count: bool = False


def since_instant(value: str, expression: str = "_since") -> str:
    """`_since` as a UTC instant in the stored form, so that text order is time order."""
    try:
        low, _ = date_range(value)
        # 9999-12-31T23:59:59-14:00 is in the year 10000 in UTC: out of datetime's range
        instant = datetime.fromtimestamp(low, UTC).isoformat(timespec="microseconds")
    except (ValueError, OverflowError, OSError) as exc:
        raise InvalidRequestError(
            f"{expression} '{value}' is not a date", expression=expression
        ) from exc
    return instant.replace("+00:00", "Z")


def history(
    ctx: ServiceContext,
    base: str,
    resource_type: str | None,
    resource_id: str | None,
    query: HistoryQuery,
) -> bytes:
    """A history Bundle; `cursor` (the `_cursor` link parameter) keeps pages stable under writes."""
    since = None if query.since is None else since_instant(query.since)
    count, cursor = query.count, query.cursor
    if resource_type and resource_id:
        known_id(resource_type, resource_id)
    page_size = min(count or ctx.default_page_size, ctx.max_page_size)
    before_seq = None
    if cursor is not None:
        before_seq = parse_uint(cursor)
        if before_seq is None:
            raise InvalidRequestError("_cursor is not valid", expression="_cursor")
    with ctx.store.session() as session:
        if resource_type and resource_id and session.read(resource_type, resource_id) is None:
            raise ResourceNotFoundError(f"{resource_type}/{resource_id} is not known")
        if query.summary_count:
            total = session.history_count(resource_type, resource_id, since)
            return bundle_json.build("history", [], total=total)
        rows = session.history(resource_type, resource_id, since, page_size + 1, before_seq)
    path = "/".join(p for p in (base, resource_type, resource_id, "_history") if p)
    params: dict[str, str] = {"_count": str(page_size)}
    if since:
        params["_since"] = since
    links = {"self": f"{path}?{urlencode({**params, **({'_cursor': cursor} if cursor else {})})}"}
    page = rows[:page_size]
    if len(rows) > page_size:
        links["next"] = f"{path}?{urlencode({**params, '_cursor': str(page[-1][0])})}"
    entries = [bundle_json.history_entry(base, stored) for _, stored in page]
    return bundle_json.build("history", entries, links=links)

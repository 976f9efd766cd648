"""The audit trail: an AuditEvent for every request and a Provenance for every write.

AuditEvents follow the IHE Basic Audit Log Patterns (BALP,
https://profiles.ihe.net/ITI/BALP/): who (the client, its role and site, its address), what
(the interaction, the resources touched or the query with identifying values masked), when,
the outcome, and the server that saw it; never resource content. A write's AuditEvent and
Provenance go into the write's own transaction (record_write, called by the store before it
commits); every other request's AuditEvent is queued and written in batches by AuditWriter.
"""

from __future__ import annotations

import base64
import logging
import queue
import threading
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhir_bridge.services.context import ServiceContext
from fhir_bridge.services.tokens import Principal
from fhir_bridge.store.base import StoredResource, StoreSession
from fhir_bridge.store.sql import now_instant

log = logging.getLogger(__name__)

BALP = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit."
DCM = "http://dicom.nema.org/resources/ontology/DCM"
CLIENT_SYSTEM = "urn:fhir-bridge:client"  # the identifier system of registered client ids
# Values of these search parameters name a person: the audit trail keeps the parameter only
MASKED_PARAMS = frozenset(
    {
        "identifier",
        "name",
        "family",
        "given",
        "birthdate",
        "address",
        "telecom",
        "phone",
        "email",
        "address-city",
        "address-postalcode",
        "phonetic",
        "patient.identifier",
        "subject.identifier",
        "subject:Patient.identifier",
        "patient:Patient.identifier",
    }
)
WRITE_ACTIONS = {"create": "C", "update": "U", "patch": "U", "delete": "D"}
QUEUE_LIMIT = 100_000  # events waiting for the writer; beyond it the request waits
BATCH = 500


@dataclass
class RequestAudit:
    """What the audit trail records of one request; filled in as the request is served."""

    method: str
    path: str
    query: str
    address: str | None
    base: str
    principal: Principal | None = None
    interaction: str = "read"  # a FHIR restful-interaction code, or "login"
    resource_type: str | None = None
    resource_id: str | None = None
    recorded: bool = False  # its AuditEvent was committed with a write
    written: list[str] = field(default_factory=list)


CURRENT: ContextVar[RequestAudit | None] = ContextVar("fhir_bridge_audit", default=None)


def masked_query(query: str) -> str:
    """The query string with the values of identifying parameters replaced by '***'."""
    pairs = parse_qsl(query, keep_blank_values=True)
    kept = [
        (k, "***" if k.split(":")[0] in MASKED_PARAMS or k in MASKED_PARAMS else v)
        for k, v in pairs
    ]
    return urlencode(kept, safe="/:|,*")


def record_write(session: StoreSession, written: list[StoredResource]) -> Callable[[], None] | None:
    """Before a write transaction commits: a Provenance of what it wrote and, for the
    request's first write, its AuditEvent, in the same transaction. The returned callable,
    called after the commit, notes the request as recorded."""
    audit = CURRENT.get()
    if audit is None or audit.principal is None:
        return None
    targets = [s for s in written if s.resource_type not in ("AuditEvent", "Provenance")]
    if targets:
        session.put(provenance(audit, targets), "POST", new=True)
    first = not audit.recorded
    if first:
        session.put(audit_event(audit, 200, targets), "POST", new=True)
    audit.written.extend(f"{s.resource_type}/{s.id}" for s in targets)

    def committed() -> None:
        audit.recorded = True

    return committed if first else None


def provenance(audit: RequestAudit, targets: list[StoredResource]) -> dict[str, Any]:
    """https://hl7.org/fhir/R4/provenance.html — who wrote which versions, and how."""
    principal = audit.principal
    assert principal is not None
    agent: dict[str, Any] = {
        "type": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                    "code": "author",
                }
            ]
        },
        "who": _client_reference(principal),
    }
    if principal.site:
        agent["onBehalfOf"] = {"display": principal.site}
    return {
        "resourceType": "Provenance",
        "id": str(uuid.uuid4()),
        "target": [
            {"reference": f"{s.resource_type}/{s.id}/_history/{s.version_id}"} for s in targets
        ],
        "recorded": targets[0].last_updated,
        "activity": {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
                    "code": _data_operation(targets),
                }
            ]
        },
        "agent": [agent],
    }


def audit_event(
    audit: RequestAudit, status: int, targets: list[StoredResource] | None = None
) -> dict[str, Any]:
    """The BALP AuditEvent of a request that answered `status`."""
    login = audit.interaction == "login"
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [BALP + _profile(audit)]},
        "type": (
            {"system": DCM, "code": "110114", "display": "User Authentication"}
            if login
            else {
                "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
                "code": "rest",
                "display": "Restful Operation",
            }
        ),
        "subtype": [
            {"system": DCM, "code": "110122", "display": "Login"}
            if login
            else {"system": "http://hl7.org/fhir/restful-interaction", "code": audit.interaction}
        ],
        "action": WRITE_ACTIONS.get(
            audit.interaction, "R" if audit.interaction in ("read", "vread") else "E"
        ),
        "recorded": now_instant(),
        "outcome": "0" if status < 400 else ("4" if status < 500 else "8"),
        "outcomeDesc": f"HTTP {status}",
        "agent": _agents(audit),
        "source": {
            "observer": {"display": audit.base},
            "type": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
                    "code": "4",
                    "display": "Application Server",
                }
            ],
        },
    }
    entities = _entities(audit, targets or [])
    if entities:
        event["entity"] = entities
    return event


def _profile(audit: RequestAudit) -> str:
    if audit.interaction == "login":
        return "Auth"  # not a BALP resource profile: the login itself
    return {
        "create": "Create",
        "update": "Update",
        "patch": "Update",
        "delete": "Delete",
        "read": "Read",
        "vread": "Read",
    }.get(audit.interaction, "Query")


def _data_operation(targets: list[StoredResource]) -> str:
    """What was done to the targets (v3 DataOperation); EXECUTE for a mix (a transaction)."""
    done = {_OPERATIONS.get(s.method, "EXECUTE") for s in targets}
    return done.pop() if len(done) == 1 else "EXECUTE"


_OPERATIONS = {"POST": "CREATE", "PUT": "UPDATE", "PATCH": "UPDATE", "DELETE": "DELETE"}


def _client_reference(principal: Principal) -> dict[str, Any]:
    site = f", {principal.site}" if principal.site else ""
    return {
        "identifier": {"system": CLIENT_SYSTEM, "value": principal.client_id},
        "display": f"{principal.name} ({principal.role}{site})",
    }


def _agents(audit: RequestAudit) -> list[dict[str, Any]]:
    client: dict[str, Any] = {
        "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
        "requestor": True,
    }
    if audit.principal is not None:
        client["who"] = _client_reference(audit.principal)
        client["role"] = [{"text": audit.principal.role}]
        if audit.principal.site:
            client["location"] = {"display": audit.principal.site}
    else:
        client["who"] = {"display": "unauthenticated client"}
    if audit.address:
        client["network"] = {"address": audit.address, "type": "2"}  # 2: IP address
    server = {
        "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": "fhir-bridge"},
        "requestor": False,
        "network": {"address": audit.base, "type": "5"},  # 5: URI
    }
    return [client, server]


def _entities(audit: RequestAudit, targets: list[StoredResource]) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    system_object = {
        "system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
        "code": "2",
    }
    if targets:
        for s in targets:
            entities.append(
                {
                    "what": {"reference": f"{s.resource_type}/{s.id}/_history/{s.version_id}"},
                    "type": system_object,
                }
            )
    elif audit.resource_type and audit.resource_id:
        entities.append(
            {
                "what": {"reference": f"{audit.resource_type}/{audit.resource_id}"},
                "type": system_object,
            }
        )
    if audit.query or audit.interaction.startswith("search"):
        text = f"{audit.method} {audit.path}" + (
            f"?{masked_query(audit.query)}" if audit.query else ""
        )
        entities.append(
            {
                "type": system_object,
                "role": {
                    "system": "http://terminology.hl7.org/CodeSystem/object-role",
                    "code": "24",
                    "display": "Query",
                },
                "query": base64.b64encode(text.encode()).decode(),
            }
        )
    return entities


SITE_SOURCE = "urn:fhir-bridge:site:"  # meta.source of what an EHR client of a site writes


class SiteSource:
    """A write transform: what an EHR client registered for a site writes carries the site in
    `meta.source` (https://hl7.org/fhir/R4/resource-definitions.html#Meta.source)."""

    def __call__(self, resource: dict[str, Any]) -> dict[str, Any]:
        site = self._site()
        if site is None:
            return resource
        return {**resource, "meta": {**(resource.get("meta") or {}), "source": SITE_SOURCE + site}}

    def may_apply(self, raw: bytes) -> bool:
        return self._site() is not None

    @staticmethod
    def _site() -> str | None:
        audit = CURRENT.get()
        return audit.principal.site if audit is not None and audit.principal is not None else None


class AuditWriter:
    """Writes queued AuditEvents in batches on a thread of its own; flush() waits for what is
    queued to be stored (the audit trail's readers call it first)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._ctx = ctx
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(QUEUE_LIMIT)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def add(self, event: dict[str, Any]) -> None:
        self._queue.put(event)

    def flush(self) -> None:
        self._queue.join()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            events = [first]
            while len(events) < BATCH:
                try:
                    events.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stopping = None in events
            try:
                self._write([e for e in events if e is not None])
            finally:
                for _ in events:
                    self._queue.task_done()
            if stopping:
                return

    def _write(self, events: list[dict[str, Any]]) -> None:
        if not events:
            return
        try:
            with self._ctx.store.session(write=True) as session:
                for event in events:
                    session.put(event, "POST", new=True)
        except Exception:  # the server goes on; the log says how many were lost
            log.exception("could not write %d audit events", len(events))

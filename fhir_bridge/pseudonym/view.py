"""The research view of one resource: keyed pseudonyms, shifted dates, identifiers removed.

Which JSON keys hold dates, references, identifiers, resources or removed datatypes is read once
per policy from the vendored R4 snapshots into a plan per type; a walk then descends only where
a plan says there may be something to change. Keys a plan does not know are removed.

Subtrees whose types hold nothing to change (CodeableConcept, Quantity, ...) could still carry
extensions, which may hold anything. Rather than visit them, the fast walk counts the extension
keys (`extension`, `modifierExtension`, `_primitive`) it meets and compares the count with the
resource's serialized form: equal means none hides in a skipped subtree; otherwise the resource
is walked again, every subtree visited.
https://hl7.org/fhir/R4/security-labels.html, https://hl7.org/fhir/R4/references.html
"""

from __future__ import annotations

import hashlib
import re
from calendar import monthrange
from datetime import date, timedelta
from functools import lru_cache
from typing import Any

import orjson

from fhir_bridge.pseudonym.plans import (
    BIRTH,
    DATE,
    DROP,
    ELEMENT,
    EXTENSION,
    ID,
    IDENTIFIER,
    NODE,
    REF,
    REFERENCE,
    RESOURCE,
    UNKNOWN,
    Plan,
    ResourcePlans,
    resource_plans,
)
from fhir_bridge.pseudonym.policy import ResearchPolicy
from fhir_bridge.validation.definitions import resource_types

SECURITY_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue"
MIN_KEY_BYTES = 16

_REFERENCE = re.compile(
    r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[A-Za-z0-9\-.]{1,64})?"
)


def _extension_keys(serialized: bytes) -> int:
    """How many `extension`, `modifierExtension` and `_primitive` keys compact JSON holds.

    A quote inside a JSON string is escaped, so the patterns match keys, not text; a string
    value starting with "_" counts too, which only sends the resource down the full walk."""
    count = serialized.count(b'xtension":')
    return count + serialized.count(b'"_') if b"_" in serialized else count


_NO_IDS: frozenset[str] = frozenset()
DATA_ABSENT_REASON = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"


def _masked() -> dict[str, Any]:
    """What stands in for a removed element the resource must have, so it stays valid:
    https://hl7.org/fhir/R4/extension-data-absent-reason.html ("masked": privacy reasons)."""
    return {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "masked"}]}


def _all_inert(items: list[Any], inert: frozenset[str]) -> bool:
    for item in items:
        if type(item) is not dict or not item.keys() <= inert:
            return False
    return True


@lru_cache(maxsize=1 << 14)
def _shift_day(day: str, days: int) -> str | None:
    try:
        return date.fromordinal(date.fromisoformat(day).toordinal() + days).isoformat()
    except (ValueError, OverflowError):
        return None


def shift_date(value: str, days: int) -> str | None:
    """A FHIR date, dateTime or instant moved by `days`, keeping its precision and time zone;
    None when `value` is not one.

    Time and offset are kept as written, so the instant moves by exactly `days` x 24 h and the
    interval between any two values of one participant is unchanged. A year or year-month value
    moves to the year or month holding its shifted middle day: an offset of at most 182 days
    leaves a year as it is, and a month is never left in place while full dates move.
    """
    if len(value) >= 10:
        if len(value) > 10 and value[10] != "T":
            return None
        day = _shift_day(value[:10], days)
        return None if day is None else day + value[10:]
    try:
        if len(value) == 7 and value[4] == "-":
            year, month = int(value[:4]), int(value[5:7])
            middle = date(year, month, 1) + timedelta(days=monthrange(year, month)[1] // 2)
            return (middle + timedelta(days=days)).isoformat()[:7]
        if len(value) == 4:
            return (date(int(value), 1, 1) + timedelta(days=182 + days)).isoformat()[:4]
    except (ValueError, OverflowError):
        return None
    return None


def _day(value: str) -> date:
    """The calendar day of a FHIR date or dateTime given to at least the day."""
    if len(value) < 10 or (len(value) > 10 and value[10] != "T"):
        raise ValueError(f"not a FHIR date or dateTime to the day: {value!r}")
    return date.fromisoformat(value[:10])


def _age(birth: str, on: date) -> int:
    """Whole years from a (possibly partial) birth date to `on`; a missing month or day counts
    as the earliest, so the age is never understated."""
    year = int(birth[:4])
    month = int(birth[5:7]) if len(birth) >= 7 else 1
    day = int(birth[8:10]) if len(birth) >= 10 else 1
    return on.year - year - ((on.month, on.day) < (month, day))


class ResearchView:
    """Applies the research policy with a secret key: the same key gives the same pseudonyms
    and date offsets, so references resolve across every resource of an export.

    The key must stay with the data custodian (GDPR Art. 4(5)); at least 16 bytes.
    """

    def __init__(self, policy: ResearchPolicy, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"the pseudonym key needs at least {MIN_KEY_BYTES} bytes")
        self.policy = policy
        # HMAC (RFC 2104) with the key's inner and outer hash states computed once
        block = key if len(key) <= 64 else hashlib.sha256(key).digest()
        block = block.ljust(64, b"\0")
        self._inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
        self._outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
        self._fast, self._full = resource_plans(policy)
        self._resource_types = resource_types()
        # bounded, so memory stays flat however many resources pass through
        self._reference = lru_cache(maxsize=1 << 16)(self._rewrite)
        # one entry per participant: resources come in write order, participants mixed, so
        # a cohort larger than the cache would miss (an HMAC) on nearly every resource
        self._offset = lru_cache(maxsize=1 << 16)(self._offset_days)

    def pseudonym(self, resource_type: str, resource_id: str) -> str:
        """HMAC-SHA256(key, "Type/id") as 32 lowercase hex characters (128 bits): a valid FHIR
        id, stable for one key, unrelated across keys."""
        return self._hmac(f"{resource_type}/{resource_id}").hex()[:32]

    def reference(self, reference: str) -> str | None:
        """A reference as the research view writes it: Type/id and Type/id/_history/n become
        Type/<pseudonym>, #local stays; anything else (absolute URL, urn:, conditional) becomes
        None, as it may name another system's record."""
        return self._reference(reference)

    def date_offset_days(self, patient_id: str, anchor: str | None = None) -> int:
        """Days every date of the participant moves: "shift" a keyed offset in
        [-max_shift_days, -1] or [1, max_shift_days]; "study-day" the days from the anchor
        (enrolment, a FHIR date or dateTime) to the policy's epoch, so day N is epoch + N."""
        return self._offset(patient_id, anchor)

    def releases(self, resource_type: str) -> bool:
        """Whether resources of this type may reach a research consumer at all."""
        return (resource_type, False) in self._full and (
            resource_type not in self.policy.exclude_resource_types
        )

    def apply(
        self,
        resource: dict[str, Any],
        patient_id: str | None,
        anchor: str | None = None,
        serialized: bytes | None = None,
    ) -> dict[str, Any]:
        """The research view of `resource`, a new dict; the input is not changed (unchanged
        subtrees are shared with it, so treat both as read-only).

        With `patient_id` (the original id of the participant the resource belongs to) dates
        are shifted by date_offset_days(patient_id, anchor); without, only ids, references and
        removals apply. `anchor` (enrolment date) is needed for "study-day" and, when given,
        also hides birth dates of participants older than the policy's max_age at it.
        `serialized`: the resource's compact JSON when the caller has it (saves a dump).
        Raises ValueError for a resource type that is not released (see `releases`).
        """
        resource_type = resource.get("resourceType")
        if not isinstance(resource_type, str) or not self.releases(resource_type):
            raise ValueError(f"resource type {resource_type!r} is not released for research")
        shift = None if patient_id is None else self._offset(patient_id, anchor)
        anchor_day = None if anchor is None else _day(anchor)
        if serialized is None:
            try:
                serialized = orjson.dumps(resource)
            except orjson.JSONEncodeError:
                pass
        result: dict[str, Any]
        if serialized is not None:
            walk = _Walk(self, self._fast, shift, anchor_day)
            result = walk.resource(resource, False)
            if walk.seen == _extension_keys(serialized):
                return result
        result = _Walk(self, self._full, shift, anchor_day).resource(resource, False)
        return result

    def _hmac(self, message: str) -> bytes:
        inner = self._inner.copy()
        inner.update(message.encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def _rewrite(self, reference: str) -> str | None:
        if reference.startswith("#"):
            return reference
        match = _REFERENCE.fullmatch(reference)
        if match is None or match[1] not in self._resource_types:
            return None
        return f"{match[1]}/{self._hmac(f'{match[1]}/{match[2]}').hex()[:32]}"

    def _offset_days(self, patient_id: str, anchor: str | None) -> int:
        if self.policy.date_method == "study-day":
            if anchor is None:
                raise ValueError("study-day dating needs the participant's anchor date")
            return self.policy.study_day_epoch.toordinal() - _day(anchor).toordinal()
        # its own message, so an offset says nothing about the participant's pseudonym
        digest = self._hmac(f"date-shift|Patient/{patient_id}")
        span = self.policy.max_shift_days
        n = int.from_bytes(digest[:8], "big") % (2 * span)
        return n - span if n < span else n - span + 1


class _Walk:
    """One application of a view: its plans, the participant's shift, whether anything was
    removed, and how many extension keys the walk met."""

    __slots__ = (
        "view",
        "plans",
        "shift",
        "anchor",
        "redacted",
        "seen",
        "keep_systems",
        "dangling",
    )

    def __init__(
        self, view: ResearchView, plans: ResourcePlans, shift: int | None, anchor: date | None
    ) -> None:
        self.view = view
        self.plans = plans
        self.shift = shift
        self.anchor = anchor
        self.redacted = False
        self.seen = 0
        self.keep_systems = view.policy.keep_identifier_systems
        self.dangling = _NO_IDS  # "#id" of the contained resources removed

    def resource(self, resource: Any, contained: bool) -> Any:
        resource_type = resource.get("resourceType") if type(resource) is dict else None
        plan = self.plans.get((resource_type, contained))  # type: ignore[arg-type]
        if plan is None or resource_type in self.view.policy.exclude_resource_types:
            self.redacted = True
            return None
        if contained:
            return self.node(resource, plan)
        outer, dangling = self.redacted, self.dangling
        self.redacted = False
        self.dangling = _NO_IDS
        if "contained" in resource:
            self.dangling = frozenset(
                f"#{item.get('id')}" if type(item) is dict else ""
                for item in resource["contained"] or ()
                if type(item) is not dict or not self.released(item.get("resourceType"))
            )
        result = self.node(resource, plan)
        self.dangling = dangling
        result = dict(result) if result is resource else result
        meta = result.get("meta")
        meta = dict(meta) if type(meta) is dict else {}
        labels = [{"system": SECURITY_SYSTEM, "code": "PSEUDED"}]
        if self.redacted:
            labels.append({"system": SECURITY_SYSTEM, "code": "REDACTED"})
        existing = meta.get("security")
        if type(existing) is list and existing:
            present = {(c.get("system"), c.get("code")) for c in existing if type(c) is dict}
            labels = existing + [c for c in labels if (c["system"], c["code"]) not in present]
        meta["security"] = labels
        result["meta"] = meta
        self.redacted = outer or self.redacted
        return result

    def node(self, node: Any, plan: Plan) -> Any:
        if type(node) is not dict:  # not what the definitions describe: fail closed
            self.redacted = True
            return None
        todo = node.keys() - plan.inert
        if not todo:
            return node
        # a copy changed in place keeps the keys in their order
        result = dict(node)
        actions = plan.actions
        for key in todo:
            op, arg = actions.get(key, UNKNOWN)
            if op >= EXTENSION or (op == DROP and (key[0] == "_" or key.endswith("xtension"))):
                self.seen += 1
            if op == DROP:
                self.redacted = True
                if key in plan.required:
                    result[key] = _masked()
                else:
                    del result[key]
                continue
            value = node[key]
            if type(value) is not list:
                changed = self.one(op, arg, value)
            elif op == NODE and _all_inert(value, arg.inert):
                continue
            else:
                if op == NODE or op == EXTENSION:
                    items = [self.node(item, arg) for item in value]
                else:
                    items = [self.one(op, arg, item) for item in value]
                if op == ELEMENT:
                    # a primitive's extensions (_given) stay aligned with its values by place
                    changed = items if any(item is not None for item in items) else None
                else:
                    changed = [item for item in items if item is not None] or None
            if changed is not None:
                result[key] = changed
            elif key in plan.required:
                result[key] = [_masked()] if type(value) is list else _masked()
            else:
                del result[key]
        if not result or (plan.needs and plan.needs.isdisjoint(result)):
            self.redacted = True
            return None
        return result

    def one(self, op: int, arg: Any, value: Any) -> Any:
        if op == NODE or op == EXTENSION:
            return self.node(value, arg)
        if op == REF:
            if type(value) is not dict or len(value) != 1 or "reference" not in value:
                return self.node(value, arg)
            # the usual {"reference": "Type/id"}, without the general walk
            target = value["reference"]
            changed = self.reference(target)
            if changed is None:
                self.redacted = True
                return None
            return {"reference": changed}
        if op == REFERENCE:
            changed = self.reference(value)
        elif op == DATE:
            if self.shift is None:
                return value
            changed = shift_date(value, self.shift) if type(value) is str else None
        elif op == IDENTIFIER:
            if type(value) is dict and value.get("system") in self.keep_systems:
                return self.node(value, arg)
            changed = None
        elif op == RESOURCE:
            return self.resource(value, arg)
        elif op == ID:
            changed = self.view.pseudonym(arg, value) if type(value) is str else None
        elif op == BIRTH:
            changed = self.birth(value)
        else:  # ELEMENT
            return None if value is None else self.node(value, arg)
        if changed is None:
            self.redacted = True
        return changed

    def released(self, resource_type: Any) -> bool:
        return (resource_type, True) in self.plans and (
            resource_type not in self.view.policy.exclude_resource_types
        )

    def reference(self, value: Any) -> str | None:
        if type(value) is not str or (self.dangling and value in self.dangling):
            return None
        return self.view._reference(value)

    def birth(self, value: Any) -> str | None:
        policy = self.view.policy
        if policy.birth_date == "remove" or type(value) is not str or len(value) < 4:
            return None
        try:
            too_old = self.anchor is not None and _age(value, self.anchor) > policy.max_age
        except ValueError:
            return None
        shifted = value if self.shift is None else shift_date(value, self.shift)
        if too_old or shifted is None:
            return None
        if len(value) > 4:
            self.redacted = True  # the month and day are masked
        return shifted[:4]

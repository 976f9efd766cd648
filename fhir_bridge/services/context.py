"""What every service needs from the running application: the store and the write checks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fhir_bridge.domain.issues import Issue
from fhir_bridge.store.base import ResourceStore

WriteCheck = Callable[[dict[str, Any]], list[Issue]]


@dataclass
class ServiceContext:
    store: ResourceStore
    write_checks: list[WriteCheck] = field(default_factory=list)
    # Hooks that derive more resources from a written one inside the same transaction
    # (e.g. score Observations from a QuestionnaireResponse).
    default_page_size: int = 20
    max_page_size: int = 1000
    max_bundle_entries: int = 10_000

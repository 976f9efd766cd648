"""A small FHIR REST client over httpx for the command line: post Bundles, page through searches."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from fhir_bridge.domain.fhir import FHIR_JSON
from fhir_bridge.domain.issues import Issue
from fhir_bridge.errors import FHIRBridgeError, InvalidRequestError


class FHIRClient:
    def __init__(
        self, base_url: str, timeout: float = 120.0, auth: httpx.Auth | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(timeout=timeout, headers={"Accept": FHIR_JSON}, auth=auth)

    def __enter__(self) -> FHIRClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def post_bundle(self, bundle: dict[str, Any]) -> dict[str, Any]:
        """POST a transaction or batch Bundle to the base; the response Bundle."""
        response = self._http.post(self.base_url, json=bundle, headers={"Content-Type": FHIR_JSON})
        return self._answer(response)

    def check_base(self) -> None:
        """Fail early and clearly when the URL is not a FHIR base (say, the server's root
        without /fhir), instead of with the first search's "no route"."""
        response = self._http.get(f"{self.base_url}/metadata")
        try:
            kind = response.json().get("resourceType") if response.status_code == 200 else None
        except ValueError:
            kind = None
        if kind != "CapabilityStatement":
            hint = (
                "" if self.base_url.endswith("/fhir") else f"; did you mean {self.base_url}/fhir?"
            )
            raise InvalidRequestError(
                f"{self.base_url} is not a FHIR server base (GET {self.base_url}/metadata "
                f"answered HTTP {response.status_code} without a CapabilityStatement){hint}",
                code="not-found",
            )

    def search_all(
        self, resource_type: str, params: dict[str, str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every match of a search, following `next` links."""
        url: str | None = f"{self.base_url}/{resource_type}"
        query: dict[str, str] | None = {"_count": "500", **(params or {})}
        while url:
            page = self._answer(self._http.get(url, params=query))
            for entry in page.get("entry", []):
                if entry.get("search", {}).get("mode", "match") == "match":
                    yield entry["resource"]
            url = next(
                (link["url"] for link in page.get("link", []) if link["relation"] == "next"), None
            )
            query = None

    @staticmethod
    def _answer(response: httpx.Response) -> dict[str, Any]:
        try:
            body: dict[str, Any] = response.json()
        except ValueError:
            body = {}
        if response.status_code >= 400:
            issues = [
                Issue(
                    i.get("severity", "error"),
                    i.get("code", "exception"),
                    i.get("diagnostics", ""),
                    (i.get("expression") or [None])[0],
                )
                for i in body.get("issue", [])
            ] or [Issue("error", "exception", f"HTTP {response.status_code}")]
            error = InvalidRequestError if response.status_code < 500 else FHIRBridgeError
            raise error(issues=issues)
        return body

"""Settings read from the environment (prefix FHIR_BRIDGE_); the only reader of os.environ."""

from __future__ import annotations

import json
from dataclasses import fields
from functools import lru_cache
from typing import Annotated, Literal

from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fhir_bridge.domain.cost import Limits


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_BRIDGE_", env_nested_delimiter="__")

    database_url: str = "sqlite:///fhir-bridge.db"
    host: str = "127.0.0.1"
    port: int = 8080
    base_url: str = ""  # public base of the FHIR endpoint; empty = derived from the request
    default_page_size: int = 20
    max_page_size: int = 1000
    max_body_bytes: int = 50 * 1024 * 1024
    max_bundle_entries: int = 10_000
    # A request's cost budget (domain/cost.py Limits, which documents each)
    max_contained: int = Limits.max_contained
    max_references: int = Limits.max_references
    max_array_items: int = Limits.max_array_items
    max_depth: int = Limits.max_depth
    max_patch_operations: int = Limits.max_patch_operations
    max_patch_bytes: int = Limits.max_patch_bytes
    max_search_criteria: int = Limits.max_search_criteria
    max_search_parameters: int = Limits.max_search_parameters
    max_include_results: int = Limits.max_include_results
    max_bundle_get_results: int = Limits.max_bundle_get_results
    statement_timeout_seconds: float = Limits.statement_timeout_seconds
    check_references: bool = True  # refuse writes whose Type/id references name nothing
    # HMAC key of the research view's pseudonyms and date offsets; unset: a random key made
    # once and kept in the database (stable for this server, unlike any other's)
    pseudonym_key: SecretStr | None = None
    export_dir: str = "fhir-bridge-exports"  # Bulk Data output files, a folder per job
    export_ttl_seconds: int = 24 * 3600  # a finished job's files are served this long
    max_export_jobs: int = 4  # export jobs queued or running at once; more get 429
    export_file_resources: int = 100_000  # resources per NDJSON output file
    export_stale_seconds: float = 30.0  # a running job whose worker is silent this long restarts
    # $viewdefinition-run: a body (with its inline resources) and its rows are bounded
    max_view_run_bytes: int = 16 * 1024 * 1024
    max_view_run_resources: int = 10_000
    max_view_run_rows: int = 1_000_000
    remission_threshold_madrs: int = 10
    demo: bool = False
    # SMART Backend Services (services/tokens.py): "disabled" lets anyone who reaches the port
    # read and write everything (local experiments only; the server warns on every start)
    auth: Literal["enabled", "disabled"] = "enabled"
    token_lifetime_seconds: int = 300
    demo_keys_dir: str = "fhir-bridge-demo-keys"  # serve --demo: the demo clients' private keys
    # The command line's own client: a registered client id and its private key (a JWK file)
    client_id: str = ""
    client_key: str = ""
    client_scope: str = "system/*.rs"  # e.g. system/*.cruds for an ehr client's import-table
    # the FHIR base the command line's client commands talk to when --server is not given
    server: str = "http://127.0.0.1:8080/fhir"

    # Host names the server answers to (DNS rebinding); empty: the base URL's host, the listen
    # address and the loopback names. Env: comma-separated or a JSON list, as cors_origins.
    allowed_hosts: Annotated[list[str], NoDecode] = []
    cors_origins: Annotated[list[str], NoDecode] = []  # browser origins allowed; none: CORS off
    # Per client and worker: a burst of requests, then a sustained rate; 0 turns the limit off.
    # A script paging or posting Bundles one after another stays below it; a client that
    # floods is held to a small share of a worker's reads (a read costs a few hundred us).
    rate_limit_per_second: float = 100.0
    rate_limit_burst: int = 1000

    @property
    def auth_enabled(self) -> bool:
        return self.auth == "enabled"

    def limits(self) -> Limits:
        return Limits(**{f.name: getattr(self, f.name) for f in fields(Limits)})

    @field_validator("allowed_hosts", "cors_origins", mode="before")
    @classmethod
    def _split_names(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [name.strip() for name in text.split(",") if name.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()

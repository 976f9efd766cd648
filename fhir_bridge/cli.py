"""The fhir-bridge command line: thin commands over the services (serve, validate, ...)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import orjson

from fhir_bridge.config import Settings
from fhir_bridge.errors import FHIRBridgeError, InvalidRequestError, StoreError
from fhir_bridge.terminal import EscapedStream, carriage_return

if TYPE_CHECKING:
    from fhir_bridge.report.tables import Source
    from fhir_bridge.store.sql import SQLStore

EXIT_INVALID = 1  # the input or request was refused (4xx, validation errors)
EXIT_SERVER = 3  # the server or database failed, or could not be reached


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_bridge.api.hardening import log_config

    overrides: dict[str, object] = {"demo": True} if args.demo else {}
    if args.database:
        overrides["database_url"] = args.database
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    # Each worker process builds its app from the environment, as a deployment would.
    os.environ.update({f"FHIR_BRIDGE_{k.upper()}": str(v) for k, v in overrides.items()})
    settings = Settings()
    print(f"fhir-bridge on http://{settings.host}:{settings.port}/fhir", file=sys.stderr)
    # no access log: query strings carry identifiers (PHI) such as `identifier=mrn|123`
    uvicorn.run(
        "fhir_bridge.api.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=args.workers,
        log_level="info",
        log_config=log_config(),
        access_log=False,
    )
    return 0


def _validate(args: argparse.Namespace) -> int:
    from fhir_bridge.services.validate import validate_paths

    return validate_paths([Path(p) for p in args.paths], args.format, sys.stdout, sys.stderr)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidRequestError(f"cannot read {path}: {reason}", code="not-found") from exc


def _import_table(args: argparse.Namespace) -> int:
    from fhir_bridge.client import FHIRClient
    from fhir_bridge.mapping import load_mappings
    from fhir_bridge.tables import ACTIONS, TableWriteError, import_table

    text = _read_text(args.file)
    with FHIRClient(args.server, auth=_client_auth(args.server)) as client, _ProgressLine() as line:
        client.check_base()
        try:
            result = import_table(
                client, text, args.map, load_mappings(), args.enrol, line.bar("importing")
            )
        except TableWriteError as failed:
            line.done("stopped")
            print(f"error: {failed}", file=sys.stderr)
            return EXIT_SERVER
        line.done(f"{args.file} imported into {args.server}")
    print(f"{'':<16}" + "".join(f"{action:>11}" for action in ACTIONS))
    for resource_type, counts in sorted(result.counts.items()):
        print(f"{resource_type:<16}" + "".join(f"{counts[a]:>11}" for a in ACTIONS))
    for issue in result.refused:
        print(f"refused {issue.expression}: {issue.diagnostics}", file=sys.stderr)
    return EXIT_INVALID if result.refused else 0


def _export_table(args: argparse.Namespace) -> int:
    from fhir_bridge.client import FHIRClient
    from fhir_bridge.mapping import load_mappings
    from fhir_bridge.tables import export_table

    m = load_mappings()
    m.column_map(args.map)  # an unknown map is said before anything is exported
    auth = _client_auth(args.server)
    with FHIRClient(args.server, auth=auth) as client:
        client.check_base()
    with _ProgressLine() as line:
        table = export_table(
            args.server, args.map, m, args.timeout, line.exporting, line.bar("downloading"), auth
        )
        line.done(f"{table.text.count(chr(10)) - 1} rows")
    for issue in table.issues:
        print(f"{issue.severity} {issue.expression}: {issue.diagnostics}", file=sys.stderr)
    if args.out:
        Path(args.out).write_text(table.text, encoding="utf-8")
    else:
        sys.stdout.write(table.text)
    return 0


def _export(args: argparse.Namespace) -> int:
    import time

    from fhir_bridge.bulk_client import BulkExportClient

    path = f"Group/{args.group}/$export" if args.group else "$export"
    path = "Patient/$export" if args.patients and not args.group else path
    params: list[tuple[str, str | int | float | bool | None]] = []
    params += [("_type", ",".join(args.type))] if args.type else []
    params += [("_since", args.since)] if args.since else []
    params += [("_typeFilter", f) for f in args.type_filter or []]
    params += [("view", args.view)] if args.view else []
    out = Path(args.out)
    with (
        BulkExportClient(args.server, auth=_client_auth(args.server)) as client,
        _ProgressLine() as line,
    ):
        started = time.monotonic()
        got = client.export(path, params, out, args.timeout, line.exporting)
        line.done(f"done in {time.monotonic() - started:.1f} s")
    manifest = got.manifest
    total = 0
    for resource_type, _, count, file in got.files:
        total += count if resource_type != "OperationOutcome" else 0
        print(f"{resource_type:<28} {count:>10}  {file}")
    excluded = manifest.get("extension", {}).get("https://fhir-bridge.org/fhir/export/excluded")
    if excluded:
        print(f"excluded by the research policy: {orjson.dumps(excluded).decode()}")
    print(f"{total} resources in {len(got.files)} files, manifest in {out / 'manifest.json'}")
    return 0


class _ProgressLine:
    """Progress redrawn on one line of stderr: the server's word while an export runs, then a
    bar over the files downloaded and the tables written."""

    WIDTH = 24

    def __init__(self) -> None:
        self.open = False  # a line is drawn and not yet ended

    def __enter__(self) -> _ProgressLine:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.open:  # ended by an error: its message starts a line of its own
            print(file=sys.stderr)

    def show(self, text: str) -> None:
        self.open = True
        carriage_return(sys.stderr)
        print(f"{text[:78]:<78}", end="", file=sys.stderr, flush=True)

    def exporting(self, status: str) -> None:
        self.show(f"exporting    {status}")

    def bar(self, phase: str) -> Callable[[int, int, str], None]:
        def step(done: int, total: int, what: str) -> None:
            filled = self.WIDTH * done // max(total, 1)
            bar = "#" * filled + "." * (self.WIDTH - filled)
            self.show(f"{phase:<12} [{bar}] {done}/{total} {what}")

        return step

    def done(self, text: str) -> None:
        self.open = False
        carriage_return(sys.stderr)
        print(f"{text:<78}", file=sys.stderr)


def _research_view(
    server: str, group: str, folder: Path, timeout: float, line: _ProgressLine | None = None
) -> Source:
    """The Group's research view by Bulk Data export (the types the trial views read),
    downloaded into `folder`: the resources as `report` and `export-dataset` read them."""
    from fhir_bridge.bulk_client import BulkExportClient
    from fhir_bridge.report.files import ndjson_source
    from fhir_bridge.services.report import VIEW_TYPES

    params: list[tuple[str, str | int | float | bool | None]] = [
        ("_type", ",".join(VIEW_TYPES)),
        ("view", "research"),
    ]
    with BulkExportClient(server, auth=_client_auth(server)) as client:
        progress = line.exporting if line else lambda _: None
        on_file = line.bar("downloading") if line else None
        client.export(f"Group/{group}/$export", params, folder, timeout, progress, on_file)
    return ndjson_source(folder)


def _report(args: argparse.Namespace) -> int:
    from fhir_bridge.mapping import load_mappings
    from fhir_bridge.report.formatting import text_table
    from fhir_bridge.services.report import write_report

    out = Path(args.out)
    source = _research_view(args.server, args.group, out / "export", args.timeout)
    threshold = Settings().remission_threshold_madrs
    report = write_report(source, out, load_mappings(), threshold)
    print(text_table(report.outcomes))
    for path in report.files:
        print(path, file=sys.stderr)
    return 0


def _export_dataset(args: argparse.Namespace) -> int:
    from fhir_bridge.mapping import load_mappings
    from fhir_bridge.services.cohort import group_id
    from fhir_bridge.services.dataset import write_dataset

    out = Path(args.out)
    group = args.group or group_id(args.study)
    with _ProgressLine() as line:
        source = _research_view(args.server, group, out / "export", args.timeout, line)
        line.show("running the trial views over the research view")
        files = write_dataset(source, out, load_mappings(), args.format, line.bar("writing"))
        line.done(f"{group}: {len(files) - 1} tables and datapackage.json in {out}")
    for path in files:
        print(path)
    return 0


def _client_auth(server: str) -> httpx.Auth | None:
    """Bearer tokens for the command's requests when FHIR_BRIDGE_CLIENT_ID and
    FHIR_BRIDGE_CLIENT_KEY name a registered client and its private key."""
    settings = Settings()
    if not settings.client_id or not settings.client_key:
        return None
    from fhir_bridge.smart_client import SMARTAuth, read_private_key

    key = read_private_key(Path(settings.client_key))
    return SMARTAuth(server, settings.client_id, key, scope=settings.client_scope)


def _token(args: argparse.Namespace) -> int:
    from fhir_bridge.smart_client import read_private_key, request_token

    key = read_private_key(Path(args.key))
    with httpx.Client(timeout=30.0) as http:
        token_url = f"{args.server.rstrip('/')}/auth/token"
        answer = request_token(http, token_url, args.client, key, args.scope)
    print(answer["access_token"])
    return 0


def _registry(args: argparse.Namespace) -> SQLStore:
    from fhir_bridge.store.indexing import extract_index
    from fhir_bridge.store.sql import SQLStore

    return SQLStore(args.database or Settings().database_url, extract_index)


def _clients_add(args: argparse.Namespace) -> int:
    from fhir_bridge.services import tokens
    from fhir_bridge.smart_client import new_key

    jwks = None
    if args.new_key:
        private_jwk, jwks = new_key()
        descriptor = os.open(args.new_key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as f:
            f.write(orjson.dumps(private_jwk).decode())
        print(f"private key written to {args.new_key}", file=sys.stderr)
    elif args.jwks:
        jwks = orjson.loads(Path(args.jwks).read_bytes())
    store = _registry(args)
    try:
        row = tokens.register(
            store, args.name, args.role, site=args.site, jwks=jwks, jwks_url=args.jwks_url
        )
    finally:
        store.close()
    print(f"registered {row.name} ({row.role}) as", file=sys.stderr)
    print(row.id)
    return 0


def _clients_list(args: argparse.Namespace) -> int:
    from fhir_bridge.store import clients

    store = _registry(args)
    try:
        with store.session() as session:
            rows = clients.list_clients(session)
    finally:
        store.close()
    for row in rows:
        state = "revoked" if row.revoked is not None else "active"
        keys = row.jwks_url or "inline JWKS"
        print("  ".join(str(v) for v in (row.id, row.name, row.role, row.site or "-", state, keys)))
    return 0


def _clients_revoke(args: argparse.Namespace) -> int:
    import time

    from fhir_bridge.store import clients

    store = _registry(args)
    try:
        with store.session(write=True) as session:
            done = clients.revoke_client(session, args.id, time.time())
    finally:
        store.close()
    if not done:
        print(f"error: no active client {args.id}", file=sys.stderr)
        return EXIT_INVALID
    print(f"revoked {args.id}", file=sys.stderr)
    return 0


def _package(args: argparse.Namespace) -> int:
    from fhir_bridge.mapping import build_ig_package
    from fhir_bridge.services.trial_rules import load_trial

    trial = load_trial()
    archive = build_ig_package(trial.mappings, Path(args.out), trial.validator.snapshot)
    print(archive)
    return 0


def _server_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--server",
        help="FHIR base URL, ending in /fhir (default: $FHIR_BRIDGE_SERVER, else "
        "http://127.0.0.1:8080/fhir)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the FHIR server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--database", help="database URL (sqlite:///file.db or postgresql://...)")
    serve.add_argument("--demo", action="store_true", help="load the synthetic example trial")
    serve.add_argument(
        "--workers", type=int, default=1, help="server processes (one per core for ingest)"
    )
    serve.set_defaults(run=_serve)

    validate = commands.add_parser("validate", help="validate FHIR JSON files, NDJSON, Bundles")
    validate.add_argument("paths", nargs="+")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.set_defaults(run=_validate)

    import_table = commands.add_parser(
        "import-table",
        help="CSV of visit scores into the server: new values created, changed ones updated "
        "(a new version), one transaction per participant",
    )
    import_table.add_argument("file")
    import_table.add_argument("--map", default="visit-scores", help="column map in mappings/")
    _server_option(import_table)
    import_table.add_argument(
        "--enrol",
        action="store_true",
        help="enrol study subject ids the server does not know (Patient, Consent and "
        "ResearchSubject); without it their rows are refused",
    )
    import_table.set_defaults(run=_import_table)

    export_table = commands.add_parser(
        "export-table",
        help="the server's visit scores as CSV (one row per participant and visit), by Bulk "
        "Data export",
    )
    export_table.add_argument("--map", default="visit-scores")
    _server_option(export_table)
    export_table.add_argument(
        "--timeout", type=float, default=3600.0, help="seconds to wait at most"
    )
    export_table.add_argument("--out", help="write here instead of standard output")
    export_table.set_defaults(run=_export_table)

    export = commands.add_parser(
        "export", help="Bulk Data $export: kick off, poll, download the NDJSON files"
    )
    _server_option(export)
    export.add_argument("--type", action="append", help="resource type (repeatable)")
    export.add_argument("--group", help="export the compartments of this Group's members")
    export.add_argument("--patients", action="store_true", help="Patient-level export")
    export.add_argument("--since", help="only resources changed after this instant")
    export.add_argument("--type-filter", action="append", help="e.g. Observation?code=...")
    export.add_argument("--view", choices=("plain", "research"), help="research: pseudonymised")
    export.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    export.add_argument("--out", required=True, help="folder for the files and manifest.json")
    export.set_defaults(run=_export)

    report = commands.add_parser(
        "report",
        help="outcome report of a study's cohort Group: research-view Bulk export, trial views "
        "as CSV, outcomes.json, report.html",
    )
    _server_option(report)
    report.add_argument(
        "--group", required=True, help="the cohort Group, e.g. cohort-psykforsk-mat-mdd"
    )
    report.add_argument("--out", required=True, help="folder for the report and its tables")
    report.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    report.set_defaults(run=_report)

    dataset = commands.add_parser(
        "export-dataset",
        help="analysis dataset of a study's cohort: research-view Bulk export, every trial view, "
        "wide outcomes and codebook as a Frictionless Data Package (CSV or Parquet)",
    )
    _server_option(dataset)
    cohort = dataset.add_mutually_exclusive_group(required=True)
    cohort.add_argument("--study", help="ResearchStudy id: its cohort Group cohort-{ID}")
    cohort.add_argument("--group", help="the cohort Group, e.g. cohort-psykforsk-mat-mdd")
    dataset.add_argument("--out", required=True, help="folder for the tables and datapackage.json")
    dataset.add_argument("--format", choices=("csv", "parquet"), default="csv")
    dataset.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    dataset.set_defaults(run=_export_dataset)

    token = commands.add_parser(
        "token", help="an access token for a registered client (SMART Backend Services)"
    )
    token.add_argument("--server", help="the FHIR base (default FHIR_BRIDGE_SERVER)")
    token.add_argument("--client", required=True, help="the registered client id")
    token.add_argument("--key", required=True, help="the client's private key (a JWK file)")
    token.add_argument("--scope", default="system/*.rs", help="e.g. system/Observation.cruds")
    token.set_defaults(run=_token)

    clients_cmd = commands.add_parser("clients", help="the registry of SMART clients")
    clients_commands = clients_cmd.add_subparsers(dest="clients_command", required=True)
    add = clients_commands.add_parser("add", help="register a client; prints its id last")
    add.add_argument("name")
    add.add_argument("--role", required=True, choices=("ehr", "researcher", "validator", "admin"))
    add.add_argument("--site", help="the site an ehr client writes for")
    keys = add.add_mutually_exclusive_group(required=True)
    keys.add_argument("--jwks", help="a file with the client's public keys (JWKS)")
    keys.add_argument("--jwks-url", help="where the client publishes its public keys")
    keys.add_argument("--new-key", help="make an ES384 key pair; the private key goes here")
    add.set_defaults(run=_clients_add)
    listing = clients_commands.add_parser("list", help="the registered clients")
    listing.set_defaults(run=_clients_list)
    revoke = clients_commands.add_parser("revoke", help="refuse a client's tokens from now on")
    revoke.add_argument("id")
    revoke.set_defaults(run=_clients_revoke)
    for sub in (add, listing, revoke):
        sub.add_argument("--database", help="database URL (default FHIR_BRIDGE_DATABASE_URL)")

    package = commands.add_parser("package", help="build the FHIR NPM package of the profiles")
    package.add_argument("--out", default="dist", help="folder for package/ and the .tgz")
    package.set_defaults(run=_package)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if "server" in args and args.server is None:
        args.server = Settings().server
    # Keys, file names and messages quote data: none may reach the terminal as a control.
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = EscapedStream(stdout), EscapedStream(stderr)
    try:
        return _run(args)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.run(args)
    except FHIRBridgeError as exc:
        for issue in exc.issues:
            where = f" {issue.expression}:" if issue.expression else ""
            print(f"{issue.severity}{where} {issue.diagnostics}", file=sys.stderr)
        return EXIT_SERVER if isinstance(exc, StoreError) else EXIT_INVALID
    except httpx.TransportError as exc:
        where = f" at {args.server}" if "server" in args else ""
        print(f"error: cannot reach the server{where}: {exc}", file=sys.stderr)
        return EXIT_SERVER
    return code

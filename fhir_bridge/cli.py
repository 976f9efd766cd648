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
from fhir_bridge.errors import FHIRBridgeError, StoreError

if TYPE_CHECKING:
    from fhir_bridge.report.tables import Source

DEFAULT_SERVER = "http://127.0.0.1:8080/fhir"
TABLE_TYPES = ("Patient", "ResearchSubject", "Encounter", "Observation")
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


def _import_table(args: argparse.Namespace) -> int:
    from fhir_bridge.mapping import load_mappings, table_to_bundle

    bundle = table_to_bundle(Path(args.file).read_text(encoding="utf-8"), args.map, load_mappings())
    if args.out:
        Path(args.out).write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2))
        print(f"wrote {len(bundle['entry'])} entries to {args.out}", file=sys.stderr)
        return 0
    from fhir_bridge.client import FHIRClient

    with FHIRClient(args.server) as client:
        response = client.post_bundle(bundle)
    print(f"posted {len(response.get('entry', []))} entries to {args.server}", file=sys.stderr)
    return 0


def _export_table(args: argparse.Namespace) -> int:
    from fhir_bridge.client import FHIRClient
    from fhir_bridge.mapping import bundle_to_table, load_mappings

    with FHIRClient(args.server) as client:
        resources = [
            resource
            for resource_type in TABLE_TYPES
            for resource in client.search_all(resource_type)
        ]
    table = bundle_to_table(resources, args.map, load_mappings())
    if args.out:
        Path(args.out).write_text(table, encoding="utf-8")
    else:
        sys.stdout.write(table)
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
    with BulkExportClient(args.server) as client, _ProgressLine() as line:
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
        print(f"\r{text[:78]:<78}", end="", file=sys.stderr, flush=True)

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
        print(f"\r{text:<78}", file=sys.stderr)


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
    with BulkExportClient(server) as client:
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


def _package(args: argparse.Namespace) -> int:
    from fhir_bridge.mapping import build_ig_package
    from fhir_bridge.services.trial_rules import load_trial

    trial = load_trial()
    archive = build_ig_package(trial.mappings, Path(args.out), trial.validator.snapshot)
    print(archive)
    return 0


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
        "import-table", help="CSV of visit scores → transaction Bundle, posted or written"
    )
    import_table.add_argument("file")
    import_table.add_argument("--map", default="visit-scores", help="column map in mappings/")
    import_table.add_argument("--server", default=DEFAULT_SERVER)
    import_table.add_argument("--out", help="write the Bundle here instead of posting it")
    import_table.set_defaults(run=_import_table)

    export_table = commands.add_parser("export-table", help="the server's visit scores as CSV")
    export_table.add_argument("--map", default="visit-scores")
    export_table.add_argument("--server", default=DEFAULT_SERVER)
    export_table.add_argument("--out", help="write here instead of standard output")
    export_table.set_defaults(run=_export_table)

    export = commands.add_parser(
        "export", help="Bulk Data $export: kick off, poll, download the NDJSON files"
    )
    export.add_argument("--server", default=DEFAULT_SERVER)
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
    report.add_argument("--server", default=DEFAULT_SERVER)
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
    dataset.add_argument("--server", default=DEFAULT_SERVER)
    cohort = dataset.add_mutually_exclusive_group(required=True)
    cohort.add_argument("--study", help="ResearchStudy id: its cohort Group cohort-{ID}")
    cohort.add_argument("--group", help="the cohort Group, e.g. cohort-psykforsk-mat-mdd")
    dataset.add_argument("--out", required=True, help="folder for the tables and datapackage.json")
    dataset.add_argument("--format", choices=("csv", "parquet"), default="csv")
    dataset.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait at most")
    dataset.set_defaults(run=_export_dataset)

    package = commands.add_parser("package", help="build the FHIR NPM package of the profiles")
    package.add_argument("--out", default="dist", help="folder for package/ and the .tgz")
    package.set_defaults(run=_package)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except FHIRBridgeError as exc:
        for issue in exc.issues:
            where = f" {issue.expression}:" if issue.expression else ""
            print(f"{issue.severity}{where} {issue.diagnostics}", file=sys.stderr)
        return EXIT_SERVER if isinstance(exc, StoreError) else EXIT_INVALID
    except httpx.TransportError as exc:
        print(f"error: cannot reach the server: {exc}", file=sys.stderr)
        return EXIT_SERVER
    return code

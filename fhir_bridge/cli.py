"""The fhir-bridge command line: thin commands over the services (serve, validate, ...)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from fhir_bridge.config import Settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from fhir_bridge.api.app import create_app

    overrides: dict[str, object] = {"demo": args.demo}
    if args.database:
        overrides["database_url"] = args.database
    if args.host:
        overrides["host"] = args.host
    if args.port:
        overrides["port"] = args.port
    settings = Settings(**overrides)  # type: ignore[arg-type]
    print(f"fhir-bridge on http://{settings.host}:{settings.port}/fhir", file=sys.stderr)
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")
    return 0


def _validate(args: argparse.Namespace) -> int:
    from fhir_bridge.services.validate import validate_paths

    return validate_paths([Path(p) for p in args.paths], args.format, sys.stdout, sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fhir-bridge", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the FHIR server")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--database", help="database URL (sqlite:///file.db or postgresql://...)")
    serve.add_argument("--demo", action="store_true", help="load the synthetic example trial")
    serve.set_defaults(run=_serve)

    validate = commands.add_parser("validate", help="validate FHIR JSON files, NDJSON, Bundles")
    validate.add_argument("paths", nargs="+")
    validate.add_argument("--format", choices=("text", "json"), default="text")
    validate.set_defaults(run=_validate)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.run(args)
    return code

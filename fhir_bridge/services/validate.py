"""Validating files for the CLI: JSON resources, Bundles, NDJSON and folders → findings.

Each record (a JSON file, or one NDJSON line) is validated as a whole resource; a Bundle's
entries are reported with their paths inside it. Large inputs are spread over the CPU cores.
https://hl7.org/fhir/R4/validation.html, https://hl7.org/fhir/R4/nd-json.html
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import orjson

from fhir_bridge.services.trial_rules import load_trial
from fhir_bridge.validation import Validator, get_validator

BATCH_SIZE = 500
# Below this many records the pool's start-up costs more than it saves.
PARALLEL_THRESHOLD = 4000
PROGRESS_THRESHOLD = 2000
SUFFIXES = (".json", ".ndjson")

# (file, line number or None, the record's bytes or why the file could not be read)
Record = tuple[str, int | None, bytes | OSError]
# (file, first line number or None for a whole JSON file, start offset, end offset)
Part = tuple[str, int | None, int, int]
Task = list[Part]
Finding = tuple[str, int | None, str, str, str | None, str]


@dataclass
class Summary:
    """Counts over one run."""

    files: int = 0
    resources: int = 0
    error: int = 0
    warning: int = 0
    information: int = 0


def validate_paths(
    paths: list[Path],
    output_format: str,
    out: TextIO,
    err: TextIO,
    validator: Validator | None = None,
    workers: int | None = None,
) -> int:
    """Validate files and folders; print findings and a summary. Exit code: 1 on errors.

    `output_format` is "text" (one line per finding: `file[:line] severity expression: text`)
    or "json" (one object with `findings` and `summary`). Without `validator`, the server's:
    base R4 plus the trial's profiles, CodeSystems and ValueSets from mappings/.
    """
    global _worker_validator
    _worker_validator = validator or load_trial().validator
    # The compiled definitions live as long as the process: the collector need not scan them
    # again, and forked workers then share their pages instead of copying them.
    gc.freeze()
    files = list(_files(paths))
    summary = Summary(files=len(files))
    tasks, total = _plan(files)
    findings: list[Finding] = []
    progress = _Progress(err, total) if total >= PROGRESS_THRESHOLD and err.isatty() else None
    cores = workers if workers is not None else (os.cpu_count() or 1)
    for result in _run(tasks, total, cores, output_format):
        summary.resources += result.records
        summary.error += result.error
        summary.warning += result.warning
        summary.information += result.information
        if output_format == "text":
            out.write(result.text)
        else:
            findings.extend(result.findings)
        if progress is not None:
            progress.update(summary.resources)
    if progress is not None:
        progress.close()
    if output_format == "json":
        out.write(orjson.dumps(_json(findings, summary), option=orjson.OPT_INDENT_2).decode())
        out.write("\n")
    else:
        out.write(
            f"{summary.resources} resources in {summary.files} files: {summary.error} errors, "
            f"{summary.warning} warnings, {summary.information} information\n"
        )
    return 1 if summary.error else 0


_worker_validator: Validator | None = None


def validate_batch(batch: list[Record]) -> tuple[list[Finding], int]:
    """Validate a batch of records with the process's validator (also run in workers)."""
    validator = _worker_validator or get_validator()
    findings: list[Finding] = []
    for label, line, raw in batch:
        if isinstance(raw, OSError):
            text = f"cannot read the file: {raw.strerror or raw}"
            findings.append((label, line, "error", "exception", None, text))
            continue
        try:
            resource = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            findings.append((label, line, "error", "structure", None, f"invalid JSON: {exc}"))
            continue
        for issue in validator.validate(resource):
            findings.append(
                (label, line, issue.severity, issue.code, issue.expression, issue.diagnostics)
            )
    return findings, len(batch)


@dataclass
class TaskResult:
    """What a task sends back: counts, and its findings as text lines or as records."""

    records: int
    error: int = 0
    warning: int = 0
    information: int = 0
    text: str = ""
    findings: list[Finding] = field(default_factory=list)


def validate_task(task: Task, output_format: str = "text") -> TaskResult:
    """Read the records a task names (workers read the files themselves) and validate them.

    Text lines are formatted here, in the worker, so the parent only writes them out.
    """
    findings, count = validate_batch(list(_records(task)))
    result = TaskResult(records=count)
    for finding in findings:
        severity = "error" if finding[2] == "fatal" else finding[2]
        setattr(result, severity, getattr(result, severity) + 1)
    if output_format == "text":
        result.text = "".join(_line(f) for f in findings)
    else:
        result.findings = findings
    return result


def _run(tasks: list[Task], total: int, cores: int, output_format: str) -> Iterator[TaskResult]:
    if cores < 2 or total < PARALLEL_THRESHOLD:
        for task in tasks:
            yield validate_task(task, output_format)
        return
    # fork: workers inherit the compiled validator (and any registered profiles) for free.
    context = multiprocessing.get_context("fork")
    with ProcessPoolExecutor(max_workers=cores, mp_context=context) as pool:
        pending: deque[Future[TaskResult]] = deque()
        for task in tasks:
            pending.append(pool.submit(validate_task, task, output_format))
            if len(pending) >= cores * 3:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _files(paths: list[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
        else:
            yield path


def _plan(files: list[Path]) -> tuple[list[Task], int]:
    """Cut the input into tasks of about BATCH_SIZE records: byte ranges of NDJSON files,
    whole JSON files. Returns the tasks and the number of records."""
    tasks: list[Task] = []
    task: list[Part] = []
    size = total = 0
    for path in files:
        # A file that cannot be read is one record, whose reading reports why.
        if path.suffix != ".ndjson" or not path.is_file() or not os.access(path, os.R_OK):
            task.append((str(path), None, 0, 0))
            size += 1
            total += 1
        else:
            start = offset = 0
            first = 1
            with path.open("rb") as f:
                for number, line in enumerate(f, 1):
                    offset += len(line)
                    if line.strip():
                        size += 1
                        total += 1
                    if size >= BATCH_SIZE:
                        task.append((str(path), first, start, offset))
                        tasks.append(task)
                        task, size, start, first = [], 0, offset, number + 1
            if offset > start:
                task.append((str(path), first, start, offset))
        if size >= BATCH_SIZE:
            tasks.append(task)
            task, size = [], 0
    if task:
        tasks.append(task)
    return tasks, total


def _records(task: Task) -> Iterator[Record]:
    for label, first, start, end in task:
        if first is None:
            try:
                yield label, None, Path(label).read_bytes()
            except OSError as exc:
                yield label, None, exc
            continue
        with open(label, "rb") as f:
            f.seek(start)
            chunk = f.read(end - start)
        for number, line in enumerate(chunk.split(b"\n"), first):
            if line.strip():
                yield label, number, line


def _line(finding: Finding) -> str:
    label, line, severity, _code, expression, text = finding
    where = f"{label}:{line}" if line is not None else label
    return f"{where} {severity} {expression or '-'}: {text}\n"


def _json(findings: list[Finding], summary: Summary) -> dict[str, object]:
    return {
        "findings": [
            {
                # a file name that is not UTF-8 keeps its bytes as \x escapes
                "file": label.encode("utf-8", "surrogateescape").decode(
                    "utf-8", "backslashreplace"
                ),
                "line": line,
                "severity": severity,
                "code": code,
                "expression": expression,
                "diagnostics": text,
            }
            for label, line, severity, code, expression, text in findings
        ],
        "summary": {
            "files": summary.files,
            "resources": summary.resources,
            "errors": summary.error,
            "warnings": summary.warning,
            "information": summary.information,
        },
    }


class _Progress:
    """A one-line progress bar on a terminal's stderr, redrawn at most 10 times a second."""

    WIDTH = 30

    def __init__(self, err: TextIO, total: int) -> None:
        self.err = err
        self.total = max(total, 1)
        self.started = self.drawn = time.monotonic()

    def update(self, done: int) -> None:
        now = time.monotonic()
        if now - self.drawn < 0.1 and done < self.total:
            return
        self.drawn = now
        filled = self.WIDTH * done // self.total
        rate = done / max(now - self.started, 1e-9)
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self.err.write(f"\r[{bar}] {done}/{self.total} resources ({rate:,.0f}/s)")
        self.err.flush()

    def close(self) -> None:
        self.err.write("\n")
        self.err.flush()

"""The trial's analysis dataset: every trial view over the research view, the wide outcome
table and the codebook, written as a Frictionless Data Package of CSV or Parquet files.

The resources come from the research view (a Bulk Data export downloaded by
`fhir-bridge export-dataset`, as for the report), so nothing here sees an identity.
https://specs.frictionlessdata.io/data-package/
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from fhir_bridge.mapping.loader import Mappings
from fhir_bridge.report import wide
from fhir_bridge.report.codebook import CODEBOOK, COLUMNS, codebook_rows
from fhir_bridge.report.codebook import DESCRIPTION as CODEBOOK_DESCRIPTION
from fhir_bridge.report.columns import load_views
from fhir_bridge.report.files import Progress, write_tables
from fhir_bridge.report.tables import Source, Tables, trial_tables

PACKAGE = {
    "name": "trial-dataset",
    "title": "Analysis dataset of the trial (pseudonymised)",
    "description": "The trial views (SQL on FHIR ViewDefinitions in mappings/views) run over "
    "the research view, with the columns computed after the views; the outcomes one row per "
    "participant; and the codebook of every column.",
}


def dataset_tables(source: Source, m: Mappings) -> Tables:
    """The trial views' tables, `outcomes_wide` and `codebook`, in that order."""
    tables = trial_tables(source, m, load_views())
    rows, columns = wide.outcomes_wide(tables, m)
    tables.add(wide.WIDE, rows, columns, wide.DESCRIPTION)
    tables.add(CODEBOOK, codebook_rows(tables), COLUMNS, CODEBOOK_DESCRIPTION)
    return tables


def write_dataset(
    source: Source,
    out: Path,
    m: Mappings,
    file_format: Literal["csv", "parquet"] = "csv",
    progress: Progress | None = None,
) -> list[Path]:
    """Every table of the dataset into `out` as `{table}.csv` or `{table}.parquet`, with
    datapackage.json; the paths written."""
    return write_tables(dataset_tables(source, m), out, file_format, PACKAGE, progress)

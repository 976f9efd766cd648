"""The trial report: analysis tables from the trial views, outcome statistics, HTML."""

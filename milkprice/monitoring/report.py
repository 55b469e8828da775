"""The monitoring report of a month: an HTML page in the lake, and an MLflow run holding it.

``monitor/reports/YYYY-MM/accuracy.html`` (local folder or S3, through the lake's one code
path) shows the month's summary and alerts (the same text as the Prefect markdown artifact)
and the accuracy table of every month forecast so far. The MLflow run ``monitor-YYYY-MM``
(tag ``kind=monitoring``, read back by :mod:`milkprice.registry.monitoring_runs`) logs the month's figures as metrics and the page as an artifact, so
that accuracy over time can be charted beside the training runs.
"""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import mlflow
import pandas as pd

from milkprice.data.lake import Lake
from milkprice.registry.monitoring_runs import KIND_TAG, MONITORED_MONTH_TAG, MONITORING_KIND
from milkprice.registry.tracking import configure_mlflow, mlflow_lock
from milkprice.settings import Settings

__all__ = ["log_monitoring_run", "render_report", "report_key", "write_report"]

_FIGURES = (
    "scored",
    "pending",
    "rmse",
    "mae",
    "rmse_ratio",
    "mae_ratio",
    "coverage_80",
    "coverage_95",
)
_STYLE = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
    "pre{white-space:pre-wrap;background:#f6f6f6;padding:1em}"
)


def report_key(month: str) -> str:
    """Where a month's report lives in the lake (the one place that says it)."""
    return f"monitor/reports/{month}/accuracy.html"


def render_report(month: str, summary: str, table: pd.DataFrame) -> bytes:
    """A self-contained HTML page: the summary (markdown text) and the accuracy table."""
    rows = table.to_html(index=False, float_format=lambda x: f"{x:.4f}", na_rep="-", border=0)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>milkprice monitoring {html.escape(month)}</title><style>{_STYLE}</style></head>"
        f"<body><pre>{html.escape(summary)}</pre>"
        "<h2>Accuracy of every stored forecast, per month forecast</h2>"
        f"{rows}</body></html>"
    )
    return page.encode()


def write_report(lake: Lake, month: str, page: bytes) -> str:
    """Write the page to the lake; return its URI."""
    return lake.put_object(report_key(month), page)


def log_monitoring_run(
    settings: Settings,
    month: str,
    row: dict[str, float] | None,
    alerts: int,
    page: bytes,
    *,
    pages: dict[str, bytes] | None = None,
) -> str:
    """An MLflow run ``monitor-YYYY-MM``: the month's figures, the alert count, the pages.

    ``pages`` are more HTML pages by file name (the month's Evidently drift reports).
    """
    experiment_id = configure_mlflow(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    figures = {k: float(row[k]) for k in _FIGURES if row and pd.notna(row.get(k))}
    with (
        mlflow_lock(settings.mlflow_tracking_uri),
        mlflow.start_run(experiment_id=experiment_id, run_name=f"monitor-{month}") as run,
        tempfile.TemporaryDirectory() as folder,
    ):
        mlflow.set_tags({KIND_TAG: MONITORING_KIND, MONITORED_MONTH_TAG: month})
        mlflow.log_metrics({**figures, "alerts": float(alerts)})
        for name, data in {"accuracy.html": page, **(pages or {})}.items():
            path = Path(folder) / name
            path.write_bytes(data)
            mlflow.log_artifact(str(path), artifact_path="monitoring")
        return run.info.run_id

"""Prefect tasks of the monitoring flow (its events are in :mod:`orchestration.events`)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from milkprice.data.lake import Lake
from milkprice.monitoring.accuracy import accuracy_over_time
from milkprice.monitoring.alerts import (
    Alert,
    AlertThresholds,
    ChampionFigures,
    champion_figures,
    evaluate_accuracy,
    monitoring_markdown,
    month_accuracy,
    send_alerts,
)
from milkprice.monitoring.drift import (
    drift_alerts,
    drift_markdown,
    drift_of_month,
    drift_report_key,
)
from milkprice.monitoring.report import log_monitoring_run, render_report, write_report
from milkprice.months import Month
from milkprice.serving.loader import latest_cutoff
from milkprice.settings import Settings, Source
from orchestration.events import emit_alerts

__all__ = [
    "MONITOR_SUMMARY_KEY",
    "MONITOR_TABLE_KEY",
    "accuracy_alerts",
    "accuracy_of_stored_forecasts",
    "alert_events",
    "alert_webhook",
    "champion_validation",
    "data_drift",
    "monitoring_artifacts",
    "monitoring_report",
    "newest_publication",
]

MONITOR_TABLE_KEY = "milk-price-accuracy"
MONITOR_SUMMARY_KEY = "milk-price-monitoring"


@task(name="accuracy-table", retries=2, retry_delay_seconds=2)
def accuracy_of_stored_forecasts(lake: Lake) -> pd.DataFrame:
    """Accuracy per month forecast of every stored forecast; empty when none is stored."""
    try:
        return accuracy_over_time(lake)
    except FileNotFoundError as exc:
        get_run_logger().warning("%s", exc)
        return pd.DataFrame()


@task(name="champion-validation")
def champion_validation(settings: Settings) -> ChampionFigures | None:
    """The champion's version and validation RMSE (``None`` with no champion)."""
    return champion_figures(settings)


@task(name="accuracy-alerts")
def accuracy_alerts(
    table: pd.DataFrame, settings: Settings, month: Month, champion: ChampionFigures | None
) -> list[Alert]:
    """The alerts the month's accuracy calls for, each logged."""
    alerts = evaluate_accuracy(
        table,
        AlertThresholds.from_settings(settings),
        month=str(month),
        champion_val_rmse=champion.val_rmse if champion else None,
    )
    logger = get_run_logger()
    for alert in alerts:
        logger.warning("ALERT %s: %s", alert.kind, alert.message)
    if not alerts:
        logger.info("%s: no alert", month)
    return alerts


@task(name="alert-events")
def alert_events(
    settings: Settings, alerts: list[Alert], source: Source, month: Month
) -> list[str]:
    """One ``milkprice.alert.<kind>`` event per kind of alert; the ids of those sent."""
    return emit_alerts(settings, alerts, source, month)


@task(name="alert-webhook")
def alert_webhook(settings: Settings, alerts: list[Alert]) -> bool | None:
    """Alerts POSTed to MILKPRICE_ALERT_WEBHOOK: delivered, not (logged), ``None`` if unset."""
    webhook = settings.alert_webhook
    if webhook is None or not webhook.get_secret_value():
        get_run_logger().info("no MILKPRICE_ALERT_WEBHOOK: %d alert(s) logged only", len(alerts))
        return None
    delivered = send_alerts(alerts, webhook)
    if not delivered:
        get_run_logger().error("the alert webhook did not receive %d alert(s)", len(alerts))
    return delivered


@task(name="monitoring-artifacts")
def monitoring_artifacts(
    table: pd.DataFrame,
    month: Month,
    alerts: list[Alert],
    champion: ChampionFigures | None,
    delivered: bool | None,
    *,
    drift: str = "",
) -> str:
    """Prefect artifacts: the accuracy table per month, and the month's summary (markdown)."""
    rows: list[dict[str, Any]] = table.to_dict("records") if not table.empty else []
    create_table_artifact(
        table=rows or [{"month": str(month), "note": "no stored forecast"}],
        key=MONITOR_TABLE_KEY,
        description="Accuracy of stored forecasts per month forecast, beside naive from the "
        "same cut-off (RMSE, MAE, ratios, 80/95% coverage, pending rows)",
    )
    markdown = monitoring_markdown(
        str(month),
        month_accuracy(table, str(month)),
        alerts,
        champion=champion,
        delivered=delivered if alerts else None,
    )
    markdown = f"{markdown}\n\n{drift}" if drift else markdown
    create_markdown_artifact(
        markdown=markdown, key=MONITOR_SUMMARY_KEY, description=f"Monitoring of {month}"
    )
    return markdown


@task(name="monitoring-report", retries=2, retry_delay_seconds=2)
def monitoring_report(  # noqa: PLR0917 - each product of the steps before
    settings: Settings,
    lake: Lake,
    table: pd.DataFrame,
    month: Month,
    summary: str,
    alerts: int,
    drift_pages: dict[str, bytes] | None = None,
) -> str:
    """The HTML report in the lake (monitor/reports/YYYY-MM/) and an MLflow run holding it."""
    page = render_report(str(month), summary, table)
    uri = write_report(lake, str(month), page)
    row = month_accuracy(table, str(month))
    pages = {key.rsplit("/", 1)[-1]: data for key, data in (drift_pages or {}).items()}
    run_id = log_monitoring_run(settings, str(month), row, alerts, page, pages=pages)
    get_run_logger().info("monitoring report %s, MLflow run %s", uri, run_id)
    return uri


@task(name="data-drift", retries=2, retry_delay_seconds=2)
def data_drift(
    lake: Lake, settings: Settings, month: Month
) -> tuple[list[Alert], str, dict[str, bytes]]:
    """Drift of the month against the 12 before it (Evidently, per Tipo/Canal).

    Returns its alerts, its part of the summary, and its pages (also written to the lake).
    """
    result = drift_of_month(lake, month)
    pages = {
        drift_report_key(month, g): page for g, page in (result.html if result else {}).items()
    }
    for key, page in pages.items():
        lake.put_object(key, page)
    alerts = (
        drift_alerts(result, settings.alert_max_drift_share, month=str(month)) if result else []
    )
    for alert in alerts:
        get_run_logger().warning("ALERT %s: %s", alert.kind, alert.message)
    return alerts, drift_markdown(result, settings.alert_max_drift_share), pages


@task(name="newest-publication", retries=2, retry_delay_seconds=2)
def newest_publication(lake: Lake) -> date | None:
    """The newest publication date in the lake; ``None`` when it has no partition at all."""
    try:
        return latest_cutoff(lake).date()
    except FileNotFoundError:
        return None

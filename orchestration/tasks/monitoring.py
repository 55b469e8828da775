"""Prefect tasks of the monitoring flow, the events milkprice emits, and the failure hook.

Events (resource ``milkprice.model.<registered model>`` unless said otherwise):

- ``milkprice.alert.accuracy`` / ``milkprice.alert.coverage``: one per kind of alert a
  monitoring run raised (so two accuracy rules firing start one retraining, not two); payload:
  the alerts' figures, ``source`` and the ``year``/``month`` a retraining should validate on.
- ``milkprice.alert.failure``: a milkprice flow run failed (resource ``milkprice.flow.<name>``).
- ``milkprice.data.ingested``: ``milkprice data ingest`` wrote months (resource
  ``milkprice.lake.<source>``); sent by :func:`emit_data_ingested`.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import Event, emit_event
from prefect.logging.loggers import flow_run_logger

from milkprice.data.lake import Lake
from milkprice.monitoring.accuracy import accuracy_over_time
from milkprice.monitoring.alerts import (
    Alert,
    AlertThresholds,
    ChampionFigures,
    champion_figures,
    evaluate_accuracy,
    failure_alert,
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
from milkprice.settings import Settings, Source, get_settings

__all__ = [
    "ACCURACY_ALERT_EVENT",
    "ALERT_EVENT_PREFIX",
    "DATA_INGESTED_EVENT",
    "FAILURE_ALERT_EVENT",
    "MONITOR_SUMMARY_KEY",
    "MONITOR_TABLE_KEY",
    "accuracy_alerts",
    "accuracy_of_stored_forecasts",
    "alert_events",
    "alert_on_failure",
    "alert_webhook",
    "champion_validation",
    "data_drift",
    "emit_data_ingested",
    "monitoring_artifacts",
    "monitoring_report",
]

ALERT_EVENT_PREFIX = "milkprice.alert."
ACCURACY_ALERT_EVENT = f"{ALERT_EVENT_PREFIX}accuracy"
FAILURE_ALERT_EVENT = f"{ALERT_EVENT_PREFIX}failure"
DATA_INGESTED_EVENT = "milkprice.data.ingested"
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
    by_kind: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_kind[alert.kind].append(alert)
    sent = []
    for kind, group in by_kind.items():
        event = emit_event(
            event=f"{ALERT_EVENT_PREFIX}{kind}",
            resource={"prefect.resource.id": f"milkprice.model.{settings.registered_model}"},
            payload={
                "source": source,
                "year": month.year,
                "month": month.month,
                "alerts": [a.to_dict() for a in group],
            },
        )
        if event is not None:
            sent.append(str(event.id))
    return sent


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


def alert_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """``on_failure`` hook of every milkprice flow: webhook (if set) and a failure event.

    Never raises: a hook that fails would hide the flow's own failure.
    """
    logger = flow_run_logger(flow_run, flow)  # needs no run context, unlike get_run_logger
    try:
        alert = failure_alert(flow.name, flow_run.name, state.message or state.name)
        logger.error("ALERT failure: %s", alert.message)
        emit_event(
            event=FAILURE_ALERT_EVENT,
            resource={"prefect.resource.id": f"milkprice.flow.{flow.name}"},
            payload={
                "flow_run_id": str(flow_run.id),
                "flow_run_name": flow_run.name,
                "parameters": flow_run.parameters,
                "message": alert.message,
            },
        )
        send_alerts([alert], get_settings().alert_webhook)
    except Exception as exc:
        logger.warning("the failure alert could not be sent (%s: %s)", type(exc).__name__, exc)


def emit_data_ingested(source: Source, report: dict[str, object]) -> str:
    """Send ``milkprice.data.ingested`` for an ingest's report; a line saying what happened.

    Synchronous (a CLI exits right after): the event is confirmed by the server, or this
    raises. Without PREFECT_API_URL nothing is sent (Prefect would start a throwaway server).
    """
    from prefect.events.clients import get_events_client  # noqa: PLC0415
    from prefect.settings import get_current_settings  # noqa: PLC0415

    if not get_current_settings().api.url:
        return f"PREFECT_API_URL is not set: event {DATA_INGESTED_EVENT} not sent"
    months = sorted(str(m) for m in report.get("months", []))  # type: ignore[union-attr]
    newest = Month.parse(months[-1]) if months else None
    event = Event(
        event=DATA_INGESTED_EVENT,
        resource={"prefect.resource.id": f"milkprice.lake.{source}"},
        payload={
            "source": source,
            "months": months,
            "year": newest.year if newest else 0,
            "month": newest.month if newest else 0,
            "rows_added": report.get("rows_added"),
            "rows_updated": report.get("rows_updated"),
        },
    )

    async def _send() -> None:
        async with get_events_client(reconnection_attempts=2) as client:
            await client.emit(event)

    asyncio.run(_send())
    return f"event {DATA_INGESTED_EVENT} sent (months {', '.join(months) or 'none'})"

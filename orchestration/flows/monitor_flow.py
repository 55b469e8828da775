"""The monitoring flow ``monitor(source, year, month)``, named ``milk-price-monitor``.

Served as the ``monthly-monitor`` deployment (see :mod:`orchestration.deployments`): on the 3rd of
every month, and at once when ``milkprice data ingest`` writes new prices (the
``milkprice.data.ingested`` event). From the command line: ``milkprice monitor``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from prefect import flow
from prefect.runtime import flow_run
from pydantic import Field

from milkprice.data.lake import Lake
from milkprice.months import local_today
from milkprice.pipeline.training_run import MAX_YEAR, resolve_validation_month
from milkprice.settings import get_settings
from orchestration.events import alert_on_failure
from orchestration.tasks.monitoring import (
    accuracy_alerts,
    accuracy_of_stored_forecasts,
    alert_events,
    alert_webhook,
    champion_validation,
    data_drift,
    monitoring_artifacts,
    monitoring_report,
)

__all__ = ["MONITOR_FLOW_NAME", "monitor"]

MONITOR_FLOW_NAME = "milk-price-monitor"


@flow(name=MONITOR_FLOW_NAME, log_prints=True, on_failure=[alert_on_failure])
def monitor(
    source: Literal["local", "s3"] = "local",
    year: Annotated[
        int, Field(ge=0, le=MAX_YEAR, description="Year of the month to monitor; 0 with month=0.")
    ] = 0,
    month: Annotated[
        int,
        Field(ge=0, le=12, description="Month to monitor (1-12); 0/0 = previous calendar month."),
    ] = 0,
) -> dict[str, Any]:
    """Score the stored forecasts of ``year/month``; alert (event, webhook) when they are off.

    Returns:
        ``month``, ``alerts`` (as dicts) and ``delivered`` (the webhook's answer, ``None``
        when no webhook is configured or nothing was raised).
    """
    settings = get_settings()
    # As the training flow: the previous month of the run's schedule (in MILKPRICE_TIMEZONE),
    # not of the clock.
    today = local_today(settings.zone, at=flow_run.scheduled_start_time)
    target = resolve_validation_month(year, month, today)
    lake = Lake.from_settings(settings, source)
    table = accuracy_of_stored_forecasts(lake)
    champion = champion_validation(settings)
    drift_alerts, drift_summary, drift_pages = data_drift(lake, settings, target)
    alerts = [*accuracy_alerts(table, settings, target, champion), *drift_alerts]
    delivered = None
    if alerts:
        alert_events(settings, alerts, source, target)
        delivered = alert_webhook(settings, alerts)
    summary = monitoring_artifacts(table, target, alerts, champion, delivered, drift=drift_summary)
    report = monitoring_report(settings, lake, table, target, summary, len(alerts), drift_pages)
    print(f"{target}: {len(alerts)} alert(s)" + "".join(f"\n  {a.message}" for a in alerts))
    return {
        "month": str(target),
        "alerts": [a.to_dict() for a in alerts],
        "delivered": delivered,
        "report": report,
    }

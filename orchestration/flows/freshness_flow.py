"""The stale-lake check ``lake_freshness(source)``, named ``milk-price-lake-freshness``.

Served as the ``lake-freshness`` deployment (see :mod:`orchestration.deployments`), once a day:
it alerts (event ``milkprice.alert.stale-data``, and MILKPRICE_ALERT_WEBHOOK) when the lake's
newest publication is older than MILKPRICE_STALE_LAKE_DAYS on the day of the run's schedule in
MILKPRICE_TIMEZONE. The rule is :func:`milkprice.monitoring.freshness.stale_lake_alert`; the
sending is the monitoring flow's (the same tasks).
"""

from __future__ import annotations

from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.runtime import flow_run

from milkprice.data.lake import Lake
from milkprice.monitoring.freshness import stale_lake_alert
from milkprice.months import Month, local_today
from milkprice.settings import get_settings
from orchestration.events import alert_on_failure
from orchestration.names import FRESHNESS_FLOW
from orchestration.tasks.monitoring import alert_events, alert_webhook, newest_publication

__all__ = ["FRESHNESS_FLOW", "lake_freshness"]


@flow(name=FRESHNESS_FLOW, log_prints=True, on_failure=[alert_on_failure])
def lake_freshness(source: Literal["local", "s3"] = "local") -> dict[str, Any]:
    """Alert when the lake has had no new publication for more than MILKPRICE_STALE_LAKE_DAYS.

    Returns:
        ``day`` (checked), ``newest`` (the lake's newest publication date, ``None`` if empty),
        ``alerts`` (as dicts, at most one) and ``delivered`` (the webhook's answer, ``None``
        when no webhook is configured or nothing was raised).
    """
    settings = get_settings()
    # The day of the run's schedule where the users live, as every flow resolves its "today".
    day = local_today(settings.zone, at=flow_run.scheduled_start_time)
    lake = Lake.from_settings(settings, source)
    newest = newest_publication(lake)
    alert = stale_lake_alert(newest, day, settings.stale_lake_days, lake.base_uri)
    alerts = [alert] if alert is not None else []
    delivered = None
    if alerts:
        get_run_logger().warning("ALERT %s: %s", alerts[0].kind, alerts[0].message)
        alert_events(settings, alerts, source, Month.of(day))
        delivered = alert_webhook(settings, alerts)
    else:
        print(f"{day}: the lake's newest publication is {newest} (fresh)")
    return {
        "day": day.isoformat(),
        "newest": newest.isoformat() if newest else None,
        "alerts": [a.to_dict() for a in alerts],
        "delivered": delivered,
    }

"""Every event milkprice emits: names, resources, payloads, the emitters and the failure hook.

Events (resource ``milkprice.model.<registered model>`` unless said otherwise):

- ``milkprice.champion.promoted``: a training run (or a Dask backfill) made a new champion, or
  served the baseline version; payload ``version``, ``validation_month``, ``source``. The
  ``daily-forecast`` deployment is triggered by it.
- ``milkprice.alert.accuracy`` / ``milkprice.alert.coverage``: one per kind of alert a
  monitoring run raised (so two accuracy rules firing start one retraining, not two); payload:
  the alerts' figures, ``source`` and the ``year``/``month`` a retraining should validate on.
- ``milkprice.alert.stale-data``: the lake's newest publication is older than
  MILKPRICE_STALE_LAKE_DAYS (the ``lake-freshness`` deployment); payload as the alerts above,
  ``year``/``month`` those of the day checked. Nothing is triggered by it: it is for people.
- ``milkprice.alert.failure``: a milkprice flow run failed (resource ``milkprice.flow.<name>``),
  sent by :func:`alert_on_failure`, the ``on_failure`` hook of every flow.
- ``milkprice.data.ingested``: ``milkprice data ingest``/``fetch`` or the ingest flow wrote
  months (resource ``milkprice.lake.<source>``); sent by :func:`emit_data_ingested` (the CLI)
  and :func:`emit_lake_changed` (inside a flow).
- ``milkprice.month.closed``: the first publication of a month reached the lake, so the month
  before it is complete (resource ``milkprice.lake.<source>``; payload ``source``, ``year``,
  ``month`` of the closed month), sent by :func:`emit_month_closed` from the ingest flow.
  ``train-milk-model`` is triggered by it.

The deployments' triggers (:mod:`orchestration.deployments`) match these names.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from prefect.events import Event, emit_event
from prefect.logging.loggers import flow_run_logger

from milkprice.monitoring.alerts import Alert, failure_alert, send_alerts
from milkprice.monitoring.freshness import STALE_DATA_KIND
from milkprice.months import Month
from milkprice.settings import Settings, Source, get_settings

__all__ = [
    "ACCURACY_ALERT_EVENT",
    "ALERT_EVENT_PREFIX",
    "CHAMPION_PROMOTED_EVENT",
    "DATA_INGESTED_EVENT",
    "FAILURE_ALERT_EVENT",
    "MONTH_CLOSED_EVENT",
    "STALE_DATA_EVENT",
    "alert_on_failure",
    "emit_alerts",
    "emit_champion_promoted",
    "emit_data_ingested",
    "emit_lake_changed",
    "emit_month_closed",
]

CHAMPION_PROMOTED_EVENT = "milkprice.champion.promoted"
ALERT_EVENT_PREFIX = "milkprice.alert."
ACCURACY_ALERT_EVENT = f"{ALERT_EVENT_PREFIX}accuracy"
FAILURE_ALERT_EVENT = f"{ALERT_EVENT_PREFIX}failure"
STALE_DATA_EVENT = f"{ALERT_EVENT_PREFIX}{STALE_DATA_KIND}"
DATA_INGESTED_EVENT = "milkprice.data.ingested"
MONTH_CLOSED_EVENT = "milkprice.month.closed"


def _model_resource(settings: Settings) -> dict[str, str]:
    return {"prefect.resource.id": f"milkprice.model.{settings.registered_model}"}


def emit_champion_promoted(
    settings: Settings, version: str | None, validation_month: Month, source: Source
) -> str | None:
    """``milkprice.champion.promoted`` for ``version``; the event id, if one was sent."""
    event = emit_event(
        event=CHAMPION_PROMOTED_EVENT,
        resource=_model_resource(settings),
        payload={"version": version, "validation_month": str(validation_month), "source": source},
    )
    return str(event.id) if event else None


def emit_alerts(
    settings: Settings, alerts: Sequence[Alert], source: Source, month: Month
) -> list[str]:
    """One ``milkprice.alert.<kind>`` event per kind of alert; the ids of those sent."""
    by_kind: dict[str, list[Alert]] = defaultdict(list)
    for alert in alerts:
        by_kind[alert.kind].append(alert)
    sent = []
    for kind, group in by_kind.items():
        event = emit_event(
            event=f"{ALERT_EVENT_PREFIX}{kind}",
            resource=_model_resource(settings),
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
    payload = _ingested_payload(source, report)
    event = Event(event=DATA_INGESTED_EVENT, resource=_lake_resource(source), payload=payload)

    async def _send() -> None:
        async with get_events_client(reconnection_attempts=2) as client:
            await client.emit(event)

    asyncio.run(_send())
    months = payload["months"]
    return f"event {DATA_INGESTED_EVENT} sent (months {', '.join(months) or 'none'})"


def _lake_resource(source: Source) -> dict[str, str]:
    return {"prefect.resource.id": f"milkprice.lake.{source}"}


def _ingested_payload(source: Source, report: dict[str, object]) -> dict[str, Any]:
    """``source``, ``months`` (sorted), the newest month's ``year``/``month``, rows added/updated."""
    months = sorted(str(m) for m in report.get("months", []))  # type: ignore[union-attr]
    newest = Month.parse(months[-1]) if months else None
    return {
        "source": source,
        "months": months,
        "year": newest.year if newest else 0,
        "month": newest.month if newest else 0,
        "rows_added": report.get("rows_added"),
        "rows_updated": report.get("rows_updated"),
    }


def emit_lake_changed(source: Source, report: dict[str, object]) -> str | None:
    """``milkprice.data.ingested`` from inside a flow (same payload as :func:`emit_data_ingested`).

    Returns the event id, if one was sent.
    """
    event = emit_event(
        event=DATA_INGESTED_EVENT,
        resource=_lake_resource(source),
        payload=_ingested_payload(source, report),
    )
    return str(event.id) if event else None


def emit_month_closed(source: Source, month: Month) -> str | None:
    """``milkprice.month.closed`` for ``month`` (the CLOSED month); the event id, if sent."""
    event = emit_event(
        event=MONTH_CLOSED_EVENT,
        resource=_lake_resource(source),
        payload={"source": source, "year": month.year, "month": month.month},
    )
    return str(event.id) if event else None

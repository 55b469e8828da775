"""The ingest flow ``ingest(source, day)``, named ``milk-price-ingest``.

Served as the ``ingest-sniim`` deployment (:mod:`orchestration.deployments`): Monday, Wednesday
and Friday afternoons in ``MILKPRICE_TIMEZONE``, three times, so a publication not online at the
first run is picked up by a later one (re-runs rewrite nothing). It fetches the day's
publication and catches up the days the lake lacks since its newest date (at most
``MILKPRICE_CATCH_UP_DAYS`` back), emits ``milkprice.data.ingested`` when the lake changed and
``milkprice.month.closed`` when a month's first publication arrived, and publishes a table of
what it fetched. A day not online ends the run ``Completed`` with the name ``NotPublished`` (no
alert); a day that failed (unreachable, 5xx after retries, not a publication) fails the run,
and the failure hook alerts.
"""

from __future__ import annotations

from datetime import date
from typing import Any, Literal

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, State

from milkprice.data.fetch import FetchOptions, day_in_zone, ingested_summary, reported
from milkprice.data.lake import Lake
from milkprice.settings import get_settings
from orchestration.events import alert_on_failure
from orchestration.names import INGEST_FLOW
from orchestration.tasks.ingesting import (
    fetch_artifact,
    fetched_publication,
    lake_events,
    planned_days,
)

__all__ = ["NOT_PUBLISHED_STATE", "PublicationFetchError", "ingest"]

NOT_PUBLISHED_STATE = "NotPublished"


class PublicationFetchError(RuntimeError):
    """A day's publication could not be fetched or ingested (the run fails, and alerts)."""


@flow(name=INGEST_FLOW, log_prints=True, on_failure=[alert_on_failure])
def ingest(source: Literal["local", "s3"] = "local", day: date | None = None) -> Any:
    """Fetch ``day``'s SNIIM publication and catch up the days missing before it.

    ``day`` defaults to the day of the run's scheduled time in ``MILKPRICE_TIMEZONE``.

    Returns:
        A summary dict (``day``, ``results``, ``events``); a ``NotPublished`` Completed state
        carrying it when ``day`` has no publication online.

    Raises:
        PublicationFetchError: a day failed; the lake keeps what the other days brought.
    """
    settings = get_settings()
    if day is None:
        # The day the run was scheduled for, in the publisher's zone: a run that starts late
        # (or is retried after midnight UTC) still fetches its own day.
        scheduled = flow_run.scheduled_start_time
        day = day_in_zone(scheduled, settings.zone)
    lake = Lake.from_settings(settings, source)
    options = FetchOptions.from_settings(settings)
    days = planned_days(lake, day, settings.catch_up_days)
    results = [fetched_publication(each, lake, options) for each in days]
    shown = [r for r in results if r.day == day or reported(r)]
    events = lake_events(source, results, lake)
    fetch_artifact(day, shown)
    summary = {
        "day": day.isoformat(),
        "results": [r.to_dict() for r in shown],
        "ingested": ingested_summary(results),
        "events": events,
    }
    for result in shown:
        print(result.line)
    if failed := [r for r in shown if r.status == "failed"]:
        raise PublicationFetchError("; ".join(r.line for r in failed))
    mine = results[-1]
    if mine.status == "not_published":
        return _not_published(mine.line, summary)
    return summary


def _not_published(line: str, summary: dict[str, Any]) -> State:
    """A Completed state named NotPublished: not a failure, nothing to alert on."""
    return Completed(name=NOT_PUBLISHED_STATE, message=line, data=summary)

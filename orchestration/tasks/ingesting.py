"""Prefect tasks of the ingest flow: each a thin call into :mod:`milkprice.data.fetch`."""

from __future__ import annotations

from datetime import date

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from milkprice.data.fetch import (
    FetchOptions,
    FetchResult,
    days_to_fetch,
    fetch_day,
    fetch_markdown,
    ingested_summary,
)
from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.settings import Source
from orchestration.events import emit_lake_changed, emit_month_closed

__all__ = [
    "INGEST_ARTIFACT_KEY",
    "fetch_artifact",
    "fetched_publication",
    "lake_events",
    "planned_days",
]

INGEST_ARTIFACT_KEY = "milk-price-ingest"


@task(name="planned-days", cache_policy=NO_CACHE)
def planned_days(lake: Lake, day: date, window_days: int) -> list[date]:
    """``day`` and the days before it the lake lacks (see :func:`days_to_fetch`)."""
    return days_to_fetch(lake, day, window_days)


# Never cached: a day not online at 14:00 may be at 16:00. Retries are the download's own.
@task(name="fetched-publication", task_run_name="fetched-{day}", cache_policy=NO_CACHE)
def fetched_publication(day: date, lake: Lake, options: FetchOptions) -> FetchResult:
    """Download and ingest ``day``'s publication; the result says how it went."""
    result = fetch_day(day, lake, options)
    logger = get_run_logger()
    (logger.error if result.status == "failed" else logger.info)("%s", result.line)
    return result


@task(name="lake-events", cache_policy=NO_CACHE)
def lake_events(source: Source, results: list[FetchResult], lake: Lake) -> list[str]:
    """Send the events of what the lake received; what was sent, one line each.

    ``milkprice.data.ingested`` if the lake changed, and ``milkprice.month.closed`` for the
    month before each month whose first publication arrived.
    """
    summary = ingested_summary(results)
    if summary is None:
        return []
    sent = []
    if emit_lake_changed(source, summary):
        sent.append(f"data.ingested {', '.join(summary['months'])}")  # type: ignore[arg-type]
    held = set(lake.list_months())
    for created in summary["months_created"]:  # type: ignore[union-attr]
        closed = Month.parse(created).shift(-1)
        # A first ingest into an empty lake creates its month too, but closes nothing.
        if closed not in held:
            get_run_logger().info("%s is not in the lake: no month closed", closed)
            continue
        if emit_month_closed(source, closed):
            sent.append(f"month.closed {closed}")
    return sent


@task(name="fetch-artifact", cache_policy=NO_CACHE)
def fetch_artifact(day: date, results: list[FetchResult]) -> None:
    """The table of what was fetched, as a markdown artifact of the run."""
    create_markdown_artifact(
        key=INGEST_ARTIFACT_KEY,
        markdown=fetch_markdown(day, results),
        description=f"SNIIM publications fetched for {day.isoformat()}",
    )

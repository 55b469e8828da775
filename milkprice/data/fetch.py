"""Fetch SNIIM publications by day: the URL of a day, one day's fetch, a catch-up over a range.

A day's publication is downloaded from ``MILKPRICE_SNIIM_URL_TEMPLATE`` (a format string over
``day``) and ingested by :func:`milkprice.data.ingest.ingest_publication`, validated and
all-or-nothing: a corrupt file or one that is not a publication leaves the lake as it was.
Each day ends in one :class:`FetchResult` whose status says what happened:

- ``ingested``: the lake changed (new dates, or revised prices);
- ``unchanged``: the publication was read and the lake already held exactly it;
- ``not_published``: HTTP 404, a holiday or not online yet (never retried);
- ``failed``: unreachable, 5xx or timeouts after the retries, or not a valid publication.

SNIIM publishes on Monday, Wednesday and Friday; a catch-up tries every day of its range the
lake does not hold, but a 404 is news only on those days ("no publication for DAY"): on any
other day it just means there was no extra file, and the catch-up leaves it out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Literal

from milkprice.data.ingest import IngestReport, ingest_publication
from milkprice.data.lake import Lake, LakeError
from milkprice.data.schema import LakeDataError
from milkprice.data.sniim import SniimFormatError
from milkprice.data.sniim_download import (
    DOWNLOAD_ATTEMPTS,
    DOWNLOAD_BACKOFF_SECONDS,
    PublicationNotFoundError,
    SniimDownloadError,
    download_publication,
    leche_publication_url,
)
from milkprice.months import Month, month_range
from milkprice.settings import Settings

__all__ = [
    "PUBLICATION_WEEKDAYS",
    "FetchOptions",
    "FetchResult",
    "FetchStatus",
    "catch_up",
    "day_in_zone",
    "days_to_fetch",
    "fetch_day",
    "fetch_markdown",
    "ingested_summary",
    "is_publication_weekday",
    "lake_dates",
    "missing_days",
    "newest_lake_date",
    "reported",
]

FetchStatus = Literal["ingested", "unchanged", "not_published", "failed"]
PUBLICATION_WEEKDAYS = (0, 2, 4)  # Monday, Wednesday, Friday

# What a day's fetch can meet that is the publication's or the network's fault, not a bug.
_DAY_ERRORS = (SniimDownloadError, SniimFormatError, LakeDataError, LakeError)


@dataclass(frozen=True)
class FetchOptions:
    """Where and how to download: the URL template, the timeout and the retries."""

    url_template: str
    timeout_s: float = 30.0
    attempts: int = DOWNLOAD_ATTEMPTS
    backoff_s: float = DOWNLOAD_BACKOFF_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: float) -> FetchOptions:
        """The template and timeout of ``settings``; ``attempts``/``backoff_s`` as overridden."""
        return cls(
            url_template=settings.sniim_url_template,
            timeout_s=settings.sniim_timeout_seconds,
            **overrides,  # type: ignore[arg-type]
        )

    def url(self, day: date) -> str:
        """The URL of ``day``'s publication."""
        return leche_publication_url(day, self.url_template)


@dataclass(frozen=True)
class FetchResult:
    """What fetching one day did; ``line`` is the one line a user reads."""

    day: date
    url: str
    status: FetchStatus
    message: str
    report: IngestReport | None = None

    @property
    def expected(self) -> bool:
        """Whether ``day`` is a publication weekday (Monday, Wednesday, Friday)."""
        return is_publication_weekday(self.day)

    @property
    def changed(self) -> bool:
        """Whether the lake changed."""
        return self.status == "ingested"

    @property
    def line(self) -> str:
        """``DAY status: message (URL)`` (the URL once, even when the message names it)."""
        where = "" if self.url in self.message else f" ({self.url})"
        return f"{self.day.isoformat()} {self.status}: {self.message}{where}"

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-serialisable dict (the ingest report included when there is one)."""
        return {
            "day": self.day.isoformat(),
            "url": self.url,
            "status": self.status,
            "message": self.message,
            "report": None if self.report is None else self.report.to_dict(),
        }


def is_publication_weekday(day: date) -> bool:
    """Monday, Wednesday or Friday: the days SNIIM publishes."""
    return day.weekday() in PUBLICATION_WEEKDAYS


def _describe(report: IngestReport) -> str:
    dates = ", ".join(d.isoformat() for d in report.dates) or "no dates"
    if not report.changed_partitions:
        return f"already in the lake ({report.rows_parsed} rows of {dates}), nothing rewritten"
    months = ", ".join(str(m) for m in report.changed_partitions)
    return (
        f"{report.rows_added} rows added, {report.rows_updated} updated "
        f"(publication of {dates}; months {months})"
    )


def fetch_day(day: date, lake: Lake, options: FetchOptions) -> FetchResult:
    """Download ``day``'s publication and ingest it into ``lake``.

    Never raises for what the publication or the network did (see the module's statuses):
    a failed day leaves the lake as it was.
    """
    url = options.url(day)
    download = functools.partial(
        download_publication,
        timeout_s=options.timeout_s,
        attempts=options.attempts,
        backoff_s=options.backoff_s,
    )
    try:
        report = ingest_publication(url, lake, download=download)
    except PublicationNotFoundError:
        return FetchResult(day, url, "not_published", f"no publication for {day.isoformat()}")
    except _DAY_ERRORS as exc:
        return FetchResult(day, url, "failed", str(exc) or type(exc).__name__)
    status: FetchStatus = "ingested" if report.changed_partitions else "unchanged"
    return FetchResult(day, url, status, _describe(report), report)


def lake_dates(lake: Lake, since: date, until: date) -> set[date]:
    """Publication dates the lake holds from ``since`` to ``until`` (both included)."""
    held = set(lake.list_months())
    found: set[date] = set()
    for month in month_range(Month.of(since), Month.of(until)):
        if month not in held:
            continue
        frame, _ = lake.read_month(month)
        found.update(day.date() for day in frame["Fecha"].drop_duplicates())
    return {day for day in found if since <= day <= until}


def newest_lake_date(lake: Lake) -> date | None:
    """The newest publication date in the lake (``None`` for an empty lake)."""
    months = lake.list_months()
    if not months:
        return None
    frame, _ = lake.read_month(months[-1])
    return frame["Fecha"].max().date() if len(frame) else None


def missing_days(lake: Lake, since: date, until: date) -> list[date]:
    """Every day from ``since`` to ``until`` (oldest first) whose date the lake does not hold."""
    if until < since:
        return []
    held = lake_dates(lake, since, until)
    days = (since + timedelta(days=offset) for offset in range((until - since).days + 1))
    return [day for day in days if day not in held]


def reported(result: FetchResult) -> bool:
    """Whether a catch-up reports ``result``: all but a 404 on a day SNIIM never publishes."""
    return result.status != "not_published" or result.expected


def catch_up(lake: Lake, since: date, until: date, options: FetchOptions) -> list[FetchResult]:
    """Fetch every day of ``since..until`` the lake does not hold yet, oldest first.

    Returns:
        One result per Monday, Wednesday and Friday tried, and per other day that had a file
        (or failed otherwise than with a 404); days the lake already holds are not fetched.
    """
    results = (fetch_day(day, lake, options) for day in missing_days(lake, since, until))
    return [result for result in results if reported(result)]


def ingested_summary(results: list[FetchResult]) -> dict[str, object] | None:
    """What the days that changed the lake wrote together, in the shape of an ingest report.

    ``months`` and ``months_created`` are sorted ``YYYY-MM`` strings, ``rows_added`` and
    ``rows_updated`` summed, ``dates`` the publication dates; ``None`` when nothing changed.
    """
    changed = [r.report for r in results if r.changed and r.report is not None]
    if not changed:
        return None
    return {
        "months": sorted({str(m) for report in changed for m in report.months}),
        "months_created": sorted({str(m) for report in changed for m in report.months_created}),
        "dates": sorted({d.isoformat() for report in changed for d in report.dates}),
        "rows_added": sum(report.rows_added for report in changed),
        "rows_updated": sum(report.rows_updated for report in changed),
    }


def day_in_zone(when: datetime, zone: tzinfo) -> date:
    """The calendar day of ``when`` in ``zone`` (a naive ``when`` is taken as UTC)."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(zone).date()


def days_to_fetch(lake: Lake, day: date, window_days: int) -> list[date]:
    """``day`` and the days before it the lake lacks since its newest date, oldest first.

    The catch-up starts the day after the lake's newest date, but never more than
    ``window_days`` before ``day`` (a lake left alone for months is not refetched day by day);
    ``day`` itself is always fetched (again: an unchanged publication rewrites nothing).
    """
    newest = newest_lake_date(lake)
    since = day - timedelta(days=window_days)
    if newest is not None:
        since = max(since, newest + timedelta(days=1))
    return [*missing_days(lake, since, day - timedelta(days=1)), day]


def fetch_markdown(day: date, results: list[FetchResult]) -> str:
    """A markdown table of what a run fetched (the ingest flow's artifact)."""
    lines = [
        f"# Publications fetched for {day.isoformat()}",
        "",
        "| day | status | rows added | rows updated | message | URL |",
        "| --- | --- | ---: | ---: | --- | --- |",
    ]
    for result in results:
        report = result.report
        added = "" if report is None else str(report.rows_added)
        updated = "" if report is None else str(report.rows_updated)
        message = result.message.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {result.day.isoformat()} | {result.status} | {added} | {updated} | {message} "
            f"| {result.url} |"
        )
    return "\n".join(lines) + "\n"

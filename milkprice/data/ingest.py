"""Ingest a SNIIM "Leche" publication into the lake: parse, validate everything, then upsert.

Nothing is written until every row of the publication and every merged month has passed the
lake's validation, so bad input leaves the lake as it was. Each month is then merged and written
by one :meth:`Lake.update_month`, which no other writer of that month can interleave (a lock per
month on local disk, held for the whole ingest and taken in month order; conditional writes on
S3), so two ingests of one month at once both land. If a write fails part-way (storage down),
the months already written get the publication's rows taken out again (and what they held for
those keys put back), the same way, so a concurrent ingest's rows survive the rollback too.
Upsert key: (Fecha, Estado, Ciudad, Tipo, Canal): a row of the publication replaces the lake's
row with the same key, other rows are kept, so ingesting the same publication twice changes
nothing and a newer one adds its dates.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from milkprice.data.lake import Lake, MonthMerge, PartitionWrite
from milkprice.data.schema import COLUMNS, KEY_COLUMNS, LakeDataError, validate_frame
from milkprice.data.sniim import SniimFormatError, parse_leche_publication
from milkprice.data.sniim_download import download_publication
from milkprice.months import Month

__all__ = [
    "IngestReport",
    "MonthPlan",
    "ingest_publication",
    "is_url",
    "merge_month",
    "plan_upsert",
]


@dataclass(frozen=True)
class MonthPlan:
    """One month's merged rows, ready to write, and how they differ from the lake.

    ``previous`` is what the month held (``None``: it had no partition); ``incoming`` the
    publication's rows of the month.
    """

    month: Month
    frame: pd.DataFrame
    previous: pd.DataFrame | None
    added: int
    updated: int
    unchanged: int
    incoming: pd.DataFrame


@dataclass(frozen=True)
class IngestReport:
    """What an ingestion read and wrote; ``to_dict`` gives plain values for logs and artifacts."""

    source: str
    local_path: str
    rows_parsed: int
    dates: list[date]
    months: list[Month]
    partitions: list[PartitionWrite]
    rows_added: int
    rows_updated: int
    rows_unchanged: int
    dropped_average_rows: int
    missing_prices: int
    non_positive_prices: int
    # Months whose partition did not exist before this ingest (their first publication).
    months_created: list[Month] = field(default_factory=list)

    @property
    def changed_partitions(self) -> list[Month]:
        """Months whose partition bytes changed."""
        return [write.month for write in self.partitions if write.changed]

    def to_dict(self) -> dict[str, object]:
        """Plain, JSON-serialisable dict."""
        return {
            "source": self.source,
            "local_path": self.local_path,
            "rows_parsed": self.rows_parsed,
            "dates": [day.isoformat() for day in self.dates],
            "months": [str(month) for month in self.months],
            "partitions": [
                {
                    "month": str(write.month),
                    "path": write.path,
                    "rows": write.rows,
                    "fingerprint": write.fingerprint,
                    "changed": write.changed,
                }
                for write in self.partitions
            ],
            "changed_partitions": [str(month) for month in self.changed_partitions],
            "rows_added": self.rows_added,
            "rows_updated": self.rows_updated,
            "rows_unchanged": self.rows_unchanged,
            "dropped_average_rows": self.dropped_average_rows,
            "missing_prices": self.missing_prices,
            "non_positive_prices": self.non_positive_prices,
            "months_created": [str(month) for month in self.months_created],
        }


def is_url(path_or_url: str) -> bool:
    """Whether the argument names something to download rather than a local file."""
    return "://" in path_or_url and bool(urllib.parse.urlsplit(path_or_url).scheme)


def merge_month(
    month: Month, previous: pd.DataFrame | None, new: pd.DataFrame, *, origin: str
) -> MonthPlan:
    """Upsert a publication's rows of ``month`` into what the month holds; validate the result.

    Args:
        month: the month (``origin`` and ``month`` name it in errors).
        previous: the month's clean rows, or ``None`` if it has no partition.
        new: the publication's clean rows of that month.
        origin: what the merged rows are, for error messages.

    Raises:
        LakeDataError: the merged month fails validation.
    """
    new = new.reset_index(drop=True)
    if previous is None:
        merged, added, updated, unchanged = new, len(new), 0, 0
    else:
        joined = previous.merge(new, on=KEY_COLUMNS, how="outer", indicator=True)
        both = joined[joined["_merge"] == "both"]
        same = (both["Precio_x"] == both["Precio_y"]) | (
            both["Precio_x"].isna() & both["Precio_y"].isna()
        )
        added = int((joined["_merge"] == "right_only").sum())
        updated, unchanged = int((~same).sum()), int(same.sum())
        merged = pd.concat([_without_keys(previous, new), new], ignore_index=True)
    clean, _ = validate_frame(merged, origin=origin, month=month)
    return MonthPlan(month, clean, previous, added, updated, unchanged, new)


def _without_keys(frame: pd.DataFrame, keys: pd.DataFrame) -> pd.DataFrame:
    """Rows of ``frame`` whose key is not among ``keys``' rows."""
    joined = frame.merge(keys[KEY_COLUMNS], on=KEY_COLUMNS, how="left", indicator=True)
    return joined.loc[joined["_merge"] == "left_only", COLUMNS]


def _months(rows: pd.DataFrame) -> dict[Month, pd.DataFrame]:
    """The publication's rows by month, oldest first."""
    periods = rows["Fecha"].dt.to_period("M")
    return {
        Month(period.year, period.month): group.reset_index(drop=True)
        for period, group in rows.groupby(periods, sort=True)
    }


def plan_upsert(lake: Lake, rows: pd.DataFrame, *, origin: str) -> list[MonthPlan]:
    """Merge clean publication rows into each month they touch, validating every result.

    Args:
        lake: where the existing partitions are read from (nothing is written).
        rows: clean rows (see :func:`milkprice.data.schema.validate_frame`).
        origin: the publication, for error messages.

    Returns:
        One plan per month, oldest first.

    Raises:
        LakeDataError: an existing partition or a merged month fails validation.

    """
    plans = []
    for month, new in _months(rows).items():
        try:
            previous = lake.read_month(month)[0] if lake.exists(month) else None
        except LakeDataError as exc:
            raise LakeDataError(f"{exc} (while merging {origin} into it)") from exc
        merged_origin = f"{lake.uri(month)} merged with {origin}"
        plans.append(merge_month(month, previous, new, origin=merged_origin))
    return plans


def _merging(lake: Lake, plan: MonthPlan, origin: str, done: list[MonthPlan]) -> MonthMerge:
    """The merge of :meth:`Lake.update_month` for a plan; ``done`` gets the plan it wrote."""

    def merge(previous: pd.DataFrame | None) -> pd.DataFrame:
        # On S3 a lost race calls this again with what the other writer left: merge afresh.
        done.append(
            merge_month(
                plan.month,
                previous,
                plan.incoming,
                origin=f"{lake.uri(plan.month)} merged with {origin}",
            )
        )
        return done[-1].frame

    return merge


def _undoing(plan: MonthPlan) -> MonthMerge:
    """The merge that takes a written plan's rows out again, whatever others wrote since.

    The publication's keys get back what ``plan.previous`` held for them (or go); every other
    row is kept, so a concurrent ingest's rows survive the rollback.
    """

    def undo(current: pd.DataFrame | None) -> pd.DataFrame | None:
        kept = [] if current is None else [_without_keys(current, plan.incoming)]
        if plan.previous is not None:
            restored = plan.previous.merge(plan.incoming[KEY_COLUMNS], on=KEY_COLUMNS)
            kept.append(restored.loc[:, COLUMNS])
        rows = pd.concat(kept, ignore_index=True) if kept else None
        return None if rows is None or rows.empty else rows

    return undo


def _write_all(
    lake: Lake, plans: list[MonthPlan], origin: str
) -> tuple[list[MonthPlan], list[PartitionWrite]]:
    """Update every month; on a failure, undo the months already written, then re-raise.

    Returns:
        The plans as written (on S3 a month may have changed since it was planned) and the
        writes.
    """
    written: list[MonthPlan] = []
    final: list[MonthPlan] = []
    writes = []
    try:
        for plan in plans:
            done: list[MonthPlan] = []
            write = lake.update_month(plan.month, _merging(lake, plan, origin, done))
            if (
                write is None
            ):  # pragma: no cover - a merge with the publication's rows is never empty
                raise AssertionError(f"{plan.month}: the merge removed the partition")
            final.append(done[-1])
            writes.append(write)
            if write.changed:
                written.append(done[-1])
    except Exception:
        for done_plan in reversed(written):
            lake.update_month(done_plan.month, _undoing(done_plan))
        raise
    return final, writes


def _ingest_file(source: str, path: Path, lake: Lake) -> IngestReport:
    publication = parse_leche_publication(path)
    rows, summary = validate_frame(publication.frame, origin=source)
    # Locally the months stay locked from the first read to the last write (and the rollback);
    # on S3 each month's update is a conditional write (see Lake.update_month).
    with lake.locked(_months(rows)):
        plans = plan_upsert(lake, rows, origin=source)  # validates everything before a write
        plans, writes = _write_all(lake, plans, source)
    return IngestReport(
        source=source,
        local_path=str(path),
        rows_parsed=len(rows),
        dates=publication.dates,
        months=[plan.month for plan in plans],
        partitions=writes,
        rows_added=sum(plan.added for plan in plans),
        rows_updated=sum(plan.updated for plan in plans),
        rows_unchanged=sum(plan.unchanged for plan in plans),
        dropped_average_rows=publication.dropped_average_rows + summary.dropped_average_rows,
        missing_prices=summary.missing_prices,
        non_positive_prices=summary.non_positive_prices,
        months_created=[plan.month for plan in plans if plan.previous is None],
    )


def ingest_publication(
    path_or_url: str,
    lake: Lake,
    *,
    work_dir: Path | None = None,
    download: Callable[[str, Path], Path] = download_publication,
) -> IngestReport:
    """Parse a SNIIM "Leche" publication (a local file or an http(s) URL) into the lake.

    Args:
        path_or_url: the ``.xlsx`` file, or its URL (downloaded first).
        lake: the lake to upsert into (local or S3: same code).
        work_dir: where a download is kept; default a temporary folder removed afterwards.
        download: fetches a URL into a folder (timeouts, retries: see ``download_publication``).

    Returns:
        What was read and written; a second ingestion of the same file reports no changed
        partition.

    Raises:
        FileNotFoundError: the local file does not exist.
        SniimDownloadError: the URL cannot be downloaded.
        SniimFormatError: the file is not a SNIIM milk publication, or a part of it is wrong.
        LakeDataError: rows (or an existing partition merged with them) fail validation.
        LakeError: the lake cannot be read or written.

    """
    if not is_url(path_or_url):
        return _ingest_file(path_or_url, Path(path_or_url), lake)
    with tempfile.TemporaryDirectory(prefix="milkprice-sniim-") as folder:
        downloaded = download(path_or_url, work_dir or Path(folder))
        try:
            return _ingest_file(path_or_url, downloaded, lake)
        except SniimFormatError as exc:
            raise SniimFormatError(f"{exc} (downloaded from {path_or_url})") from exc

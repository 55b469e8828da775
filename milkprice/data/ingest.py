"""Ingest a SNIIM "Leche" publication into the lake: parse, validate everything, then upsert.

Nothing is written until every row of the publication and every merged month has passed the
lake's validation, so bad input leaves the lake as it was. Each month is then written
atomically by :meth:`Lake.write_month`; if a write fails part-way (storage down), the months
already written are put back as they were. Upsert key: (Fecha, Estado, Ciudad, Tipo, Canal):
a row of the publication replaces the lake's row with the same key, other rows are kept, so
ingesting the same publication twice changes nothing and a newer one adds its dates.
"""

from __future__ import annotations

import tempfile
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pandas as pd

from milkprice.data.lake import Lake, PartitionWrite
from milkprice.data.schema import COLUMNS, KEY_COLUMNS, LakeDataError, validate_frame
from milkprice.data.sniim import SniimFormatError, parse_leche_publication
from milkprice.data.sniim_download import download_publication
from milkprice.months import Month

__all__ = ["IngestReport", "MonthPlan", "ingest_publication", "is_url", "plan_upsert"]


@dataclass(frozen=True)
class MonthPlan:
    """One month's merged rows, ready to write, and how they differ from the lake."""

    month: Month
    frame: pd.DataFrame
    previous: pd.DataFrame | None
    added: int
    updated: int
    unchanged: int


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
    periods = rows["Fecha"].dt.to_period("M")
    for period, group in rows.groupby(periods, sort=True):
        month = Month(period.year, period.month)
        new = group.reset_index(drop=True)
        try:
            previous = lake.read_month(month)[0] if lake.exists(month) else None
        except LakeDataError as exc:
            raise LakeDataError(f"{exc} (while merging {origin} into it)") from exc
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
            kept = previous.merge(new[KEY_COLUMNS], on=KEY_COLUMNS, how="left", indicator=True)
            kept = kept.loc[kept["_merge"] == "left_only", COLUMNS]
            merged = pd.concat([kept, new], ignore_index=True)
        clean, _ = validate_frame(
            merged, origin=f"{lake.uri(month)} merged with {origin}", month=month
        )
        plans.append(MonthPlan(month, clean, previous, added, updated, unchanged))
    return plans


def _write_all(lake: Lake, plans: list[MonthPlan]) -> list[PartitionWrite]:
    """Write every plan; on a failure, put back the months already written, then re-raise."""
    written: list[MonthPlan] = []
    writes = []
    try:
        for plan in plans:
            write = lake.write_month(plan.month, plan.frame)
            writes.append(write)
            if write.changed:
                written.append(plan)
    except Exception:
        for plan in reversed(written):
            if plan.previous is None:
                lake.fs.rm_file(lake.path(plan.month))
            else:
                lake.write_month(plan.month, plan.previous)
        raise
    return writes


def _ingest_file(source: str, path: Path, lake: Lake) -> IngestReport:
    publication = parse_leche_publication(path)
    rows, summary = validate_frame(publication.frame, origin=source)
    plans = plan_upsert(lake, rows, origin=source)
    writes = _write_all(lake, plans)
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

"""Copy a lake's partitions to another lake (local to S3) and describe what a lake holds.

Only partitions whose bytes differ are uploaded: partitions are written deterministically
(:func:`milkprice.data.lake.serialize_partition`), so equal rows give equal bytes and a second push
of an unchanged lake uploads nothing. Uploads go through :meth:`Lake.write_month`, so what
reaches the target is validated and written atomically.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Literal

import pandas as pd

from milkprice.data.lake import Lake
from milkprice.data.quality import assess_readings
from milkprice.months import Month

__all__ = ["MonthInfo", "PushResult", "PushStatus", "describe_lake", "push_lake"]

PushStatus = Literal["pushed", "skipped"]


@dataclass(frozen=True)
class PushResult:
    """What happened to one month: uploaded (``pushed``) or already identical (``skipped``)."""

    month: Month
    status: PushStatus
    source: str
    target: str
    rows: int | None
    size_bytes: int
    md5: str

    def to_dict(self) -> dict[str, object]:
        """Plain dict with the month as text, for logs and tables."""
        return {**asdict(self), "month": str(self.month)}


@dataclass(frozen=True)
class MonthInfo:
    """What one partition holds, for ``milkprice data ls``."""

    month: Month
    rows: int
    missing_prices: int
    series: int
    dates: int
    path: str
    suspect: int = 0
    """Readings that jumped from their series' level (quality verdict ``suspect``)."""
    glitches: int = 0
    """Suspect readings a later publication settled as glitches (set aside as anchors)."""
    pending: int = 0
    """Suspect readings no later publication has settled yet (discounted by ``p_glitch``)."""

    def to_dict(self) -> dict[str, object]:
        """Plain dict with the month as text."""
        return {**asdict(self), "month": str(self.month)}


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def push_lake(
    source: Lake,
    target: Lake,
    months: Sequence[Month] | None = None,
    *,
    on_result: Callable[[PushResult], None] | None = None,
) -> list[PushResult]:
    """Upload the partitions of ``source`` that ``target`` lacks or holds with other bytes.

    Args:
        source: the lake to copy from (usually the local one).
        target: the lake to copy to (usually S3).
        months: which months to consider (default: every partition of ``source``).
        on_result: called after each month is handled (progress bars).

    Returns:
        One result per month, oldest first; skipped months were left untouched.

    Raises:
        LakeError: either lake cannot be reached (the message names the bucket).
        FileNotFoundError: a month in ``months`` has no partition in ``source``.
        LakeDataError: a source partition fails validation (nothing is written for it).

    """
    target.check_reachable()
    chosen = sorted(months) if months is not None else source.list_months()
    results = []
    for month in chosen:
        data = source.read_bytes(month)
        if data is None:
            raise FileNotFoundError(f"no partition for {month} in the lake: {source.uri(month)}")
        if target.read_bytes(month) == data:
            result = PushResult(
                month=month,
                status="skipped",
                source=source.uri(month),
                target=target.uri(month),
                rows=None,
                size_bytes=len(data),
                md5=_md5(data),
            )
        else:
            frame, _ = source.read_month(month)
            written = target.write_month(month, frame)
            # A source written by another serializer can differ in bytes but not in rows:
            # write_month then leaves the target alone, which is a skip, not an upload.
            stored = target.read_bytes(month) or b""
            result = PushResult(
                month=month,
                status="pushed" if written.changed else "skipped",
                source=source.uri(month),
                target=written.path,
                rows=written.rows,
                size_bytes=len(stored),
                md5=_md5(stored),
            )
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def describe_lake(
    lake: Lake, *, on_month: Callable[[MonthInfo], None] | None = None
) -> list[MonthInfo]:
    """Read and validate every partition of ``lake`` and summarise each one, oldest first.

    Raises:
        LakeError: the lake cannot be reached.
        LakeDataError: a partition is unreadable or fails validation (the message names it).

    """
    infos, frames = [], []
    for month in lake.list_months():
        frame, summary = lake.read_month(month)
        frames.append(frame)
        info = MonthInfo(
            month=month,
            rows=summary.rows,
            missing_prices=summary.missing_prices,
            series=summary.series,
            dates=summary.dates,
            path=lake.uri(month),
        )
        infos.append(info)
        if on_month is not None:
            on_month(info)
    if not frames:
        return infos
    # Verdicts run over the whole lake in time order: a level carries across months.
    verdicts = assess_readings(pd.concat(frames, ignore_index=True))
    suspect = verdicts.loc[verdicts["verdict"] == "suspect"]
    month_of = suspect["Fecha"].dt.strftime("%Y-%m")
    counts = {
        "suspect": month_of.value_counts(),
        "glitches": month_of[suspect["settled"] == "glitch"].value_counts(),
        "pending": month_of[suspect["settled"] == ""].value_counts(),
    }
    return [
        replace(info, **{k: int(v.get(str(info.month), 0)) for k, v in counts.items()})
        for info in infos
    ]

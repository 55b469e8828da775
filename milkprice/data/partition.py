"""A partition of the lake: where a month lives, its bytes, its fingerprint, what a write did.

Pure pieces shared by :mod:`milkprice.data.lake` (which re-exports them) and its guards.
"""

from __future__ import annotations

import hashlib
import io
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from milkprice.data.schema import COLUMNS, ValidationSummary
from milkprice.months import Month

__all__ = [
    "PARTITION_RE",
    "LakeError",
    "LakeWindow",
    "MonthMerge",
    "PartitionWrite",
    "frame_fingerprint",
    "partition_key",
    "serialize_partition",
]

_ARROW_SCHEMA = pa.schema(
    [
        ("Fecha", pa.timestamp("ns")),
        ("Estado", pa.string()),
        ("Ciudad", pa.string()),
        ("Tipo", pa.string()),
        ("Canal", pa.string()),
        ("Precio", pa.float64()),
    ]
)
PARTITION_RE = re.compile(r"monthly/(\d{4})/(\d{2})/(\d{4})-(\d{2})-data\.parquet$")


class LakeError(RuntimeError):
    """The lake cannot be reached or used (missing bucket, endpoint down, unreadable file)."""


# What an update does to a month: its rows now (None: no partition) -> its rows after (None:
# remove the partition). Called again with fresh rows when an S3 write lost a race.
MonthMerge = Callable[[pd.DataFrame | None], pd.DataFrame | None]


def partition_key(month: Month) -> str:
    """The one place that says where a month lives, relative to the lake's base."""
    return f"monthly/{month.year:04d}/{month.month:02d}/{month}-data.parquet"


def serialize_partition(frame: pd.DataFrame) -> bytes:
    """Parquet bytes of a clean frame; the same rows always give the same bytes."""
    table = pa.Table.from_pandas(frame.loc[:, COLUMNS], schema=_ARROW_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata(None)
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd", write_statistics=True)
    return buffer.getvalue()


def frame_fingerprint(frame: pd.DataFrame) -> str:
    """Short content hash of rows (order-sensitive: pass canonical frames)."""
    hashed = pd.util.hash_pandas_object(frame.loc[:, COLUMNS], index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()[:16]


@dataclass(frozen=True)
class PartitionWrite:
    """What a write did: where, how many rows, the content fingerprint, and whether bytes changed."""

    month: Month
    path: str
    rows: int
    fingerprint: str
    changed: bool
    summary: ValidationSummary


@dataclass
class LakeWindow:
    """Rows of several months read together, and which of the asked months were absent."""

    frame: pd.DataFrame
    present: list[Month]
    missing: list[Month]
    summaries: list[ValidationSummary] = field(default_factory=list)

    @property
    def fingerprint(self) -> str:
        """Fingerprint of everything read (identifies the training data of a run)."""
        return frame_fingerprint(self.frame)

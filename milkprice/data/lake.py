"""The data lake: monthly parquet partitions on local disk or S3, through one code path.

Layout: ``<base>/monthly/YYYY/MM/YYYY-MM-data.parquet``. Local and S3 lakes differ only in
their base URI (and the endpoint in the storage options); fsspec does the rest. Every read and
write is validated (:mod:`milkprice.data.schema`); writes are atomic and deterministic.
"""

from __future__ import annotations

import copy
import hashlib
import io
import re
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem

from milkprice.data.schema import (
    COLUMNS,
    LakeDataError,
    ValidationSummary,
    normalize_frame,
    validate_frame,
)
from milkprice.months import Month
from milkprice.settings import Settings, Source

__all__ = [
    "Lake",
    "LakeError",
    "LakeWindow",
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
_PARTITION_RE = re.compile(r"monthly/(\d{4})/(\d{2})/(\d{4})-(\d{2})-data\.parquet$")
# botocore's defaults (5 attempts with backoff, per request; two bucket probes) make an endpoint
# that is down take ~20 s to report; a lake call should fail within a few seconds instead.
_S3_CONFIG_DEFAULTS: dict[str, object] = {
    "connect_timeout": 5,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
}


def _with_defaults(base_uri: str, storage_options: dict[str, object]) -> dict[str, object]:
    """Storage options with the lake's S3 defaults; anything the caller gave wins."""
    # deep copies: botocore fills in the nested dicts it is given (e.g. a retry "mode")
    options = copy.deepcopy(storage_options)
    protocol, _ = fsspec.core.split_protocol(base_uri)
    if protocol not in ("s3", "s3a"):
        return options
    # Another process (the monthly flow) adds partitions while this one (the API) runs:
    # s3fs's listing cache never expires, so it would hide them; always list afresh.
    options.setdefault("use_listings_cache", False)
    given = options.get("config_kwargs")
    options["config_kwargs"] = {
        **copy.deepcopy(_S3_CONFIG_DEFAULTS),
        **(given if isinstance(given, dict) else {}),
    }
    return options


class LakeError(RuntimeError):
    """The lake cannot be reached or used (missing bucket, endpoint down, unreadable file)."""


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


@dataclass(frozen=True)
class Lake:
    """A lake at ``base_uri`` (a local folder or ``s3://bucket/prefix``)."""

    base_uri: str
    storage_options: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Settings, source: Source | None = None) -> Lake:
        """The lake the settings point at for ``source`` (default: the configured one)."""
        return cls(settings.lake_uri(source), settings.storage_options(source))

    @cached_property
    def _fs_and_root(self) -> tuple[fsspec.AbstractFileSystem, str]:
        options = _with_defaults(self.base_uri, self.storage_options)
        fs, root = fsspec.core.url_to_fs(self.base_uri, **options)
        return fs, root.rstrip("/")

    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem behind the base URI."""
        return self._fs_and_root[0]

    @property
    def _root(self) -> str:
        return self._fs_and_root[1]

    @property
    def is_local(self) -> bool:
        """Whether the lake lives on local disk."""
        return isinstance(self.fs, LocalFileSystem)

    def path(self, month: Month) -> str:
        """Filesystem path of a month's partition."""
        return f"{self._root}/{partition_key(month)}"

    def uri(self, month: Month) -> str:
        """Full URI of a month's partition, as shown to users."""
        return f"{self.base_uri.rstrip('/')}/{partition_key(month)}"

    @property
    def _endpoint(self) -> str:
        """The S3 endpoint the lake talks to, as users configure it (AWS_ENDPOINT_URL)."""
        found = getattr(self.fs, "endpoint_url", None) or self.storage_options.get("endpoint_url")
        return str(found or "AWS S3")

    @property
    def _attempts(self) -> object:
        """Attempts botocore makes per S3 request (its retry settings, see _S3_CONFIG_DEFAULTS)."""
        retries = (getattr(self.fs, "config_kwargs", None) or {}).get("retries") or {}
        if "total_max_attempts" in retries:
            return retries["total_max_attempts"]
        return retries["max_attempts"] + 1 if "max_attempts" in retries else "botocore's default"

    def _guard(self, action: str, exc: Exception) -> LakeError:
        if self.is_local:
            return LakeError(f"cannot {action} in the lake at {self.base_uri}: {exc}")
        # An S3 failure reaches here only after botocore's own retries (standard mode): say
        # where the lake is, which endpoint failed and how often it was tried.
        return LakeError(
            f"cannot {action} in the lake at {self.base_uri}: the S3 endpoint {self._endpoint} "
            f"failed after {self._attempts} attempts per request ({type(exc).__name__}: {exc}); "
            "check that it is up and that AWS_ENDPOINT_URL points at it"
        )

    def check_reachable(self) -> None:
        """Fail with a clear message if the lake's base cannot be reached (bucket, endpoint)."""
        if self.is_local:
            return
        bucket = self._root.split("/")[0]
        endpoint = self._endpoint
        try:
            # s3fs's exists() swallows every error of its bucket probes and answers False, so an
            # endpoint that is down would be reported as a missing bucket: ask S3 directly.
            call_s3 = getattr(self.fs, "call_s3", None)
            if call_s3 is not None:
                call_s3("head_bucket", Bucket=bucket)
            elif not self.fs.exists(bucket):
                raise FileNotFoundError(bucket)
        except FileNotFoundError:
            raise LakeError(
                f"bucket {bucket!r} does not exist at {endpoint}; create it or set S3_BUCKET"
            ) from None
        except Exception as exc:  # botocore/aiohttp raise many types for an endpoint down
            raise LakeError(
                f"cannot reach bucket {bucket!r} of the lake at {self.base_uri} through the "
                f"S3 endpoint {endpoint} after {self._attempts} attempts "
                f"({type(exc).__name__}: {exc}); check AWS_ENDPOINT_URL and credentials"
            ) from exc

    def list_months(self) -> list[Month]:
        """Months that have a partition, oldest first."""
        self.check_reachable()
        pattern = f"{self._root}/monthly/*/*/*-data.parquet"
        try:
            paths = self.fs.glob(pattern)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._guard("list partitions", exc) from exc
        months = []
        for path in paths:
            match = _PARTITION_RE.search(str(path))
            if match and match.group(1, 2) == match.group(3, 4):
                months.append(Month(int(match.group(1)), int(match.group(2))))
        return sorted(set(months))

    def exists(self, month: Month) -> bool:
        """Whether a month has a partition."""
        try:
            return bool(self.fs.exists(self.path(month)))
        except Exception as exc:
            raise self._guard(f"look for {month}", exc) from exc

    def read_bytes(self, month: Month) -> bytes | None:
        """Raw bytes of a partition, or ``None`` if the month is absent."""
        try:
            return bytes(self.fs.cat_file(self.path(month)))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._guard(f"read {month}", exc) from exc

    def read_month(self, month: Month) -> tuple[pd.DataFrame, ValidationSummary]:
        """Read and validate one month.

        Raises:
            FileNotFoundError: the month has no partition (the message names it).
            LakeDataError: the file is not valid parquet or its rows fail validation.
        """
        data = self.read_bytes(month)
        if data is None:
            self.check_reachable()  # a missing bucket is not a missing month
            raise FileNotFoundError(f"no partition for {month} in the lake: {self.uri(month)}")
        return self._parse(month, data)

    def _parse(self, month: Month, data: bytes) -> tuple[pd.DataFrame, ValidationSummary]:
        uri = self.uri(month)
        try:
            frame = pq.read_table(io.BytesIO(data)).to_pandas()
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for corrupt files
            raise LakeDataError(f"{uri}: not a readable parquet file ({exc})") from exc
        return validate_frame(frame, origin=uri, month=month)

    def read_window(self, months: Sequence[Month]) -> LakeWindow:
        """Read several months, reporting the ones that have no partition."""
        self.check_reachable()  # else a missing bucket would read as "every month missing"
        frames, present, missing, summaries = [], [], [], []
        for month in months:
            data = self.read_bytes(month)  # one GET: absent and present are told apart here
            if data is None:
                missing.append(month)
                continue
            frame, summary = self._parse(month, data)
            frames.append(frame)
            present.append(month)
            summaries.append(summary)
        # An empty window keeps the lake's dtypes, so callers need no special case for it.
        combined = (
            pd.concat(frames, ignore_index=True)
            if frames
            else normalize_frame(pd.DataFrame(columns=COLUMNS))
        )
        return LakeWindow(combined, present, missing, summaries)

    def write_month(self, month: Month, frame: pd.DataFrame) -> PartitionWrite:
        """Validate and write one month atomically.

        On local disk the bytes go to a temporary file in the same folder, renamed over the
        partition; on S3 they go in one PUT. Either way a reader sees the old partition or the
        new one, never a part. Writing the same rows again leaves the bytes unchanged.
        """
        clean, summary = validate_frame(frame, origin=self.uri(month), month=month)
        data = serialize_partition(clean)
        self.check_reachable()
        previous = self.read_bytes(month)
        path = self.path(month)
        if previous != data:
            self._atomic_put(path, data)
        return PartitionWrite(
            month=month,
            path=self.uri(month),
            rows=len(clean),
            fingerprint=frame_fingerprint(clean),
            changed=previous != data,
            summary=summary,
        )

    def object_uri(self, key: str) -> str:
        """Full URI of any object of the lake (e.g. ``forecasts/cutoff=.../forecast.parquet``)."""
        return f"{self.base_uri.rstrip('/')}/{key.lstrip('/')}"

    def put_object(self, key: str, data: bytes) -> str:
        """Write ``data`` at ``key`` under the lake's base, atomically; return its URI.

        The same code path for local disk and S3 as the partitions (see :meth:`write_month`).
        """
        self.check_reachable()
        self._atomic_put(f"{self._root}/{key.lstrip('/')}", data)
        return self.object_uri(key)

    def list_objects(self, prefix: str) -> list[str]:
        """Keys (relative to the lake's base) of every object under ``prefix``, sorted."""
        self.check_reachable()
        base = f"{self._root}/{prefix.strip('/')}"
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        except Exception as exc:
            raise self._guard(f"list {prefix}", exc) from exc
        return sorted(str(path)[len(self._root) + 1 :] for path in found)

    def get_object(self, key: str) -> bytes | None:
        """Bytes of the object at ``key``, or ``None`` if there is none."""
        try:
            return bytes(self.fs.cat_file(f"{self._root}/{key.lstrip('/')}"))
        except FileNotFoundError:
            return None
        except Exception as exc:
            raise self._guard(f"read {key}", exc) from exc

    def _atomic_put(self, path: str, data: bytes) -> None:
        try:
            if self.is_local:
                folder = path.rsplit("/", 1)[0]
                self.fs.makedirs(folder, exist_ok=True)
                temporary = f"{folder}/.{uuid.uuid4().hex}.tmp"
                try:
                    self.fs.pipe_file(temporary, data)
                    self.fs.mv(temporary, path)
                finally:
                    if self.fs.exists(temporary):
                        self.fs.rm_file(temporary)
            else:
                self.fs.pipe_file(path, data)
        except Exception as exc:
            raise self._guard(f"write {path}", exc) from exc

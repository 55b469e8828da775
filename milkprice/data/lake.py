"""The data lake: monthly parquet partitions on local disk or S3, through one code path.

Layout: ``<base>/monthly/YYYY/MM/YYYY-MM-data.parquet``. Local and S3 lakes differ only in
their base URI (and the endpoint in the storage options); fsspec does the rest. Every read and
write is validated (:mod:`milkprice.data.schema`); writes are atomic and deterministic, and a
month is changed by one read-merge-write (:meth:`Lake.update_month`) that concurrent writers
cannot interleave (:mod:`milkprice.data.lake_guard`).
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import fsspec
import pandas as pd
import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem
from tenacity import RetryError

from milkprice.data.lake_guard import (
    DEFAULT_UPDATE_TIMEOUT_S,
    LOCK_FOLDER,
    LockTimeout,
    flush_to_disk,
    held_locks,
    remove_stale_temporaries,
    temporary_path,
)
from milkprice.data.lake_s3 import (
    WriteConflict,
    check_bucket,
    conflict_retrying,
    delete_if_unchanged,
    put_if_unchanged,
    read_with_etag,
    s3_failure,
    with_s3_defaults,
)
from milkprice.data.partition import (
    PARTITION_RE,
    LakeError,
    LakeWindow,
    MonthMerge,
    PartitionWrite,
    frame_fingerprint,
    partition_key,
    serialize_partition,
)
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
    "MonthMerge",
    "PartitionWrite",
    "frame_fingerprint",
    "partition_key",
    "serialize_partition",
]


@dataclass(frozen=True)
class Lake:
    """A lake at ``base_uri`` (a local folder or ``s3://bucket/prefix``).

    ``update_timeout_s`` bounds how long an update of a month waits for other writers of it
    (the local lock; S3 writes that lost a race), before a :class:`LakeError`.
    """

    base_uri: str
    storage_options: dict[str, object] = field(default_factory=dict)
    update_timeout_s: float = DEFAULT_UPDATE_TIMEOUT_S

    @classmethod
    def from_settings(cls, settings: Settings, source: Source | None = None) -> Lake:
        """The lake the settings point at for ``source`` (default: the configured one)."""
        return cls(settings.lake_uri(source), settings.storage_options(source))

    @cached_property
    def _fs_and_root(self) -> tuple[fsspec.AbstractFileSystem, str]:
        options = with_s3_defaults(self.base_uri, self.storage_options)
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

    def _guard(self, action: str, exc: Exception) -> LakeError:
        if self.is_local:
            return LakeError(f"cannot {action} in the lake at {self.base_uri}: {exc}")
        return s3_failure(self.fs, self.storage_options, self.base_uri, action, exc)

    def check_reachable(self) -> None:
        """Fail with a clear message if the lake's base cannot be reached (bucket, endpoint)."""
        if not self.is_local:
            check_bucket(self.fs, self.storage_options, self.base_uri, self._root.split("/")[0])

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
            match = PARTITION_RE.search(str(path))
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
        """Validate and write one month atomically, replacing whatever it held.

        See :meth:`update_month` (the same path, whose merge ignores the rows there): a reader
        sees the old partition or the new one, never a part. The same rows again leave the
        bytes unchanged.
        """
        validate_frame(frame, origin=self.uri(month), month=month)  # bad rows: before any I/O
        written = self._update(month, lambda _: frame)
        assert written is not None
        return written

    def update_month(self, month: Month, merge: MonthMerge) -> PartitionWrite | None:
        """Read a month, merge, write it back, with no other writer of the month in between.

        ``merge`` gets the month's validated rows (``None`` if it has no partition) and returns
        its new rows (``None``: remove the partition). On local disk the month's lock is held
        throughout (and temporaries of killed writers are removed under it); on S3 the write
        is conditional on the ETag read, and a lost race reads and merges again, so ``merge``
        may run more than once and must depend only on what it is given.

        Guarantee: two updates of one month never lose each other's rows; a crash (SIGKILL) at
        any moment leaves the old or the new partition, readable. Across months an update is
        not atomic: a crash between two months' writes leaves the first one new.

        Returns:
            What was written, or ``None`` when the month has no partition afterwards.

        Raises:
            LakeError: the lock stayed held, or every S3 write lost a race, for
                ``update_timeout_s``; or the storage failed.
            LakeDataError: the partition there, or the merged rows, fail validation.
        """

        def merged(data: bytes | None) -> pd.DataFrame | None:
            return merge(None if data is None else self._parse(month, data)[0])

        return self._update(month, merged)

    def lock_path(self, month: Month) -> str:
        """The local lock file of a month (outside ``monthly/``: never taken for a partition)."""
        return f"{self._root}/{LOCK_FOLDER}/{month}.lock"

    @contextmanager
    def locked(self, months: Iterable[Month]) -> Iterator[None]:
        """Hold the local locks of ``months`` (in month order: no deadlock) for the block.

        An S3 lake has no locks (its updates are conditional writes), so this does nothing
        there. Updates of these months inside the block do not wait for themselves.
        """
        if not self.is_local:
            yield
            return
        chosen = sorted(set(months))
        with ExitStack() as stack:
            try:
                stack.enter_context(
                    held_locks([self.lock_path(m) for m in chosen], self.update_timeout_s)
                )
            except LockTimeout as exc:
                raise LakeError(
                    f"cannot update {exc.lock_file.rsplit('/', 1)[-1].removesuffix('.lock')} "
                    f"in the lake at {self.base_uri}: its lock {exc.lock_file} is held by "
                    f"another writer (waited {exc.waited_s:.1f}s, the limit); another ingest "
                    "of that month is still running: retry when it ends"
                ) from None
            yield

    def _update(
        self, month: Month, build: Callable[[bytes | None], pd.DataFrame | None]
    ) -> PartitionWrite | None:
        self.check_reachable()
        if self.is_local:
            with self.locked([month]):
                remove_stale_temporaries(self.path(month))
                return self._update_once(month, build)
        started = time.monotonic()
        try:
            for attempt in conflict_retrying(self.update_timeout_s):
                with attempt:
                    return self._update_once(month, build)
        except RetryError as exc:
            raise LakeError(
                f"cannot update {month} in the lake at {self.base_uri}: "
                f"{exc.last_attempt.attempt_number} conditional writes of {self.uri(month)} "
                f"in {time.monotonic() - started:.1f}s each found it changed by another "
                "writer; retry when the other writers are done"
            ) from None
        raise AssertionError("unreachable: tenacity returns or raises")  # pragma: no cover

    def _update_once(
        self, month: Month, build: Callable[[bytes | None], pd.DataFrame | None]
    ) -> PartitionWrite | None:
        path = self.path(month)
        if self.is_local:  # under the month's lock: nobody writes between read and write
            data, etag = self.read_bytes(month), None
        else:
            try:
                found = read_with_etag(self.fs, path)
            except Exception as exc:
                raise self._guard(f"read {month}", exc) from exc
            data, etag = found if found is not None else (None, None)
        frame = build(data)
        if frame is None:
            if data is not None:
                self._remove(path, etag)
            return None
        clean, summary = validate_frame(frame, origin=self.uri(month), month=month)
        new = serialize_partition(clean)
        if new != data:
            if self.is_local:
                self._atomic_put(path, new)
            else:
                self._guarded(f"write {path}", lambda: put_if_unchanged(self.fs, path, new, etag))
        return PartitionWrite(
            month=month,
            path=self.uri(month),
            rows=len(clean),
            fingerprint=frame_fingerprint(clean),
            changed=new != data,
            summary=summary,
        )

    def _remove(self, path: str, etag: str | None) -> None:
        if etag is None:
            self._guarded(f"remove {path}", lambda: self.fs.rm_file(path))
        else:
            self._guarded(f"remove {path}", lambda: delete_if_unchanged(self.fs, path, etag))

    def _guarded(self, action: str, call: Callable[[], object]) -> None:
        """Run a storage call; its failures become a :class:`LakeError` (conflicts stay)."""
        try:
            call()
        except WriteConflict:
            raise
        except Exception as exc:
            raise self._guard(action, exc) from exc

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
        """Write a whole object: locally a temporary beside it, flushed, renamed; one PUT on S3."""
        if not self.is_local:
            self._guarded(f"write {path}", lambda: self.fs.pipe_file(path, data))
            return
        folder = path.rsplit("/", 1)[0]
        temporary = temporary_path(path)
        try:
            self.fs.makedirs(folder, exist_ok=True)
            self.fs.pipe_file(temporary, data)
            flush_to_disk(temporary)  # the bytes are on disk before the name points at them
            self.fs.mv(temporary, path)
            flush_to_disk(folder)  # and the rename itself survives a power cut
        except Exception as exc:
            raise self._guard(f"write {path}", exc) from exc
        finally:
            Path(temporary).unlink(missing_ok=True)

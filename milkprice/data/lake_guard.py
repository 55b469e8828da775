"""What keeps two writers of one month from losing each other's rows, and a crash harmless.

A month is updated by read -> merge -> write (:meth:`milkprice.data.lake.Lake.update_month`).
Two such updates at once would both read the same partition, and the second write would erase
the first one's rows. Two guards, one per kind of lake, behind the same method:

- **local lake**: a file lock per month, ``<root>/.locks/YYYY-MM.lock`` (filelock's ``flock``,
  released by the kernel when its holder dies, so a killed writer never leaves it held), held
  around the whole read-merge-write; waiting for it is bounded. Lock files live outside
  ``monthly/``, so they can never be taken for partitions, and stay (unlinking a lock file
  would let two writers lock two different files of one name).
- **S3 lake**: optimistic concurrency with S3 conditional writes: the partition is read with
  its ETag and written back with ``IfMatch=<etag>`` (``IfNoneMatch='*'`` for a new month), so
  the PUT fails with 412 (409 when two conditional writes race) if anyone wrote in between;
  the update then reads, merges and tries again (tenacity, bounded in attempts and time).

Crashes: a local partition is written to a temporary file named after it in its own folder
(``.YYYY-MM-data.parquet.<uuid>.tmp``), flushed to disk, then renamed over it; on S3 it is one
PUT. A SIGKILL at any moment leaves the old or the new partition. A killed writer's temporary
never matches the partition pattern, and the next writer of that month removes it under the
month's lock (no live writer can own it then).
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path

from filelock import FileLock, Timeout

__all__ = [
    "DEFAULT_UPDATE_TIMEOUT_S",
    "LOCK_FOLDER",
    "LockTimeout",
    "flush_to_disk",
    "held_locks",
    "remove_stale_temporaries",
    "temporary_path",
]

# How long an update waits for other writers of its month (the lock, or lost S3 races). An
# ingest holds a month for well under a second; a minute means something is wrong.
DEFAULT_UPDATE_TIMEOUT_S = 60.0
LOCK_FOLDER = ".locks"
_TEMP_SUFFIX = ".tmp"


class LockTimeout(Exception):  # noqa: N818 - a timeout, not a programming error
    """A month's lock was still held by another writer when the wait ran out."""

    def __init__(self, lock_file: str, waited_s: float) -> None:
        super().__init__(f"{lock_file} still held after {waited_s:.1f}s")
        self.lock_file = lock_file
        self.waited_s = waited_s


@contextmanager
def held_locks(lock_files: Sequence[str], timeout_s: float) -> Iterator[None]:
    """Hold every lock of ``lock_files``, taken in the order given, for the block.

    Callers pass them in month order, so two writers of overlapping months never wait for
    each other in a circle. The locks are reentrant in a thread (one instance per file in the
    process), so an update of one month inside a block that holds it does not wait for itself.

    Raises:
        LockTimeout: a lock was not free within ``timeout_s`` (the ones taken are released).
    """
    with ExitStack() as stack:
        for lock_file in lock_files:
            Path(lock_file).parent.mkdir(parents=True, exist_ok=True)
            lock = FileLock(lock_file, is_singleton=True)
            started = time.monotonic()
            try:
                lock.acquire(timeout=timeout_s)
            except Timeout:
                raise LockTimeout(lock_file, time.monotonic() - started) from None
            stack.callback(lock.release)
        yield


def temporary_path(path: str) -> str:
    """A fresh temporary beside ``path``, named after it (hidden; never a partition's name)."""
    folder, name = path.rsplit("/", 1)
    return f"{folder}/.{name}.{uuid.uuid4().hex}{_TEMP_SUFFIX}"


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporaries of ``path`` left by killed writers; call it under ``path``'s lock.

    Only this partition's temporaries match (they are named after it), so a writer of another
    month, which holds another lock, never loses its temporary to this cleanup.
    """
    folder, name = path.rsplit("/", 1)
    removed = []
    for stale in Path(folder).glob(f".{name}.*{_TEMP_SUFFIX}"):
        with suppress(FileNotFoundError):
            stale.unlink()
            removed.append(str(stale))
    return removed


def flush_to_disk(path: str) -> None:
    """``fsync`` a file or a folder (after a rename), so a power cut keeps what was written."""
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

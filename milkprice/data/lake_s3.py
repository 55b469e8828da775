"""The S3 side of the lake: client defaults, and writes that land only on what was read.

S3 has no locks; its conditional writes are the guard (see :mod:`milkprice.data.lake_guard`):
a partition is read with its ETag in one GET and written back with ``IfMatch=<etag>``
(``IfNoneMatch='*'`` for a new month); S3 refuses the PUT (412, or 409 when two conditional
writes race) if anyone wrote in between, and the update reads, merges and tries again. s3fs
passes these arguments to its single ``put_object`` for objects under 100 MB (every partition).
moto (the tests' S3) honours both on ``put_object`` and ``IfMatch`` on ``delete_object``. An
endpoint that ignores them (old MinIO) silently falls back to the last writer winning.
"""

from __future__ import annotations

import copy

import fsspec
from botocore.exceptions import ClientError
from fsspec.asyn import sync
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    stop_after_delay,
    wait_random_exponential,
)

from milkprice.data.partition import LakeError

__all__ = [
    "MAX_CONDITIONAL_ATTEMPTS",
    "S3_CONFIG_DEFAULTS",
    "WriteConflict",
    "check_bucket",
    "conflict_retrying",
    "delete_if_unchanged",
    "put_if_unchanged",
    "read_with_etag",
    "s3_failure",
    "with_s3_defaults",
]

MAX_CONDITIONAL_ATTEMPTS = 30
# S3's answers when a conditional write lost: the object changed (412), two conditional writes
# raced (409), or it vanished (404 on IfMatch, e.g. a rollback removed a new month).
_CONFLICT_CODES = {"PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey"}
_CONFLICT_STATUS = {409, 412}
# botocore's defaults (5 attempts with backoff, per request; two bucket probes) make an endpoint
# that is down take ~20 s to report; a lake call should fail within a few seconds instead.
S3_CONFIG_DEFAULTS: dict[str, object] = {
    "connect_timeout": 5,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
}


def with_s3_defaults(base_uri: str, storage_options: dict[str, object]) -> dict[str, object]:
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
        **copy.deepcopy(S3_CONFIG_DEFAULTS),
        **(given if isinstance(given, dict) else {}),
    }
    return options


def _endpoint(fs: fsspec.AbstractFileSystem, storage_options: dict[str, object]) -> str:
    """The S3 endpoint the lake talks to, as users configure it (AWS_ENDPOINT_URL)."""
    found = getattr(fs, "endpoint_url", None) or storage_options.get("endpoint_url")
    return str(found or "AWS S3")


def _attempts(fs: fsspec.AbstractFileSystem) -> object:
    """Attempts botocore makes per S3 request (its retry settings, see S3_CONFIG_DEFAULTS)."""
    retries = (getattr(fs, "config_kwargs", None) or {}).get("retries") or {}
    if "total_max_attempts" in retries:
        return retries["total_max_attempts"]
    return retries["max_attempts"] + 1 if "max_attempts" in retries else "botocore's default"


def s3_failure(
    fs: fsspec.AbstractFileSystem,
    storage_options: dict[str, object],
    base_uri: str,
    action: str,
    exc: Exception,
) -> LakeError:
    """The error of a failed S3 call: the lake, the endpoint and how often it was tried."""
    # An S3 failure reaches here only after botocore's own retries (standard mode).
    return LakeError(
        f"cannot {action} in the lake at {base_uri}: the S3 endpoint "
        f"{_endpoint(fs, storage_options)} failed after {_attempts(fs)} attempts per request "
        f"({type(exc).__name__}: {exc}); check that it is up and that AWS_ENDPOINT_URL points at it"
    )


def check_bucket(
    fs: fsspec.AbstractFileSystem, storage_options: dict[str, object], base_uri: str, bucket: str
) -> None:
    """Fail with one message naming S3_BUCKET or AWS_ENDPOINT_URL if the bucket is not there."""
    endpoint = _endpoint(fs, storage_options)
    try:
        # s3fs's exists() swallows every error of its bucket probes and answers False, so an
        # endpoint that is down would be reported as a missing bucket: ask S3 directly.
        call_s3 = getattr(fs, "call_s3", None)
        if call_s3 is not None:
            call_s3("head_bucket", Bucket=bucket)
        elif not fs.exists(bucket):
            raise FileNotFoundError(bucket)
    except FileNotFoundError:
        raise LakeError(
            f"bucket {bucket!r} does not exist at {endpoint}; create it or set S3_BUCKET"
        ) from None
    except Exception as exc:  # botocore/aiohttp raise many types for an endpoint down
        raise LakeError(
            f"cannot reach bucket {bucket!r} of the lake at {base_uri} through the "
            f"S3 endpoint {endpoint} after {_attempts(fs)} attempts "
            f"({type(exc).__name__}: {exc}); check AWS_ENDPOINT_URL and credentials"
        ) from exc


class WriteConflict(Exception):  # noqa: N818 - an expected outcome, retried
    """Another writer changed the S3 object between this update's read and its write."""


def read_with_etag(fs: fsspec.AbstractFileSystem, path: str) -> tuple[bytes, str] | None:
    """Bytes and ETag of an S3 object from one GET (so they belong together), or ``None``.

    Reading the ETag apart (a HEAD) would let a write slip in between; the conditional write
    would then compare against the wrong version.
    """
    bucket, key, _ = fs.split_path(path)

    async def get() -> tuple[bytes, str]:
        response = await fs._call_s3("get_object", Bucket=bucket, Key=key)
        try:
            return await response["Body"].read(), str(response["ETag"])
        finally:
            response["Body"].close()

    try:
        return sync(fs.loop, get)
    except FileNotFoundError:
        return None


def _is_conflict(exc: BaseException) -> bool:
    """Whether S3 refused a conditional write because the object changed (s3fs wraps the reply)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ClientError):
            error = seen.response.get("Error", {})
            status = seen.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            return error.get("Code") in _CONFLICT_CODES or status in _CONFLICT_STATUS
        seen = seen.__cause__ or seen.__context__
    # s3fs turns an If-None-Match refusal into FileExistsError, a vanished key into
    # FileNotFoundError: both mean another writer got there first.
    return isinstance(exc, FileExistsError | FileNotFoundError)


def put_if_unchanged(
    fs: fsspec.AbstractFileSystem, path: str, data: bytes, etag: str | None
) -> None:
    """One PUT of ``data`` that lands only if the object is still at ``etag`` (None: absent).

    Raises:
        WriteConflict: another writer changed (or created, or removed) the object.
    """
    try:
        if etag is None:
            fs.pipe_file(path, data, mode="create")  # IfNoneMatch='*'
        else:
            fs.pipe_file(path, data, IfMatch=etag)
    except Exception as exc:
        if _is_conflict(exc):
            raise WriteConflict(f"{path} changed since it was read") from exc
        raise


def delete_if_unchanged(fs: fsspec.AbstractFileSystem, path: str, etag: str) -> None:
    """Delete the object only if it is still at ``etag``.

    Raises:
        WriteConflict: another writer changed it since it was read.
    """
    bucket, key, _ = fs.split_path(path)
    try:
        fs.call_s3("delete_object", Bucket=bucket, Key=key, IfMatch=etag)
    except FileNotFoundError:
        pass  # already gone: nothing of it is left to remove
    except Exception as exc:
        if _is_conflict(exc):
            raise WriteConflict(f"{path} changed since it was read") from exc
        raise
    finally:
        fs.invalidate_cache(path)


def conflict_retrying(timeout_s: float) -> Retrying:
    """Retries of a read-merge-write that lost a race: jittered, bounded in attempts and time."""
    return Retrying(
        retry=retry_if_exception_type(WriteConflict),
        stop=stop_after_attempt(MAX_CONDITIONAL_ATTEMPTS) | stop_after_delay(timeout_s),
        wait=wait_random_exponential(multiplier=0.05, max=1.0),
    )

"""Download a SNIIM "Leche" publication over HTTP(S), never leaving a partial file behind.

httpx streams the answer into a temporary file beside the target (renamed at the end, capped in
size); tenacity retries what a later attempt can fix: connection errors, timeouts and 5xx
answers, a few attempts with a short exponential backoff. A 404 is not an error to retry: the
publication is not online (a holiday, or not yet published), :class:`PublicationNotFoundError`.
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.parse
from datetime import date
from pathlib import Path

import httpx
import tenacity

from milkprice.settings import SNIIM_LECHE_URL_TEMPLATE

__all__ = [
    "DOWNLOAD_ATTEMPTS",
    "DOWNLOAD_BACKOFF_SECONDS",
    "SNIIM_LECHE_URL",
    "SNIIM_LECHE_URL_TEMPLATE",
    "PublicationNotFoundError",
    "SniimDownloadError",
    "download_publication",
    "leche_publication_url",
]

SNIIM_LECHE_URL = SNIIM_LECHE_URL_TEMPLATE.format(day=date(2025, 7, 30))

DOWNLOAD_ATTEMPTS = 3
DOWNLOAD_BACKOFF_SECONDS = 0.25  # first wait; doubles after each failed attempt
_MAX_BACKOFF_SECONDS = 4.0
_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


class SniimDownloadError(RuntimeError):
    """The publication could not be downloaded (unreachable, HTTP error, timeout)."""


class PublicationNotFoundError(SniimDownloadError):
    """The server answered 404: no publication at that URL (yet)."""


class _RetryableError(SniimDownloadError):
    """A failure another attempt may not meet (connection, timeout, 5xx)."""


def leche_publication_url(day: date, template: str = SNIIM_LECHE_URL_TEMPLATE) -> str:
    """URL of the publication of ``day``: ``template`` formatted over ``day``."""
    return template.format(day=day)


def _file_name(url: str) -> str:
    name = Path(urllib.parse.urlsplit(url).path).name
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        return "sniim-leche.xlsx"
    return name


def _get_once(client: httpx.Client, url: str, temporary: Path, timeout_s: float) -> None:
    """One GET of ``url`` streamed into ``temporary`` (truncated first)."""
    try:
        with client.stream("GET", url) as response, temporary.open("wb") as out:
            if response.status_code == httpx.codes.NOT_FOUND:
                raise PublicationNotFoundError(f"{url}: HTTP 404 Not Found")
            if response.status_code >= httpx.codes.INTERNAL_SERVER_ERROR:
                raise _RetryableError(
                    f"{url}: HTTP {response.status_code} {response.reason_phrase}"
                )
            if response.status_code >= httpx.codes.BAD_REQUEST:
                raise SniimDownloadError(
                    f"{url}: HTTP {response.status_code} {response.reason_phrase}"
                )
            size = 0
            for chunk in response.iter_bytes(1 << 16):
                size += len(chunk)
                if size > _MAX_DOWNLOAD_BYTES:
                    raise SniimDownloadError(f"{url}: larger than {_MAX_DOWNLOAD_BYTES} bytes")
                out.write(chunk)
    except httpx.TimeoutException as exc:
        raise _RetryableError(f"{url}: no answer within {timeout_s}s") from exc
    except httpx.TransportError as exc:
        raise _RetryableError(f"{url}: unreachable ({exc or type(exc).__name__})") from exc
    except httpx.HTTPError as exc:
        raise SniimDownloadError(f"{url}: download failed ({exc})") from exc


def download_publication(
    url: str,
    dest_dir: Path,
    *,
    timeout_s: float = 30,
    attempts: int = DOWNLOAD_ATTEMPTS,
    backoff_s: float = DOWNLOAD_BACKOFF_SECONDS,
) -> Path:
    """Download a publication with an HTTP(S) GET into ``dest_dir``.

    The bytes go to a temporary file in ``dest_dir`` renamed at the end, so a failed download
    never leaves a partial file under the final name.

    Args:
        url: the http(s) URL.
        dest_dir: the folder of the downloaded file (created if needed).
        timeout_s: how long connecting, or waiting for the next bytes, may take.
        attempts: how many GETs at most when they fail on a connection, a timeout or a 5xx.
        backoff_s: the wait before the second attempt; it doubles after each one.

    Returns:
        The downloaded file (named after the last part of the URL path).

    Raises:
        PublicationNotFoundError: HTTP 404 (never retried).
        SniimDownloadError: not an http(s) URL, unreachable host, HTTP error status or timeout
            after ``attempts`` (the message names the URL).

    """
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise SniimDownloadError(f"{url}: only http(s) URLs can be downloaded")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / _file_name(url)
    handle, name = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".part")
    os.close(handle)
    temporary = Path(name)
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_RetryableError),
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=tenacity.wait_exponential(multiplier=backoff_s, max=_MAX_BACKOFF_SECONDS),
        reraise=True,
    )
    try:
        with httpx.Client(
            timeout=timeout_s, follow_redirects=True, headers={"User-Agent": "milkprice"}
        ) as client:
            try:
                retrying(_get_once, client, url, temporary, timeout_s)
            except _RetryableError as exc:
                tries = retrying.statistics.get("attempt_number", 1)
                suffix = f" (after {tries} attempts)" if tries > 1 else ""
                raise SniimDownloadError(f"{exc}{suffix}") from exc
        temporary.replace(target)
    finally:
        temporary.unlink(missing_ok=True)
    return target

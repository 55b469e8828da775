"""Download a SNIIM "Leche" publication over HTTP(S), never leaving a partial file behind."""

from __future__ import annotations

import http.client
import os
import re
import tempfile
import urllib.error
import urllib.parse
import urllib.request
from datetime import date
from pathlib import Path

from milkprice.settings import SNIIM_LECHE_URL_TEMPLATE

__all__ = [
    "SNIIM_LECHE_URL",
    "SNIIM_LECHE_URL_TEMPLATE",
    "SniimDownloadError",
    "download_publication",
    "leche_publication_url",
]

SNIIM_LECHE_URL = SNIIM_LECHE_URL_TEMPLATE.format(day=date(2025, 7, 30))

_MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024


class SniimDownloadError(RuntimeError):
    """The publication could not be downloaded (unreachable, HTTP error, timeout)."""


def leche_publication_url(day: date) -> str:
    """URL of the publication of ``day`` following :data:`SNIIM_LECHE_URL_TEMPLATE`."""
    return SNIIM_LECHE_URL_TEMPLATE.format(day=day)


def _file_name(url: str) -> str:
    name = Path(urllib.parse.urlsplit(url).path).name
    if not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
        return "sniim-leche.xlsx"
    return name


def download_publication(url: str, dest_dir: Path, *, timeout_s: float = 30) -> Path:
    """Download a publication with an HTTP(S) GET into ``dest_dir``.

    The bytes go to a temporary file in ``dest_dir`` renamed at the end, so a failed download
    never leaves a partial file under the final name.

    Returns:
        The downloaded file (named after the last part of the URL path).

    Raises:
        SniimDownloadError: not an http(s) URL, unreachable host, HTTP error status or timeout
            (the message names the URL).

    """
    if urllib.parse.urlsplit(url).scheme not in {"http", "https"}:
        raise SniimDownloadError(f"{url}: only http(s) URLs can be downloaded")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / _file_name(url)
    request = urllib.request.Request(url, headers={"User-Agent": "milkprice"})
    handle, temporary = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".part")
    try:
        with (
            os.fdopen(handle, "wb") as out,
            urllib.request.urlopen(request, timeout=timeout_s) as response,
        ):
            size = 0
            while chunk := response.read(1 << 16):
                size += len(chunk)
                if size > _MAX_DOWNLOAD_BYTES:
                    raise SniimDownloadError(f"{url}: larger than {_MAX_DOWNLOAD_BYTES} bytes")
                out.write(chunk)
        Path(temporary).replace(target)
    except urllib.error.HTTPError as exc:
        raise SniimDownloadError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
    except TimeoutError as exc:
        raise SniimDownloadError(f"{url}: no answer within {timeout_s}s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise SniimDownloadError(f"{url}: no answer within {timeout_s}s") from exc
        raise SniimDownloadError(f"{url}: unreachable ({exc.reason})") from exc
    except (OSError, http.client.HTTPException) as exc:
        raise SniimDownloadError(f"{url}: download failed ({exc})") from exc
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target

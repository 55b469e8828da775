"""One-off runs reuse the Prefect server of ``make up`` instead of a temporary one.

A one-off run (``python orchestration/flows/main_flow.py --year ... --month ...``,
``milkprice backfill``) without ``PREFECT_API_URL`` makes Prefect start a temporary server in
the background, which costs seconds at every start and leaves nothing to see in a UI. When the
stack started by ``make up`` is running, its state file ``<STATE_DIR>/stack.json`` (``STATE_DIR``
defaults to ``.state`` in the current directory) names its API; if that API answers, the run
uses it and says so in one line. Otherwise nothing changes.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from milkprice.settings import STACK_FILE

__all__ = [
    "STACK_FILE",
    "PrefectApiUnavailableError",
    "api_is_healthy",
    "check_prefect_api",
    "stack_api_url",
    "use_running_server",
]

_HEALTH_TIMEOUT_S = 2.0
_CHECK_TIMEOUT_S = 5.0
_HOW_TO_START = (
    "Start one with `make up` (Prefect server, MLflow UI and `milkprice serve` in the "
    "background), or run `prefect server start` in another terminal and "
    "`export PREFECT_API_URL=http://127.0.0.1:4200/api` before serving."
)


class PrefectApiUnavailableError(RuntimeError):
    """No Prefect server to serve into: the message says how to start one."""


def _state_dir() -> Path:
    return Path(os.environ.get("STATE_DIR") or ".state")


def stack_api_url(state_dir: Path | None = None) -> str | None:
    """The ``prefect_api_url`` that the running stack wrote, or None (no file, unreadable, none)."""
    path = (state_dir or _state_dir()) / STACK_FILE
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    url = state.get("prefect_api_url") if isinstance(state, dict) else None
    return url.rstrip("/") if isinstance(url, str) and url.startswith("http") else None


def _health_status(api_url: str, timeout_s: float) -> int:
    """The HTTP status of ``GET <api_url>/health``: the one health check of the shell.

    Raises:
        httpx.HTTPError: nothing answers (refused, timeout); ValueError: a malformed URL.
    """
    return httpx.get(f"{api_url.rstrip('/')}/health", timeout=timeout_s).status_code


def api_is_healthy(api_url: str, timeout_s: float = _HEALTH_TIMEOUT_S) -> bool:
    """Whether ``<api_url>/health`` answers 200 now."""
    try:
        return _health_status(api_url, timeout_s) == 200
    except (httpx.HTTPError, ValueError):  # refused, timeout, a malformed URL
        return False


def _configured_api_url() -> str | None:
    """``PREFECT_API_URL`` from the environment or the active Prefect profile."""
    if os.environ.get("PREFECT_API_URL"):
        return os.environ["PREFECT_API_URL"]
    from prefect.settings import get_current_settings  # noqa: PLC0415 - Prefect is heavy

    return get_current_settings().api.url or None


def use_running_server(
    state_dir: Path | None = None, *, echo: Callable[[str], None] | None = None
) -> str | None:
    """Point this process (and its children) at the ``make up`` server when it is running.

    Call it at the start of a one-off entry point, before any flow runs. Does nothing when
    ``PREFECT_API_URL`` is set (environment or profile), when there is no stack file, or when
    its API does not answer: then Prefect starts its temporary server as usual.

    Args:
        state_dir: Folder of ``stack.json`` (default: ``STATE_DIR``, else ``.state``).
        echo: Where the one line saying so goes (default: standard error, so that a
            ``--json`` result on standard output stays parseable).

    Returns:
        The API URL now in use, or None when nothing was changed.
    """
    if _configured_api_url():
        return None
    url = stack_api_url(state_dir)
    if url is None or not api_is_healthy(url):
        return None
    os.environ["PREFECT_API_URL"] = url
    if "prefect.context" in sys.modules:
        # Prefect read its settings when it was imported: make it read the environment again.
        from prefect.context import refresh_global_settings_context  # noqa: PLC0415

        refresh_global_settings_context()
    line = f"Using the running Prefect server at {url} (from {STACK_FILE}; `make down` stops it)"
    (echo or (lambda text: print(text, file=sys.stderr)))(line)
    return url


def check_prefect_api(api_url: str | None, timeout_s: float = _CHECK_TIMEOUT_S) -> str:
    """Return ``api_url`` if a Prefect server answers ``GET {api_url}/health``.

    Raises:
        PrefectApiUnavailableError: ``api_url`` is unset or the server does not answer; the
            message says how to start one.
    """
    if not api_url:
        raise PrefectApiUnavailableError(
            "PREFECT_API_URL is not set, so Prefect would serve into a temporary server with no "
            f"scheduler and no UI, where schedules never fire. {_HOW_TO_START}"
        )
    health = f"{api_url.rstrip('/')}/health"
    try:
        status = _health_status(api_url, timeout_s)
    except (httpx.HTTPError, ValueError) as exc:
        raise PrefectApiUnavailableError(
            f"no Prefect server answers at PREFECT_API_URL={api_url} ({health}: {exc}). "
            f"{_HOW_TO_START}"
        ) from exc
    if status != 200:
        raise PrefectApiUnavailableError(
            f"the Prefect server at PREFECT_API_URL={api_url} is not healthy ({health} answered "
            f"HTTP {status}). {_HOW_TO_START}"
        )
    return api_url

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
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

__all__ = ["STACK_FILE", "api_is_healthy", "stack_api_url", "use_running_server"]

STACK_FILE = "stack.json"
_HEALTH_TIMEOUT_S = 2.0


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


def api_is_healthy(api_url: str, timeout_s: float = _HEALTH_TIMEOUT_S) -> bool:
    """Whether ``<api_url>/health`` answers 200 now."""
    try:
        with urllib.request.urlopen(f"{api_url}/health", timeout=timeout_s) as response:
            return response.status == 200
    except (OSError, ValueError):  # URLError, refused, timeout, a malformed URL
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

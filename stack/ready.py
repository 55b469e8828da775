"""milkprice's own readiness checks of the stacks' programs: each returns ``() -> bool``.

supervisord knows whether a process runs, not whether it answers; these say when a program is
usable: the Prefect API and MLflow answer ``/health``, the S3 endpoint and PostgreSQL answer, the
Dask scheduler has its workers, the Prefect workers are online in their pool, a serving process
has polled its deployment.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

__all__ = [
    "Check",
    "dask_workers",
    "deployment_polled",
    "http_ok",
    "pool_workers_online",
    "postgres_ready",
]

Check = Callable[[], bool]
_TIMEOUT_S = 3


def _get_json(url: str, body: object | None = None) -> object | None:
    """The JSON answer of ``GET url`` (``POST`` with ``body``), or None when nothing answers."""
    try:
        if body is None:
            response = httpx.get(url, timeout=_TIMEOUT_S)  # loopback
        else:
            response = httpx.post(url, json=body, timeout=_TIMEOUT_S)
        response.raise_for_status()
        return response.json() if response.content else None
    except (httpx.HTTPError, ValueError):
        return None


def http_ok(url: str) -> Check:
    """Ready when ``GET url`` answers HTTP 200 (Prefect ``/api/health``, MLflow ``/health``)."""

    def ready() -> bool:
        try:
            return httpx.get(url, timeout=_TIMEOUT_S).status_code == 200
        except (httpx.HTTPError, ValueError):
            return False

    return ready


def postgres_ready(port: int) -> Check:
    """Ready when the PostgreSQL server on 127.0.0.1:``port`` answers ``SELECT 1``."""

    def ready() -> bool:
        from stack.postgres import wait_ready  # noqa: PLC0415 - psycopg2 on demand

        try:
            wait_ready(port, timeout_s=1)
        except TimeoutError:
            return False
        return True

    return ready


def dask_workers(address: str, count: int) -> Check:
    """Ready when the Dask scheduler at ``address`` has at least ``count`` workers."""

    def ready() -> bool:
        from distributed import Client  # noqa: PLC0415 - [cluster] extra

        try:
            with Client(address, timeout=5, set_as_default=False) as client:
                return len(client.scheduler_info()["workers"]) >= count
        except (OSError, TimeoutError):
            return False

    return ready


def pool_workers_online(api_url: str, pool: str, names: set[str]) -> Check:
    """Ready when every worker in ``names`` is ONLINE in work pool ``pool``."""

    def ready() -> bool:
        found = _get_json(f"{api_url}/work_pools/{pool}/workers/filter", body={})
        if not isinstance(found, list):
            return False
        online = {
            w.get("name") for w in found if isinstance(w, dict) and w.get("status") == "ONLINE"
        }
        return names <= online

    return ready


def deployment_polled(api_url: str, name: str, since: float) -> Check:
    """Ready when a serving process has polled deployment ``name`` since ``since`` (epoch s)."""

    def ready() -> bool:
        found = _get_json(f"{api_url}/deployments/name/{name}")
        if not isinstance(found, dict) or not found.get("last_polled"):
            return False
        polled = datetime.fromisoformat(str(found["last_polled"]).replace("Z", "+00:00"))
        return polled.timestamp() >= since and found.get("status") == "READY"

    return ready

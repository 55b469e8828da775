"""Flows fanned out on a Dask cluster: checks first, then prefect-dask's task runner.

Such a flow needs a reachable scheduler with workers and a Prefect API the workers can report
to. A task on a Dask worker creates and updates its own task run through the Prefect API named in
the caller's settings (prefect-dask ships the settings context with each task). A temporary
in-process server would exist on the caller's machine only, so a real server is required:
``PREFECT_API_URL`` (``make up`` starts one).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from orchestration.prefect_server import PrefectApiUnavailableError, check_prefect_api

if TYPE_CHECKING:
    from prefect_dask import DaskTaskRunner

__all__ = ["DaskUnavailableError", "check_cluster", "dask_task_runner"]

_CONNECT_TIMEOUT_S = 20.0


class DaskUnavailableError(RuntimeError):
    """The scheduler does not answer, has no worker, or the workers have no Prefect API."""


def _check_prefect_api() -> str:
    # The CLI imports this module for DaskUnavailableError: Prefect loads on use only.
    from prefect.settings import get_current_settings  # noqa: PLC0415  (Prefect, on use)

    api_url = get_current_settings().api.url
    if not api_url:
        raise DaskUnavailableError(
            "PREFECT_API_URL is not set: tasks on Dask workers report to the Prefect API, and a "
            "temporary server exists on this machine only. Start one (`make up`, or `prefect "
            "server start`) and set PREFECT_API_URL"
        )
    try:
        return check_prefect_api(api_url)
    except PrefectApiUnavailableError as exc:
        raise DaskUnavailableError(str(exc)) from exc


def check_cluster(address: str, timeout_s: float = _CONNECT_TIMEOUT_S) -> int:
    """Return how many workers the scheduler at ``address`` has; fail when none can run tasks.

    Raises:
        DaskUnavailableError: the scheduler does not answer within ``timeout_s``, has no
            worker, or ``PREFECT_API_URL`` is unset or unhealthy; the message says what to start.
    """
    from distributed import Client  # noqa: PLC0415 - the cluster extra

    _check_prefect_api()
    try:
        with Client(address, timeout=timeout_s) as client:
            workers = len(client.scheduler_info(n_workers=-1)["workers"])
    except (OSError, TimeoutError) as exc:
        raise DaskUnavailableError(
            f"no Dask scheduler answers at {address} ({exc}); start one with `dask scheduler` "
            "(and `dask worker ADDRESS`), or unset --dask-address/MILKPRICE_DASK_ADDRESS"
        ) from exc
    if workers == 0:
        raise DaskUnavailableError(
            f"the Dask scheduler at {address} has no worker: its tasks would wait forever; "
            f"start one with `dask worker {address}`"
        )
    return workers


def dask_task_runner(address: str) -> DaskTaskRunner:
    """prefect-dask's task runner on the existing cluster at ``address``, checked first."""
    from prefect_dask import DaskTaskRunner  # noqa: PLC0415 - the cluster extra

    check_cluster(address)
    return DaskTaskRunner(address=address)

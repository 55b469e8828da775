"""Serving: every deployment of :mod:`orchestration.deployments` in one long-running process.

Serving needs a real Prefect server (``make up``, or ``prefect server start``): without
``PREFECT_API_URL`` Prefect would start a temporary server with no scheduler and no UI, where
schedules never fire. :func:`check_prefect_api` refuses that before anything is served.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from orchestration.deployments import DEPLOYMENTS, DeploymentBuilder, train_milk_model_deployment
from orchestration.prefect_server import PrefectApiUnavailableError, check_prefect_api

__all__ = ["serve_all", "serve_deployments", "serve_training"]


def _configured_api_url() -> str | None:
    """PREFECT_API_URL as Prefect reads it (environment, else the active Prefect profile)."""
    from prefect.settings import get_current_settings  # noqa: PLC0415 - heavy import

    return get_current_settings().api.url


def serve_deployments(
    builders: Sequence[DeploymentBuilder], *, pause_on_shutdown: bool = False
) -> int:
    """Serve ``builders``' deployments until interrupted; return the exit status.

    Only one ``serve`` per process: it blocks, so every deployment goes into this one call.
    Schedules stay active on shutdown unless ``pause_on_shutdown``.
    """
    try:
        api_url = check_prefect_api(_configured_api_url())
    except PrefectApiUnavailableError as exc:
        print(f"error: cannot serve: {exc}", file=sys.stderr)
        return 2
    from prefect import serve  # noqa: PLC0415 - heavy import, only when serving

    from orchestration.crash_detection import (  # noqa: PLC0415 - Prefect client, only here
        enable_heartbeats,
        ensure_crash_detection,
    )

    # A killed serve must not leave its runs Running forever: the flow-run subprocesses inherit
    # the heartbeat setting, and the server's automation marks a silent run Crashed.
    enable_heartbeats()
    ensure_crash_detection()
    deployments = [build() for build in builders]
    names = ", ".join(f"{d.flow_name}/{d.name}" for d in deployments)
    print(f"serving {names} into {api_url}", flush=True)
    serve(*deployments, pause_on_shutdown=pause_on_shutdown)
    return 0


def serve_training(*, pause_on_shutdown: bool = False) -> int:
    """Serve ``train-milk-model`` alone (``python orchestration/flows/main_flow.py``)."""
    return serve_deployments([train_milk_model_deployment], pause_on_shutdown=pause_on_shutdown)


def serve_all(*, pause_on_shutdown: bool = False) -> int:
    """Serve every deployment of :data:`DEPLOYMENTS` together (``milkprice serve``)."""
    return serve_deployments(DEPLOYMENTS, pause_on_shutdown=pause_on_shutdown)

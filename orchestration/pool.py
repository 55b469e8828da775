"""The deployments on a Prefect work pool, for workers on any number of machines.

``milkprice serve`` executes every run in one process on one machine. Past that, the same
deployments (:data:`orchestration.deployments.POOL_DEPLOYMENTS`: same schedules, triggers,
parameters) go to a work pool of type ``process``, and workers started anywhere the package is
installed execute their runs::

    milkprice deploy --pool milkprice-pool        # once, and after changing a definition
    prefect worker start --pool milkprice-pool --name worker-1 --type process

Nothing is built or pushed: the entrypoints are module paths of the installed package
(``orchestration.flows.main_flow.main``), so a worker imports the flow as installed, with no
git clone, image or storage block. The worker's environment (``PREFECT_API_URL``,
``MLFLOW_TRACKING_URI``, the lake's settings) is the flow runs' environment.
"""

from __future__ import annotations

# Prefect at module level: only `milkprice deploy` imports this module, and it needs Prefect.
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound
from prefect.settings import get_current_settings
from prefect.workers.process import ProcessWorker

from milkprice.settings import get_settings
from orchestration.deployments import POOL_DEPLOYMENTS
from orchestration.prefect_server import check_prefect_api

__all__ = ["POOL_TYPE", "WorkPoolTypeError", "default_pool", "deploy_to_pool", "ensure_work_pool"]

POOL_TYPE = "process"


class WorkPoolTypeError(ValueError):
    """A work pool of that name exists, but of a type whose workers cannot run our flows."""


def ensure_work_pool(pool: str) -> bool:
    """Create the ``process`` work pool ``pool`` unless it exists; return whether it was created.

    Raises:
        WorkPoolTypeError: ``pool`` exists with another type.
    """
    with get_client(sync_client=True) as client:
        try:
            existing = client.read_work_pool(pool)
        except ObjectNotFound:
            existing = None
        if existing is None:
            try:
                client.create_work_pool(
                    WorkPoolCreate(
                        name=pool,
                        type=POOL_TYPE,
                        description="milkprice: training, forecast, monitoring and backfill "
                        "runs for `prefect worker start --type process` workers.",
                        # The template `prefect work-pool create --type process` would use.
                        base_job_template=ProcessWorker.get_default_base_job_template(),
                    )
                )
                return True
            except ObjectAlreadyExists:  # another `deploy` created it meanwhile
                existing = client.read_work_pool(pool)
    if existing.type != POOL_TYPE:
        raise WorkPoolTypeError(
            f"work pool {pool!r} exists with type {existing.type!r}, not {POOL_TYPE!r}: "
            "choose another --pool (or MILKPRICE_WORK_POOL) or delete that pool"
        )
    return False


def deploy_to_pool(pool: str) -> list[str]:
    """Create the ``process`` pool if missing and register every pool deployment on it.

    A deployment already registered (by ``milkprice serve`` or an earlier deploy) is updated
    in place and moves to the pool.

    Returns:
        The deployments' full names (``flow/deployment``), in definition order.

    Raises:
        orchestration.prefect_server.PrefectApiUnavailableError: no Prefect server answers at
            ``PREFECT_API_URL`` (a temporary one would forget the deployments at exit).
        WorkPoolTypeError: ``pool`` exists with another type.
    """
    check_prefect_api(get_current_settings().api.url)
    ensure_work_pool(pool)
    names = []
    for build in POOL_DEPLOYMENTS:
        deployment = build(pooled=True)
        deployment.apply(work_pool_name=pool)
        names.append(f"{deployment.flow_name}/{deployment.name}")
    return names


def default_pool() -> str:
    """The pool named by the settings (MILKPRICE_WORK_POOL, default ``milkprice-pool``)."""
    return get_settings().work_pool

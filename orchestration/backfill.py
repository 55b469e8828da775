"""Backfills: one run of the training flow per month, in parallel, skipping months already done.

Prefect OSS has no backfill command (Airflow and Dagster do); this is one. Two ways to run:

- in this process (default): a thread pool of ``concurrency`` workers, each calling the flow
  ``main(...)`` for one month. Every month is its own top-level flow run (named
  ``backfill-YYYY-MM``, tagged ``backfill``), exactly like a scheduled run of that month, so the
  UI, retries and filters treat both alike; a parent flow would add a level that exists for
  backfills only. Without ``PREFECT_API_URL`` the threads share one temporary server.
- on the deployment (``via_deployment``): ``run_deployment`` creates one run per month on
  ``train-milk-model`` (visible in the UI, executed by the serving process) and this process
  follows them to the end. The deployment's concurrency limit (1) decides how many execute at
  once; ``concurrency`` caps how many are in flight.
- on a Dask cluster (``dask_address``): the parent flow ``milk-price-backfill-dask``
  (:mod:`orchestration.flows.backfill_dask_flow`) runs one task per month on the cluster's
  workers through prefect-dask; as many months train at once as the workers have threads.

Planning (what is done, fingerprints) and the result rows live in :mod:`milkprice.pipeline.backfill`.
"""

from __future__ import annotations

import contextvars
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

from prefect import tags
from prefect.client.orchestration import get_client
from prefect.deployments import run_deployment
from prefect.exceptions import ObjectNotFound
from prefect.settings import get_current_settings, temporary_settings

from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.pipeline.backfill import (
    COMPLETED,
    FAILED,
    SKIPPED,
    BackfillRow,
    MonthPlan,
    find_completed_run,
    idempotency_key,
    plan_backfill,
    scheduled_time_for,
)
from milkprice.pipeline.training_run import code_version
from milkprice.settings import Settings, Source
from orchestration.dask_cluster import dask_task_runner
from orchestration.flows.backfill_dask_flow import backfill_on_dask
from orchestration.flows.main_flow import main
from orchestration.names import TRAIN_DEPLOYMENT

__all__ = [
    "DEPLOYMENT_NAME",
    "BackfillReport",
    "DeploymentNotServedError",
    "run_backfill",
    "run_in_process",
    "run_on_dask",
    "run_via_deployment",
]

DEPLOYMENT_NAME = TRAIN_DEPLOYMENT
_POLL_S = 2.0
_MAX_ATTEMPTS = 20  # new idempotency keys tried when earlier runs of a key ended badly

RowCallback = Callable[[BackfillRow], None]


class DeploymentNotServedError(RuntimeError):
    """The deployment does not exist, or no process serves it (its runs would never start)."""


@dataclass(frozen=True)
class BackfillReport:
    """Every month of a backfill, oldest first, as the result table shows it."""

    rows: list[BackfillRow]

    @property
    def failed(self) -> list[Month]:
        """Months whose run did not complete."""
        return [row.month for row in self.rows if row.failed]


def _failed_row(month: Month, exc: BaseException) -> BackfillRow:
    return BackfillRow(month, FAILED, detail=f"{type(exc).__name__}: {exc}")


def _train_month(month: Month, source: Source, force: bool) -> BackfillRow:
    try:
        with tags("backfill"):
            result = main.with_options(flow_run_name=f"backfill-{month}")(
                source=source, year=month.year, month=month.month, force=force
            )
    except Exception as exc:  # the month failed; the others go on
        return _failed_row(month, exc)
    return BackfillRow.from_result(result)


def _start_prefect_client() -> None:
    """Start the temporary server (if one is needed) once, before threads race to start it.

    Its default start-up timeout (20 s) is short for a busy 2-core machine; a longer one only
    applies when the user has not chosen a longer one.
    """
    timeout = max(get_current_settings().server.ephemeral.startup_timeout_seconds, 90)
    with (
        temporary_settings(updates={"server.ephemeral.startup_timeout_seconds": timeout}),
        get_client(sync_client=True) as client,
    ):
        client.api_healthcheck()


def _collect(futures: list[Future[BackfillRow]], on_row: RowCallback | None) -> list[BackfillRow]:
    """Rows in month order, each reported as soon as it and the months before it are done."""
    rows = []
    for future in futures:
        row = future.result()
        rows.append(row)
        if on_row is not None:
            on_row(row)
    return rows


def run_in_process(
    plans: Sequence[MonthPlan],
    source: Source,
    concurrency: int,
    on_row: RowCallback | None = None,
    *,
    force: bool = False,
) -> list[BackfillRow]:
    """Train the months of ``plans`` not marked done, ``concurrency`` at a time, in threads.

    ``force`` reaches the flow too: without it the flow would skip a month already done.
    """
    todo = [plan for plan in plans if not plan.skip]
    if not todo:
        return []
    _start_prefect_client()
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        # Each worker runs in a copy of this thread's context, so Prefect's settings context
        # (a profile, `temporary_settings`) holds there too: new threads start with none.
        futures = [
            pool.submit(contextvars.copy_context().run, _train_month, plan.month, source, force)
            for plan in todo
        ]
        return _collect(futures, on_row)


def _check_deployment_served(name: str) -> None:
    with get_client(sync_client=True) as client:
        try:
            deployment = client.read_deployment_by_name(name)
        except ObjectNotFound:
            raise DeploymentNotServedError(
                f"deployment {name} does not exist on the Prefect server: start `milkprice serve` "
                "(or `make up`), or deploy to a work pool (`milkprice deploy --pool NAME`) first"
            ) from None
    status = getattr(deployment.status, "value", deployment.status)
    if status != "READY":
        raise DeploymentNotServedError(
            f"no process serves deployment {name} (status {status}): its runs would wait "
            "forever; start `milkprice serve` (or `make up`), or a worker of its work pool "
            "(`prefect worker start --pool NAME --type process`) first"
        )


@dataclass(frozen=True)
class _Runs:
    """What every month's run of one backfill on the deployment shares."""

    source: Source
    zone: tzinfo  # of the monthly schedule each run stands in for
    nonce: str | None  # set with force: new idempotency keys, and the flow trains anyway
    started: datetime

    @property
    def force(self) -> bool:
        return self.nonce is not None


def _run_month(plan: MonthPlan, runs: _Runs, key: str, timeout: float | None) -> Any:
    """``run_deployment`` for the month's run: created once per key, found again after that.

    ``timeout=0`` returns the run at once; ``None`` waits until it ends (Prefect polls it). Only
    the first call links the run to a backfill flow as its subflow: the wait adds no task run.
    """
    return run_deployment(
        DEPLOYMENT_NAME,
        parameters={
            "source": runs.source,
            "year": plan.month.year,
            "month": plan.month.month,
            "force": runs.force,
        },
        scheduled_time=scheduled_time_for(plan.month, runs.zone),
        flow_run_name=f"backfill-{plan.month}",
        idempotency_key=key,
        tags=["backfill"],
        timeout=timeout,
        poll_interval=_POLL_S,
        as_subflow=timeout == 0,
    )


def _create_run(plan: MonthPlan, runs: _Runs) -> tuple[Any, str]:
    """Create (or find, by idempotency key) the month's run on the deployment; run and key.

    A run found by its key that ended badly before this backfill started would be returned
    again forever: such a key gets a retry suffix instead, so a failed month can be retried.
    """
    for attempt in range(_MAX_ATTEMPTS):
        retry = f"retry{attempt}" if attempt else None
        suffix = ":".join(part for part in (runs.nonce, retry) if part)
        key = idempotency_key(plan, runs.source, suffix or None)
        flow_run = _run_month(plan, runs, key, timeout=0)
        # The plan found no complete MLflow run for this key's month, data and code, so an
        # earlier run that already ended (failed, or completed into a store since lost) is stale.
        stale = (
            flow_run.created is not None
            and flow_run.created < runs.started
            and flow_run.state is not None
            and flow_run.state.is_final()
        )
        if not stale:
            return flow_run, key
    raise RuntimeError(f"{plan.month}: {_MAX_ATTEMPTS} earlier runs of this month ended badly")


def _follow_run(settings: Settings, plan: MonthPlan, runs: _Runs) -> BackfillRow:
    try:
        flow_run, key = _create_run(plan, runs)
        if flow_run.state is None or not flow_run.state.is_final():
            # The same key finds the same run: run_deployment waits for it to end.
            flow_run = _run_month(plan, runs, key, timeout=None)
    except Exception as exc:
        return _failed_row(plan.month, exc)
    state = flow_run.state
    if state.is_completed():
        done = (
            find_completed_run(settings, plan.month, plan.fingerprint, plan.code_version)
            if plan.fingerprint
            else None
        )
        # "Skipped": the flow found the month done meanwhile (another run of it finished).
        ended = SKIPPED if state.name == SKIPPED else COMPLETED
        return BackfillRow.from_run(plan.month, ended, done, f"flow run {flow_run.name}")
    return BackfillRow.from_run(
        plan.month, state.name, None, f"flow run {flow_run.name}: {state.message or state.name}"
    )


def run_via_deployment(
    settings: Settings,
    plans: Sequence[MonthPlan],
    source: Source,
    concurrency: int,
    *,
    force: bool = False,
    on_row: RowCallback | None = None,
) -> list[BackfillRow]:
    """Create runs on ``train-milk-model`` for the months to do and follow them to the end."""
    todo = [plan for plan in plans if not plan.skip]
    if not todo:
        return []
    _check_deployment_served(DEPLOYMENT_NAME)
    nonce = f"force-{uuid.uuid4().hex[:12]}" if force else None
    runs = _Runs(source, settings.zone, nonce, datetime.now(UTC))
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="backfill") as pool:
        futures = [
            pool.submit(contextvars.copy_context().run, _follow_run, settings, plan, runs)
            for plan in todo
        ]
        return _collect(futures, on_row)


def run_on_dask(
    plans: Sequence[MonthPlan], source: Source, address: str, on_row: RowCallback | None = None
) -> list[BackfillRow]:
    """Train the months of ``plans`` not marked done as tasks on the Dask cluster at ``address``.

    The rows come back together when the parent flow ends (``on_row`` then sees them in order).

    Raises:
        orchestration.dask_cluster.DaskUnavailableError: no scheduler, no worker, or no
            Prefect API the workers can reach.
    """
    todo = [plan for plan in plans if not plan.skip]
    if not todo:
        return []
    runner = dask_task_runner(address)
    with tags("backfill"):
        rows = backfill_on_dask.with_options(task_runner=runner)(
            months=[str(plan.month) for plan in todo], source=source
        )
    for row in rows:
        if on_row is not None:
            on_row(row)
    return rows


def run_backfill(
    settings: Settings,
    months: Sequence[Month],
    source: Source,
    *,
    concurrency: int = 1,
    force: bool = False,
    via_deployment: bool = False,
    dask_address: str | None = None,
    on_planned: Callable[[list[MonthPlan]], None] | None = None,
    on_row: RowCallback | None = None,
) -> BackfillReport:
    """Plan ``months`` (skip those done unless ``force``), run the rest, return every row.

    The rest runs in this process, on the ``train-milk-model`` deployment (``via_deployment``)
    or as tasks on the Dask cluster at ``dask_address``.
    """
    if concurrency < 1:
        raise ValueError(f"--concurrency must be at least 1, got {concurrency}")
    if via_deployment and dask_address:
        raise ValueError("choose --via-deployment or --dask-address, not both")
    plans = plan_backfill(
        settings, Lake.from_settings(settings, source), months, code_version(), force=force
    )
    if on_planned is not None:
        on_planned(plans)
    skipped = [BackfillRow.skipped(plan) for plan in plans if plan.skip]
    for row in skipped:
        if on_row is not None:
            on_row(row)
    if via_deployment:
        ran = run_via_deployment(settings, plans, source, concurrency, force=force, on_row=on_row)
    elif dask_address:
        ran = run_on_dask(plans, source, dask_address, on_row)
    else:
        ran = run_in_process(plans, source, concurrency, on_row, force=force)
    return BackfillReport(sorted([*skipped, *ran], key=lambda row: row.month))

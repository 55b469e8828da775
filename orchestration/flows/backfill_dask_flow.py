"""A backfill's months as tasks on a Dask cluster: the flow ``milk-price-backfill-dask``.

One task per month (never per series) runs the whole monthly training run of
:func:`milkprice.pipeline.training_run.run_training` (read, check, train, log to MLflow,
register, promotion gate) on a Dask worker. The month's run is a task of this parent flow, not
a ``milk-price-training`` flow run of its own: a flow run started inside a task on a worker would
read its settings from the worker's environment, while these tasks get the caller's settings
as an argument, so a backfill trains with the seed, trials, MLflow store and lake of whoever
started it. The workers must reach those stores (shared MLflow database and S3 lake on a real
cluster; an SQLite file and a local folder only when every worker is on this machine).

The flow ends with the result table as an artifact and, when a month took the ``champion``
alias, one ``milkprice.champion.promoted`` event for the newest promotion (the daily forecast
then runs once, with the champion the backfill left). Run it through
:func:`orchestration.backfill.run_on_dask` (``milkprice backfill --dask-address``).
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from milkprice.months import Month
from milkprice.pipeline.backfill import FAILED, BackfillRow
from milkprice.pipeline.training_run import TrainingResult, run_training
from milkprice.settings import Settings, Source, get_settings
from orchestration.events import emit_champion_promoted

__all__ = ["FLOW_NAME", "backfill_on_dask", "trained_month"]

FLOW_NAME = "milk-price-backfill-dask"
_COLUMNS = ("month", "state", "val RMSE", "naive RMSE", "version", "promoted", "detail")


@task(
    name="trained-month",
    task_run_name="backfill-{month}",
    tags=["backfill"],
    cache_policy=NO_CACHE,  # a training run must run: its inputs say nothing of the lake
)
def trained_month(settings: Settings, source: Source, month: Month) -> TrainingResult:
    """The month's training run, logged, registered and through the promotion gate."""
    return run_training(settings, source, month.year, month.month)


def _row(month: Month, future: object) -> BackfillRow:
    try:
        return BackfillRow.from_result(future.result())  # type: ignore[attr-defined]
    except Exception as exc:  # the month failed; the table says why, the others go on
        return BackfillRow(month, FAILED, detail=f"{type(exc).__name__}: {exc}")


def _announce_champion(settings: Settings, rows: list[BackfillRow], source: Source) -> None:
    promoted = [row for row in rows if row.promoted]
    if not promoted:
        return
    newest = promoted[-1]
    emit_champion_promoted(settings, newest.version, newest.month, source)


@flow(name=FLOW_NAME, log_prints=True)
def backfill_on_dask(months: list[str], source: Source = "local") -> list[BackfillRow]:
    """Train every month of ``months`` (YYYY-MM), one task each; a row per month, in order."""
    settings = get_settings()
    wanted = [Month.parse(text) for text in months]
    futures = [trained_month.submit(settings, source, month) for month in wanted]
    rows = [_row(month, future) for month, future in zip(wanted, futures, strict=True)]
    create_table_artifact(
        table=[dict(zip(_COLUMNS, [*row.as_cells(), row.detail], strict=True)) for row in rows],
        key="milk-price-backfill",
        description=f"Backfill of {len(rows)} month(s) on Dask, "
        f"{sum(row.failed for row in rows)} failed",
    )
    _announce_champion(settings, rows, source)
    logger = get_run_logger()
    for row in rows:
        logger.info("%s: %s %s", row.month, row.state, row.detail)
    return rows

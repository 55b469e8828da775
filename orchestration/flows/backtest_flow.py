"""The backtest as a Prefect flow ``milk-price-backtest``: one task per month, on a Dask cluster.

Each task trains and scores one whole month (:func:`milkprice.pipeline.backtest.
backtest_month_from_lake`): coarse on purpose, a few tasks per backtest, never one per series,
which would flood the Prefect API. A task gets the lake's address and the month, reads its own
13 months on the worker (local path or S3) and returns the month's scores and rows; the flow
puts them in month order and publishes the report (files in the lake, one MLflow run, a table
artifact). With the same seed the numbers are those of the sequential ``milkprice backtest``
(LightGBM is deterministic with its threads fixed).

Run it on a cluster with :func:`backtest_on_dask` (``milkprice backtest --dask-address``);
called as it is, the flow runs its tasks in threads here.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.pipeline.backtest import (
    MonthBacktest,
    PublishedBacktest,
    assemble_report,
    backtest_month_from_lake,
    check_partitions,
    parse_models,
    publish_backtest,
)
from milkprice.settings import Settings, Source, get_settings
from orchestration.dask_cluster import dask_task_runner

__all__ = ["FLOW_NAME", "backtest", "backtest_on_dask", "month_backtest"]

FLOW_NAME = "milk-price-backtest"


# NO_CACHE: the inputs (a lake, a month) say nothing about the lake's contents, and results
# are not persisted; a cache key would only cost hashing.
@task(name="month-backtest", task_run_name="backtest-{month}", cache_policy=NO_CACHE)
def month_backtest(lake: Lake, month: Month, seed: int, n_trials: int) -> MonthBacktest:
    """One month trained on the 12 before it and scored, its window read from the lake here."""
    return backtest_month_from_lake(lake, month, seed=seed, n_trials=n_trials)


@task(name="published-backtest", cache_policy=NO_CACHE)
def published_backtest(
    settings: Settings, lake: Lake, months: list[MonthBacktest], models: tuple[str, ...]
) -> PublishedBacktest:
    """The report's files written to the lake and its MLflow run logged."""
    return publish_backtest(settings, lake, assemble_report(months, models))


@flow(name=FLOW_NAME, log_prints=True)
def backtest(
    start: str, end: str, source: Source = "local", models: str = "model,naive,mean"
) -> PublishedBacktest:
    """Backtest ``start..end`` (YYYY-MM): each month trained on the 12 before it, scored."""
    settings = get_settings()
    lake = Lake.from_settings(settings, source)
    months = month_range(Month.parse(start), Month.parse(end))
    chosen = parse_models(models)
    check_partitions(lake, months)
    futures = [month_backtest.submit(lake, m, settings.seed, settings.n_trials) for m in months]
    results = [future.result() for future in futures]
    published = published_backtest(settings, lake, results, chosen)
    table = published.report.table()
    create_table_artifact(
        table=table.round(4).astype(object).where(table.notna(), None).to_dict("records"),
        key="milk-price-backtest",
        description=f"Backtest {start}..{end}: per month, mean and worst (MLflow run "
        f"{published.run_id})",
    )
    for uri in published.uris.values():
        get_run_logger().info("backtest %s..%s: wrote %s", start, end, uri)
    return published


def backtest_on_dask(
    address: str, source: Source, first: Month, last: Month, models: tuple[str, ...]
) -> PublishedBacktest:
    """Run :func:`backtest` with its month tasks on the Dask cluster at ``address``.

    Raises:
        orchestration.dask_cluster.DaskUnavailableError: no scheduler, no worker, or no
            Prefect API the workers can reach.
    """
    runner = dask_task_runner(address)
    return backtest.with_options(task_runner=runner)(
        start=str(first), end=str(last), source=source, models=",".join(models)
    )

"""``milkprice backtest`` and ``milkprice accuracy``: how good the forecasts are, over time.

Neither needs an orchestrator (the backtest trains in this process or a process pool; the
accuracy report reads stored forecasts), so they live in the core; the console script
(:mod:`milkprice_cli.app`) mounts them beside the Prefect commands, giving ``backtest`` its
Dask runner (:func:`make_backtest_command`), which lives in ``orchestration/``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.settings import Source, get_settings
from milkprice_cli.data import (
    SourceOption,
    console,
    fail,
    parse_month,
    progress_bar,
    reporting_user_errors,
)

if TYPE_CHECKING:
    import pandas as pd

    from milkprice.pipeline.backtest import PublishedBacktest

__all__ = ["ClusterBacktest", "accuracy_command", "backtest_command", "make_backtest_command"]


def _backtest_table(table: pd.DataFrame) -> Table:
    shown = [
        ("month", "month"),
        ("rmse_ratio", "RMSE/naive"),
        ("mae_ratio", "MAE/naive"),
        ("coverage_80", "cover 80%"),
        ("coverage_95", "cover 95%"),
        ("interval_score_80", "int. score 80"),
    ]
    view = Table(title="backtest (model vs naive, same rows)")
    columns = [(key, title) for key, title in shown if key in table.columns]
    for key, title in columns:
        view.add_column(title, justify="left" if key == "month" else "right", no_wrap=True)
    for row in table.to_dict("records"):
        label = str(row["month"]) + ("*" if row.get("short_window") is True else "")
        cells = [label] + [f"{row[key]:.3f}" for key, _ in columns[1:]]
        view.add_row(*cells, style="bold" if row["month"] in {"mean", "worst"} else None)
    return view


# Runs a backtest on a Dask cluster and publishes it: (address, source, first, last, models).
# The orchestration layer provides it (a Prefect flow on prefect-dask); the core has none.
ClusterBacktest = Callable[[str, Source, Month, Month, tuple[str, ...]], "PublishedBacktest"]


def make_backtest_command(on_cluster: ClusterBacktest | None = None) -> Callable[..., None]:
    """The ``backtest`` command; ``on_cluster`` runs it when a Dask address is given."""

    def backtest_command(  # noqa: PLR0917 - one parameter per CLI option
        start: Annotated[str, typer.Option("--start", help="First month to forecast, YYYY-MM.")],
        end: Annotated[str, typer.Option("--end", help="Last month to forecast, YYYY-MM.")],
        source: SourceOption = None,
        models: Annotated[
            str, typer.Option(help="Forecasts to score, comma-separated: model, naive, mean.")
        ] = "model,naive,mean",
        jobs: Annotated[
            int, typer.Option(min=1, help="Months trained at the same time (local processes).")
        ] = 1,
        dask_address: Annotated[
            str | None,
            typer.Option(
                "--dask-address",
                help="Dask scheduler (tcp://HOST:PORT): one task per month on its workers, "
                "through Prefect (needs PREFECT_API_URL). Default: MILKPRICE_DASK_ADDRESS; "
                "unset: this machine.",
            ),
        ] = None,
    ) -> None:
        """Rolling-origin evaluation: each month trained on the 12 before it, as the flow does.

        Prints a table per month with the mean and the worst month (* = fewer than 12 training
        months), and writes every forecast row (parquet), the table (CSV) and a plot of the
        ratios to naive under backtests/START_END/ in the lake, all logged to one MLflow run.
        With a Dask address the months are trained on the cluster's workers, same numbers.
        """
        from milkprice.pipeline.backtest import (  # noqa: PLC0415 - imports LightGBM and MLflow
            parse_models,
            publish_backtest,
            run_backtest,
        )

        first, last = parse_month("--start", start), parse_month("--end", end)
        if last < first:
            fail(f"--end {last} is before --start {first}")
        out = console()
        settings = get_settings()
        address = dask_address or settings.dask_address
        if address and on_cluster is None:
            fail("--dask-address needs the full milkprice command (orchestration installed)")
        with reporting_user_errors():
            chosen_models = parse_models(models)
            chosen_source: Source = source or settings.source
            months = month_range(first, last)
            if address and on_cluster is not None:
                if jobs > 1:
                    out.print(f"--jobs {jobs} ignored: the Dask workers run the months")
                out.print(f"backtest {first}..{last} on the Dask cluster at {address}")
                published = on_cluster(address, chosen_source, first, last, chosen_models)
            else:
                lake = Lake.from_settings(settings, chosen_source)
                with progress_bar(out) as progress:
                    task = progress.add_task(f"backtest {first}..{last}", total=len(months))

                    def finished(result: object) -> None:
                        progress.advance(task)

                    report = run_backtest(
                        lake,
                        months,
                        seed=settings.seed,
                        n_trials=settings.n_trials,
                        jobs=jobs,
                        models=chosen_models,
                        on_month=finished,
                    )
                published = publish_backtest(settings, lake, report)
        out.print(_backtest_table(published.report.table()))
        out.print("RMSE, MAE, widths and interval scores of every forecast: the table.csv below")
        for uri in published.uris.values():
            out.print(f"  {uri}", soft_wrap=True)
        out.print(
            f"MLflow run {published.run_id} (experiment {settings.mlflow_experiment})",
            soft_wrap=True,
        )

    return backtest_command


# The command of a core-only install: this machine only.
backtest_command = make_backtest_command()


def accuracy_command(
    source: SourceOption = None,
    by: Annotated[
        list[str] | None,
        typer.Option(help="Also group by Estado, Tipo, Canal or cutoff (repeat)."),
    ] = None,
) -> None:
    """Accuracy over time of every stored forecast, beside naive from the same cut-off.

    Forecast dates not published yet are counted as pending; dates a city did not report, as
    unreported.
    """
    from milkprice.monitoring.accuracy import accuracy_over_time  # noqa: PLC0415

    settings = get_settings()
    with reporting_user_errors():
        table = accuracy_over_time(
            Lake.from_settings(settings, source or settings.source), by or []
        )
    view = Table(title="accuracy of stored forecasts (model vs naive from the same cut-off)")
    keys = ["month", *(by or [])]
    shown = {
        "scored": "scored",
        "pending": "pending",
        "rmse_ratio": "RMSE/naive",
        "mae_ratio": "MAE/naive",
        "coverage_80": "cover 80%",
    }
    for key in keys:
        view.add_column(key, no_wrap=True)
    for title in shown.values():
        view.add_column(title, justify="right", no_wrap=True)
    for row in table.to_dict("records"):
        cells = [str(row[k]) for k in keys]
        cells += [f"{row[c]:.0f}" if c in {"scored", "pending"} else f"{row[c]:.3f}" for c in shown]
        view.add_row(*cells)
    out = console()
    out.print(view)
    out.print("RMSE, MAE and 95% coverage too: milkprice.monitoring.accuracy.accuracy_over_time")

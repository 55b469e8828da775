"""The full ``milkprice`` command line: ``data`` (from :mod:`milkprice.cli`), ``serve``, ``backfill``.

This is the console script's target (``milkprice = "orchestration.cli:app"``): the ``data``
commands need no orchestrator, so they live in the core's CLI and are mounted here as they are.
Prefect is imported only by the commands that use it, so ``milkprice data ...`` stays quick.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from milkprice.cli import data_app, fail, reporting_user_errors
from milkprice.cli import main as root_callback
from milkprice.months import Month
from milkprice.settings import Source, get_settings

if TYPE_CHECKING:  # milkprice.pipeline.backfill imports MLflow: only the backfill command loads it
    import pandas as pd

    from milkprice.pipeline.backfill import BackfillRow, MonthPlan

__all__ = [
    "accuracy_command",
    "api_command",
    "app",
    "backfill_command",
    "backtest_command",
    "forecast_command",
    "serve_command",
]

app = typer.Typer(
    name="milkprice",
    help="Forecasts of Mexican retail milk prices (SNIIM), retrained every month.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(data_app, name="data")
# The same root options (--version) as the core's CLI.
app.callback(invoke_without_command=True)(root_callback)


def _out() -> Console:
    return Console(highlight=False, markup=False)


@app.command("serve")
def serve_command(
    pause_on_shutdown: Annotated[
        bool,
        typer.Option(
            "--pause-on-shutdown",
            help="Pause the deployments' schedules when this process stops (default: they "
            "stay active and fire as soon as a server serves them again).",
        ),
    ] = False,
) -> None:
    """Serve every deployment (train-milk-model, daily-test, ...) until interrupted.

    Needs a Prefect server: `make up`, or `prefect server start` and PREFECT_API_URL.
    """
    from orchestration.serve import serve_all  # noqa: PLC0415 - imports Prefect

    raise typer.Exit(serve_all(pause_on_shutdown=pause_on_shutdown))


@app.command("api")
def api_command(
    host: Annotated[
        str, typer.Option(help="Address to bind (default loopback only; 0.0.0.0 for all).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    source: Annotated[
        Source | None,
        typer.Option(help="Which lake: local or s3 (default: MILKPRICE_SOURCE, else local)."),
    ] = None,
) -> None:
    """Serve the prediction API (FastAPI on uvicorn) for the champion model until interrupted.

    The model loads in the background (GET /readyz says when); a new champion is picked up
    without a restart (MILKPRICE_API_RELOAD_SECONDS). Docs at http://HOST:PORT/docs.
    """
    import uvicorn  # noqa: PLC0415 - only this command needs the server

    from milkprice.serving.api import create_app  # noqa: PLC0415 - imports MLflow

    uvicorn.run(
        create_app(get_settings(), source),
        host=host,
        port=port,
        workers=1,
        log_level="warning",
    )


def _parse_month(option: str, text: str) -> Month:
    try:
        return Month.parse(text)
    except ValueError as exc:
        fail(f"invalid value for {option}: {text!r} ({exc})")


def _result_table(rows: list[BackfillRow]) -> Table:
    table = Table(title="backfill")
    for column in ("month", "state", "val RMSE", "naive RMSE", "version", "promoted"):
        table.add_column(column, justify="left" if column in {"month", "state"} else "right")
    styles = {"Completed": "green", "Skipped": "dim"}
    for row in rows:
        table.add_row(*row.as_cells(), style=styles.get(row.state, "red"))
    return table


@app.command("backfill")
def backfill_command(  # noqa: PLR0917 - one parameter per CLI option
    start: Annotated[str, typer.Option("--start", help="First validation month, YYYY-MM.")],
    end: Annotated[str, typer.Option("--end", help="Last validation month, YYYY-MM.")],
    source: Annotated[
        Source | None,
        typer.Option(help="Which lake: local or s3 (default: MILKPRICE_SOURCE, else local)."),
    ] = None,
    concurrency: Annotated[
        int, typer.Option(min=1, help="Months run at the same time (in flight, via deployment).")
    ] = 1,
    force: Annotated[
        bool,
        typer.Option("--force", help="Run months that already have a complete run, too."),
    ] = False,
    via_deployment: Annotated[
        bool,
        typer.Option(
            "--via-deployment",
            help="Create the runs on the train-milk-model deployment (executed by "
            "`milkprice serve`, visible in the UI) and follow them, instead of running here.",
        ),
    ] = False,
) -> None:
    """Train one run per month from --start to --end, skipping months already done.

    A month is done when MLflow holds a complete run of it for the same data fingerprint and
    code version. Exit code 1 when any month failed.
    """
    first, last = _parse_month("--start", start), _parse_month("--end", end)
    from milkprice.pipeline.backfill import backfill_months  # noqa: PLC0415
    from orchestration.backfill import DeploymentNotServedError, run_backfill  # noqa: PLC0415
    from orchestration.serve import PrefectApiUnavailableError, check_prefect_api  # noqa: PLC0415

    out = _out()
    with reporting_user_errors(DeploymentNotServedError, PrefectApiUnavailableError):
        months = backfill_months(first, last)
        settings = get_settings()
        chosen: Source = source or settings.source
        if via_deployment:
            from prefect.settings import get_current_settings  # noqa: PLC0415

            check_prefect_api(get_current_settings().api.url)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
        ) as progress:
            task = progress.add_task(f"backfill {first}..{last}", total=len(months))

            def planned(plans: list[MonthPlan]) -> None:
                todo = sum(not plan.skip for plan in plans)
                progress.console.print(
                    f"{len(plans)} month(s): {len(plans) - todo} already done, {todo} to run "
                    f"({'on deployment train-milk-model' if via_deployment else 'in process'}, "
                    f"concurrency {concurrency})"
                )

            def finished(row: BackfillRow) -> None:
                progress.advance(task)
                progress.console.print(f"{row.month}: {row.state} {row.detail}".rstrip())

            report = run_backfill(
                settings,
                months,
                chosen,
                concurrency=concurrency,
                force=force,
                via_deployment=via_deployment,
                on_planned=planned,
                on_row=finished,
            )
    out.print(_result_table(report.rows))
    if report.failed:
        details = "; ".join(f"{row.month}: {row.detail}" for row in report.rows if row.failed)
        fail(f"{len(report.failed)} month(s) failed: {details}")
    out.print(f"backfill {first}..{last}: every month complete")


@app.command("forecast")
def forecast_command(
    cutoff: Annotated[
        str | None,
        typer.Option(help="Data cut-off, YYYY-MM-DD (default: the newest date in the lake)."),
    ] = None,
    source: Annotated[
        Source | None,
        typer.Option(help="Which lake: local or s3 (default: MILKPRICE_SOURCE, else local)."),
    ] = None,
    series: Annotated[
        list[str] | None,
        typer.Option(help='A series to plot on its own, "Estado/Ciudad/Tipo/Canal" (repeat).'),
    ] = None,
) -> None:
    """Forecast every series with the champion (the milk-price-forecast flow, run here).

    Writes forecasts/cutoff=.../forecast.parquet, and a CSV and plots under reports/, to the
    lake. Exit code 2 when no champion exists yet (run the training flow first).
    """
    from datetime import date  # noqa: PLC0415

    from milkprice.serving.loader import NoChampionError, resolve_version  # noqa: PLC0415

    try:
        day = date.fromisoformat(cutoff) if cutoff is not None else None
    except ValueError:
        fail(f"invalid value for --cutoff: {cutoff!r} (expected a date YYYY-MM-DD)")
    settings = get_settings()
    chosen: Source = source or settings.source
    try:
        resolve_version(settings)  # fail in a second, before Prefect starts
        with reporting_user_errors():
            from orchestration.flows.forecast_flow import forecast  # noqa: PLC0415

            result = forecast(source=chosen, cutoff=day, series=series or None)
    except NoChampionError as exc:
        Console(stderr=True, highlight=False, markup=False, soft_wrap=True).print(
            f"error: {exc}", style="bold red"
        )
        raise typer.Exit(2) from None
    out = _out()
    out.print(
        f"forecast at cut-off {result.cutoff} with {result.model_name} version "
        f"{result.model_version} (validated on {result.validation_month}): {result.rows} rows, "
        f"{result.series_forecast} series, {result.series_skipped} skipped, "
        f"{result.first_date} to {result.last_date}",
        soft_wrap=True,
    )
    for uri in (result.parquet_uri, result.csv_uri, *result.plot_uris):
        out.print(f"  {uri}", soft_wrap=True)


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


@app.command("backtest")
def backtest_command(
    start: Annotated[str, typer.Option("--start", help="First month to forecast, YYYY-MM.")],
    end: Annotated[str, typer.Option("--end", help="Last month to forecast, YYYY-MM.")],
    source: Annotated[
        Source | None,
        typer.Option(help="Which lake: local or s3 (default: MILKPRICE_SOURCE, else local)."),
    ] = None,
    models: Annotated[
        str, typer.Option(help="Forecasts to score, comma-separated: model, naive, mean.")
    ] = "model,naive,mean",
    jobs: Annotated[int, typer.Option(min=1, help="Months trained at the same time.")] = 1,
) -> None:
    """Rolling-origin evaluation: each month trained on the 12 before it, as the flow does.

    Prints a table per month with the mean and the worst month (* = fewer than 12 training
    months), and writes every forecast row (parquet), the table (CSV) and a plot of the ratios
    to naive under backtests/START_END/ in the lake, all logged to one MLflow run.
    """
    from milkprice.data.lake import Lake  # noqa: PLC0415
    from milkprice.months import month_range  # noqa: PLC0415
    from milkprice.pipeline.backtest import (  # noqa: PLC0415 - imports LightGBM and MLflow
        log_backtest,
        parse_models,
        render_backtest,
        run_backtest,
        write_backtest,
    )

    first, last = _parse_month("--start", start), _parse_month("--end", end)
    if last < first:
        fail(f"--end {last} is before --start {first}")
    out = _out()
    with reporting_user_errors():
        chosen_models = parse_models(models)
        settings = get_settings()
        lake = Lake.from_settings(settings, source or settings.source)
        months = month_range(first, last)
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=out,
        ) as progress:
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
        files = render_backtest(report)
        uris = write_backtest(lake, files)
        run_id = log_backtest(settings, report, files)
    out.print(_backtest_table(report.table()))
    out.print("RMSE, MAE, widths and interval scores of every forecast: the table.csv below")
    for uri in uris.values():
        out.print(f"  {uri}", soft_wrap=True)
    out.print(f"MLflow run {run_id} (experiment {settings.mlflow_experiment})", soft_wrap=True)


@app.command("accuracy")
def accuracy_command(
    source: Annotated[
        Source | None,
        typer.Option(help="Which lake: local or s3 (default: MILKPRICE_SOURCE, else local)."),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(help="Also group by Estado, Tipo, Canal or cutoff (repeat)."),
    ] = None,
) -> None:
    """Accuracy over time of every stored forecast, beside naive from the same cut-off.

    Forecast dates not published yet are counted as pending; dates a city did not report, as
    unreported.
    """
    from milkprice.data.lake import Lake  # noqa: PLC0415
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
    out = _out()
    out.print(view)
    out.print("RMSE, MAE and 95% coverage too: milkprice.monitoring.accuracy.accuracy_over_time")


if __name__ == "__main__":
    app()

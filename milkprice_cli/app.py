"""The full ``milkprice`` command line: ``data`` (from :mod:`milkprice_cli.data`), ``serve``, ``backfill``.

This is the console script's target (``milkprice = "milkprice_cli.app:app"``): the ``data``
commands need no orchestrator, so they live in the core's CLI and are mounted here as they are.
Prefect is imported only by the commands that use it, so ``milkprice data ...`` stays quick.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from milkprice.settings import Source, get_settings
from milkprice_cli.data import (
    CliHooks,
    SourceOption,
    console,
    data_app,
    fail,
    parse_month,
    progress_bar,
    reporting_user_errors,
)
from milkprice_cli.data import main as root_callback
from milkprice_cli.evaluation import accuracy_command, make_backtest_command
from milkprice_cli.fetch import fetch_command, publish_demo_command  # adds them to `data`

# Neither module imports Prefect: they check for a running server and name the errors.
from orchestration.dask_cluster import DaskUnavailableError
from orchestration.prefect_server import (
    PrefectApiUnavailableError,
    check_prefect_api,
    use_running_server,
)
from stack.control import stack_app

if TYPE_CHECKING:  # milkprice.pipeline.backfill imports MLflow: only the backfill command loads it
    from milkprice.months import Month
    from milkprice.pipeline.backfill import BackfillRow, MonthPlan
    from milkprice.pipeline.backtest import PublishedBacktest

__all__ = [
    "accuracy_command",
    "api_command",
    "app",
    "backfill_command",
    "backtest_command",
    "deploy_command",
    "fetch_command",
    "forecast_command",
    "monitor_command",
    "publish_demo_command",
    "serve_command",
]


def _emit_ingested(source: Source, report: dict[str, object]) -> str:
    """After `data ingest`: tell Prefect (the monthly-monitor trigger) which months arrived."""
    from orchestration.events import emit_data_ingested  # noqa: PLC0415  (Prefect, on demand)

    return emit_data_ingested(source, report)


app = typer.Typer(
    name="milkprice",
    help="Forecasts of Mexican retail milk prices (SNIIM), retrained every month.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # The core's `data ingest` calls this hook: the event comes from this layer, not the core.
    context_settings={"obj": CliHooks(on_ingested=_emit_ingested)},
)
app.add_typer(data_app, name="data")
# `milkprice stack up|down|status [--cluster]`: the background stacks (`make up`), supervisord.
app.add_typer(stack_app, name="stack")
# The same root options (--version) as the core's CLI.
app.callback(invoke_without_command=True)(root_callback)


def _backtest_on_dask(
    address: str, source: Source, first: Month, last: Month, models: tuple[str, ...]
) -> PublishedBacktest:
    """`backtest --dask-address`: the backtest flow with its month tasks on the cluster."""
    use_running_server()  # before Prefect is imported: the `make up` server when it runs
    from orchestration.flows.backtest_flow import backtest_on_dask  # noqa: PLC0415  (Prefect)

    try:
        return backtest_on_dask(address, source, first, last, models)
    except DaskUnavailableError as exc:
        fail(str(exc))


# Commands of the core that need no orchestrator, mounted as they are (backtest with the Dask
# runner of this layer).
backtest_command = make_backtest_command(on_cluster=_backtest_on_dask)
app.command("backtest")(backtest_command)
app.command("accuracy")(accuracy_command)


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
    from orchestration.serve import serve_all  # noqa: PLC0415  (Prefect, for this command only)

    raise typer.Exit(serve_all(pause_on_shutdown=pause_on_shutdown))


@app.command("deploy")
def deploy_command(
    pool: Annotated[
        str | None,
        typer.Option(
            "--pool",
            help="Work pool (type process), created if missing. Default: MILKPRICE_WORK_POOL.",
        ),
    ] = None,
) -> None:
    """Register the deployments on a work pool, for `prefect worker start` workers to run.

    Same schedules and triggers as `milkprice serve` (which it replaces on the Prefect server).
    Needs a Prefect server: `make up`, or `prefect server start` and PREFECT_API_URL.
    """
    use_running_server()  # before Prefect is imported: the `make up` server when it runs
    from orchestration.pool import (  # noqa: PLC0415  (Prefect, for this command only)
        WorkPoolTypeError,
        default_pool,
        deploy_to_pool,
    )

    chosen = pool or default_pool()
    with reporting_user_errors(PrefectApiUnavailableError, WorkPoolTypeError):
        names = deploy_to_pool(chosen)
    out = console()
    for name in names:
        out.print(f"deployed {name} to work pool {chosen}")
    out.print(f"start workers: prefect worker start --pool {chosen} --name NAME --type process")


@app.command("api")
def api_command(
    host: Annotated[
        str, typer.Option(help="Address to bind (default loopback only; 0.0.0.0 for all).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="TCP port.")] = 8000,
    source: SourceOption = None,
) -> None:
    """Serve the prediction API (FastAPI on uvicorn) for the champion model until interrupted.

    The model loads in the background (GET /readyz says when); a new champion is picked up
    without a restart (MILKPRICE_API_RELOAD_SECONDS). Docs at http://HOST:PORT/docs. Beyond
    loopback, /admin/reload needs MILKPRICE_API_ADMIN_TOKEN (the API refuses to start without).
    """
    # The API's stack (uvicorn, FastAPI, MLflow) loads for this command only.
    import uvicorn  # noqa: PLC0415  (the server, for `api` only)

    from milkprice.serving.api import create_app  # noqa: PLC0415  (MLflow, FastAPI)
    from milkprice.serving.guards import ExposureError, check_exposure  # noqa: PLC0415  (FastAPI)

    with reporting_user_errors(ExposureError):
        settings = get_settings()
        check_exposure(host, settings.api_admin_token)
    uvicorn.run(
        create_app(settings, source),
        host=host,
        port=port,
        workers=1,
        log_level="warning",
    )


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
    source: SourceOption = None,
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
    dask_address: Annotated[
        str | None,
        typer.Option(
            "--dask-address",
            help="Dask scheduler (tcp://HOST:PORT): one task per month on its workers, "
            "through Prefect (needs PREFECT_API_URL). Default: MILKPRICE_DASK_ADDRESS unless "
            "--via-deployment.",
        ),
    ] = None,
) -> None:
    """Train one run per month from --start to --end, skipping months already done.

    A month is done when MLflow holds a complete run of it for the same data fingerprint and
    code version. Exit code 1 when any month failed.
    """
    first, last = parse_month("--start", start), parse_month("--end", end)
    use_running_server()  # the `make up` server when it runs, instead of a temporary one
    from milkprice.pipeline.backfill import backfill_months  # noqa: PLC0415  (MLflow)
    from orchestration.backfill import (  # noqa: PLC0415  (Prefect, MLflow)
        DeploymentNotServedError,
        run_backfill,
    )

    out = console()
    with reporting_user_errors(
        DeploymentNotServedError, PrefectApiUnavailableError, DaskUnavailableError
    ):
        months = backfill_months(first, last)
        settings = get_settings()
        chosen: Source = source or settings.source
        address = dask_address or (None if via_deployment else settings.dask_address)
        where = (
            "on deployment train-milk-model"
            if via_deployment
            else f"on the Dask cluster at {address}"
            if address
            else "in process"
        )
        if via_deployment:
            from prefect.settings import get_current_settings  # noqa: PLC0415  (Prefect)

            check_prefect_api(get_current_settings().api.url)
        with progress_bar(out) as progress:
            task = progress.add_task(f"backfill {first}..{last}", total=len(months))

            def planned(plans: list[MonthPlan]) -> None:
                todo = sum(not plan.skip for plan in plans)
                progress.console.print(
                    f"{len(plans)} month(s): {len(plans) - todo} already done, {todo} to run "
                    f"({where}, concurrency {concurrency})"
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
                dask_address=address,
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
    source: SourceOption = None,
    series: Annotated[
        list[str] | None,
        typer.Option(help='A series to plot on its own, "Estado/Ciudad/Tipo/Canal" (repeat).'),
    ] = None,
) -> None:
    """Forecast every series with the champion (the milk-price-forecast flow, run here).

    Writes forecasts/cutoff=.../forecast.parquet, and a CSV and plots under reports/, to the
    lake. Exit code 2 when no champion exists yet (run the training flow first).
    """
    from milkprice.serving.loader import (  # noqa: PLC0415  (MLflow, LightGBM)
        NoChampionError,
        resolve_version,
    )

    try:
        day = date.fromisoformat(cutoff) if cutoff is not None else None
    except ValueError:
        fail(f"invalid value for --cutoff: {cutoff!r} (expected a date YYYY-MM-DD)")
    settings = get_settings()
    chosen: Source = source or settings.source
    try:
        resolve_version(settings)  # fail in a second, before Prefect starts
        with reporting_user_errors():
            from orchestration.flows.forecast_flow import forecast  # noqa: PLC0415  (Prefect)

            result = forecast(source=chosen, cutoff=day, series=series or None)
    except NoChampionError as exc:
        Console(stderr=True, highlight=False, markup=False, soft_wrap=True).print(
            f"error: {exc}", style="bold red"
        )
        raise typer.Exit(2) from None
    out = console()
    out.print(
        f"forecast at cut-off {result.cutoff} with {result.model_name} version "
        f"{result.model_version} (validated on {result.validation_month}): {result.rows} rows, "
        f"{result.series_forecast} series, {result.series_skipped} skipped, "
        f"{result.first_date} to {result.last_date}",
        soft_wrap=True,
    )
    for uri in (result.parquet_uri, result.csv_uri, *result.plot_uris):
        out.print(f"  {uri}", soft_wrap=True)


@app.command("monitor")
def monitor_command(
    year: Annotated[
        int, typer.Option(min=0, help="Year of the month to monitor (0 with --month 0).")
    ] = 0,
    month: Annotated[
        int, typer.Option(min=0, max=12, help="Month to monitor; 0/0: the previous month.")
    ] = 0,
    source: SourceOption = None,
) -> None:
    """Score the stored forecasts of a month; alert when they are off (milk-price-monitor).

    Alerts are logged, shown in the run's artifacts, emitted as Prefect events and POSTed to
    MILKPRICE_ALERT_WEBHOOK when it is set. Exit code 0 even when alerts fire.
    """
    with reporting_user_errors():
        from orchestration.flows.monitor_flow import monitor  # noqa: PLC0415  (Prefect)

        result = monitor(source=source or get_settings().source, year=year, month=month)
    out = console()
    alerts = result["alerts"]
    out.print(f"monitored {result['month']}: {len(alerts)} alert(s)", soft_wrap=True)
    for alert in alerts:
        out.print(f"  {alert['kind']}: {alert['message']}", soft_wrap=True)

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
    from milkprice.pipeline.backfill import BackfillRow, MonthPlan

__all__ = ["app", "backfill_command", "serve_command"]

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


if __name__ == "__main__":
    app()

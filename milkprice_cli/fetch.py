"""``milkprice data fetch`` and ``milkprice data publish-demo``: publications by day, over HTTP.

``fetch`` downloads a day's publication from ``MILKPRICE_SNIIM_URL_TEMPLATE`` and ingests it
(:mod:`milkprice.data.fetch`); ``--since`` catches up every day the lake does not hold. One line
per day names the day and the URL. Exit codes: 0 ingested or already in the lake, 3 (``--day``
only) no publication for the day (HTTP 404), 1 anything else. ``publish-demo`` serves the
seeded demo publications on loopback (:mod:`milkprice.data.publisher`) for ``fetch`` to read.

The commands are added to :data:`milkprice_cli.data.data_app` when this module is imported
(:mod:`milkprice_cli.app` does).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

import typer
from rich.console import Console

from milkprice.data.fetch import (
    FetchOptions,
    FetchResult,
    catch_up,
    fetch_day,
    ingested_summary,
)
from milkprice.data.lake import Lake
from milkprice.settings import get_settings
from milkprice_cli.data import (
    CliHooks,
    SourceOption,
    console,
    data_app,
    fail,
    reporting_user_errors,
)

__all__ = ["EXIT_NOT_PUBLISHED", "fetch_command", "parse_day", "publish_demo_command"]

EXIT_NOT_PUBLISHED = 3
DEFAULT_PUBLISHER_PORT = 8470


def parse_day(option: str, text: str) -> date:
    """``YYYY-MM-DD`` given to ``option``, or :func:`fail` naming the option."""
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        fail(f"invalid value for {option}: {text!r} (expected YYYY-MM-DD: {exc})")


def _print_result(out: Console, errors: Console, result: FetchResult) -> None:
    if result.status == "failed":
        errors.print(f"error: {result.line}", style="bold red")
    else:
        out.print(result.line, style="green" if result.changed else None)


@data_app.command("fetch")
def fetch_command(
    ctx: typer.Context,
    day: Annotated[
        str | None,
        typer.Option(
            "--day", help="Day to fetch, YYYY-MM-DD (default: today in MILKPRICE_TIMEZONE)."
        ),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            help="Catch up every day from this one (YYYY-MM-DD) to --day (default today) "
            "that the lake does not hold.",
        ),
    ] = None,
    source: SourceOption = None,
) -> None:
    """Download the SNIIM publication of a day (or catch up days) and ingest it."""
    first = parse_day("--since", since) if since is not None else None
    chosen = parse_day("--day", day) if day is not None else None
    out = console()
    errors = Console(stderr=True, highlight=False, markup=False, soft_wrap=True)
    out.soft_wrap = True
    with reporting_user_errors():
        settings = get_settings()
        last = chosen or datetime.now(settings.zone).date()
        if first is not None and last < first:
            fail(f"--since {first} is after {last}")
        lake = Lake.from_settings(settings, source)
        lake.check_reachable()
        options = FetchOptions.from_settings(settings)
        if first is None:
            results = [fetch_day(last, lake, options)]
        else:
            results = catch_up(lake, first, last, options)
    for result in results:
        _print_result(out, errors, result)
    if first is not None and not results:
        out.print(f"nothing to fetch: the lake at {lake.base_uri} holds every day {first}..{last}")
    summary = ingested_summary(results)
    hooks = ctx.find_object(CliHooks)
    if summary is not None and hooks is not None and hooks.on_ingested is not None:
        try:
            out.print(hooks.on_ingested(source or settings.source, summary))
        except Exception as exc:
            out.print(f"warning: {type(exc).__name__}: {exc}", style="yellow")
    if any(result.status == "failed" for result in results):
        raise typer.Exit(1)
    if first is None and results[0].status == "not_published":
        raise typer.Exit(EXIT_NOT_PUBLISHED)


@data_app.command("publish-demo")
def publish_demo_command(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = DEFAULT_PUBLISHER_PORT,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the demo data (default: MILKPRICE_SEED, else 0).")
    ] = None,
    through: Annotated[
        str | None,
        typer.Option(
            help="Newest date published, YYYY-MM-DD (default: today in MILKPRICE_TIMEZONE)."
        ),
    ] = None,
) -> None:
    """Serve the seeded demo publications over HTTP, one SNIIM workbook per publication date."""
    import uvicorn  # noqa: PLC0415 - only this command serves

    from milkprice.data.publisher import (  # noqa: PLC0415 - Starlette only when serving
        demo_publications,
        local_url_template,
        publisher_app,
    )

    last = parse_day("--through", through) if through is not None else None
    out = console()
    out.soft_wrap = True
    with reporting_user_errors():
        settings = get_settings()
        today = datetime.now(settings.zone).date()
        frame = demo_publications(settings.seed if seed is None else seed, last or today, today)
    days = sorted(frame["Fecha"].dt.date.unique())
    if not days:
        fail(f"no demo publication up to {last or today}: choose a later --through")
    template = local_url_template(host, port)
    out.print(
        f"Serving {len(days)} demo publications ({days[0]} to {days[-1]}) at http://{host}:{port}"
    )
    out.print(f"export MILKPRICE_SNIIM_URL_TEMPLATE='{template}'")
    uvicorn.run(publisher_app(frame), host=host, port=port, log_level="warning")

"""The ``milkprice`` command line: ``milkprice data demo|ls|push|ingest``.

Settings are read when a command runs (never at import), so the environment of the call
decides where the lake is. User errors (a bad month, a missing bucket, invalid rows, a file
that is not a SNIIM publication) end in one red message on stderr and exit code 1, without a
traceback. The ``data`` group is exposed as :data:`data_app` so that a bigger CLI (training,
serving, backfills) can mount it as it is.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from types import ModuleType
from typing import Annotated, NoReturn

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from milkprice import __version__
from milkprice.data.demo import DEMO_MONTHS, default_demo_range, write_demo_lake
from milkprice.data.lake import Lake, LakeError
from milkprice.data.schema import LakeDataError
from milkprice.data.sync import describe_lake, push_lake
from milkprice.months import Month, local_today, month_range
from milkprice.settings import Source, get_settings

__all__ = [
    "USER_ERRORS",
    "CliHooks",
    "SourceOption",
    "app",
    "console",
    "data_app",
    "fail",
    "parse_month",
    "progress_bar",
    "reporting_user_errors",
]

# Errors caused by the user's input or environment: reported in one message, no traceback.
# (pydantic's ValidationError for a bad setting is a ValueError too.)
USER_ERRORS: tuple[type[BaseException], ...] = (
    LakeDataError,
    LakeError,
    FileNotFoundError,
    PermissionError,
    ValueError,
)
_SECRET_WORDS = ("WEBHOOK", "SECRET", "TOKEN", "PASSWORD", "KEY")
_MAX_LISTED = 6  # longer lists (dates) are shown as first .. last (count)

app = typer.Typer(
    name="milkprice",
    help="Forecasts of Mexican retail milk prices (SNIIM), retrained every month.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(
    help="The lake of monthly SNIIM partitions: create demo data, list, push to S3, ingest.",
    no_args_is_help=True,
)
app.add_typer(data_app, name="data")

SourceOption = Annotated[
    Source | None,
    typer.Option(
        "--source", help="Which lake: local or s3 (default: MILKPRICE_SOURCE, else local)."
    ),
]


def console() -> Console:
    """Standard output for tables and messages (no markup: names may contain brackets)."""
    return Console(highlight=False, markup=False)


def fail(message: str) -> NoReturn:
    """Print ``message`` in red on stderr and exit with code 1."""
    Console(stderr=True, highlight=False, markup=False, soft_wrap=True).print(
        f"error: {message}", style="bold red"
    )
    raise typer.Exit(1)


@contextmanager
def reporting_user_errors(*extra: type[BaseException]) -> Iterator[None]:
    """Turn :data:`USER_ERRORS` (and ``extra``) raised inside the block into :func:`fail`."""
    try:
        yield
    except ValidationError as exc:
        fail(_describe_invalid(exc))
    except (*USER_ERRORS, *extra) as exc:
        fail(str(exc) or type(exc).__name__)


def _describe_invalid(error: ValidationError) -> str:
    """One line per invalid value; for settings, the environment variable and what it holds."""
    what = "setting" if error.title == "Settings" else f"value of {error.title}"
    lines = []
    for item in error.errors(include_url=False):
        name = ".".join(str(part) for part in item["loc"])
        # Never echo what a secret-looking variable holds (webhook URLs carry tokens).
        secret = any(word in name.upper() for word in _SECRET_WORDS)
        shown = "<hidden>" if secret else repr(item.get("input"))
        lines.append(f"invalid {what} {name}={shown}: {item['msg']}")
    return "; ".join(lines)


def parse_month(option: str, text: str) -> Month:
    """``YYYY-MM`` given to ``option``, or :func:`fail` naming the option."""
    try:
        return Month.parse(text)
    except ValueError as exc:
        fail(f"invalid value for {option}: {text!r} ({exc})")


def progress_bar(out: Console) -> Progress:
    """The progress bar every long command shows (description, bar, done/total, elapsed)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=out,
    )


@app.callback(invoke_without_command=True)
def main(
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
) -> None:
    """Forecasts of Mexican retail milk prices (SNIIM), retrained every month."""
    if version:
        console().print(f"milkprice {__version__}")
        raise typer.Exit(0)


@data_app.command("demo")
def demo_command(
    start: Annotated[
        str | None,
        typer.Option(help="First month, YYYY-MM (default: 18 months up to --end)."),
    ] = None,
    end: Annotated[
        str | None, typer.Option(help="Last month, YYYY-MM (default: the previous month).")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="Seed of the generator (default: MILKPRICE_SEED, else 0).")
    ] = None,
    source: SourceOption = None,
    if_empty: Annotated[
        bool, typer.Option("--if-empty", help="Do nothing if the lake already has partitions.")
    ] = False,
) -> None:
    """Write seeded synthetic SNIIM-like partitions into the lake."""
    first = parse_month("--start", start) if start is not None else None
    last = parse_month("--end", end) if end is not None else None
    out = console()
    with reporting_user_errors():
        settings = get_settings()
        # Up to the previous month of today in MILKPRICE_TIMEZONE, not of the machine's clock.
        default_first, default_last = default_demo_range(local_today(settings.zone))
        last = last or default_last
        first = first or (last.shift(-(DEMO_MONTHS - 1)) if end else default_first)
        if last < first:
            fail(f"--end {last} is before --start {first}")
        lake = Lake.from_settings(settings, source)
        lake.check_reachable()
        if if_empty and (existing := lake.list_months()):
            out.print(
                f"The lake at {lake.base_uri} already holds {len(existing)} month(s) "
                f"({existing[0]} to {existing[-1]}); --if-empty: nothing written."
            )
            return
        chosen_seed = settings.seed if seed is None else seed
        with progress_bar(out) as progress:
            task = progress.add_task(f"demo {first}..{last}", total=len(month_range(first, last)))
            writes = write_demo_lake(
                lake, first, last, chosen_seed, on_write=lambda _: progress.advance(task)
            )
    changed = sum(w.changed for w in writes)
    out.print(
        f"Wrote {len(writes)} demo month(s) {first} to {last} (seed {chosen_seed}, "
        f"{sum(w.rows for w in writes):,} rows, {changed} changed) to {lake.base_uri}"
    )


@data_app.command("ls")
def ls_command(source: SourceOption = None) -> None:
    """List the lake's months: rows, missing prices, series and publication dates."""
    out = console()
    with reporting_user_errors():
        lake = Lake.from_settings(get_settings(), source)
        infos = describe_lake(lake)
    if not infos:
        out.print(
            f"The lake at {lake.base_uri} has no partitions yet: "
            "run `milkprice data demo` or `milkprice data ingest`."
        )
        return
    table = Table(title=f"lake {lake.base_uri}")
    for column in ("month", "rows", "missing", "series", "dates", "suspect", "glitches", "pending"):
        table.add_column(column, justify="left" if column == "month" else "right")
    for info in infos:
        share = info.missing_prices / info.rows if info.rows else 0.0
        table.add_row(
            str(info.month),
            f"{info.rows:,}",
            f"{info.missing_prices:,} ({share:.1%})",
            str(info.series),
            str(info.dates),
            str(info.suspect),
            str(info.glitches),
            str(info.pending),
        )
    out.print(table)
    out.print(f"{len(infos)} month(s), {sum(i.rows for i in infos):,} rows")
    out.print(
        "suspect: readings that jumped from their series' level; glitches: those the next "
        "publication reverted (never used as anchors); pending: not settled yet (forecast as a "
        "mixture with the previous level, weighted by p_glitch)"
    )


@data_app.command("push")
def push_command() -> None:
    """Upload the local lake's partitions that differ to the configured S3 bucket."""
    out = console()
    with reporting_user_errors():
        settings = get_settings()
        local, remote = Lake.from_settings(settings, "local"), Lake.from_settings(settings, "s3")
        months = local.list_months()
        if not months:
            out.print(f"The local lake at {local.base_uri} has no partitions: nothing to push.")
            return
        remote.check_reachable()
        with progress_bar(out) as progress:
            task = progress.add_task(f"push to {remote.base_uri}", total=len(months))
            results = push_lake(local, remote, months, on_result=lambda _: progress.advance(task))
    table = Table(title=f"{local.base_uri} -> {remote.base_uri}")
    for column in ("month", "status", "rows", "bytes", "md5"):
        table.add_column(column, justify="right" if column in {"rows", "bytes"} else "left")
    for result in results:
        style = "green" if result.status == "pushed" else "dim"
        table.add_row(
            str(result.month),
            result.status,
            "" if result.rows is None else f"{result.rows:,}",
            f"{result.size_bytes:,}",
            result.md5[:12],
            style=style,
        )
    out.print(table)
    pushed = sum(r.status == "pushed" for r in results)
    out.print(f"pushed {pushed}, skipped {len(results) - pushed} (already identical)")


@dataclass(frozen=True)
class CliHooks:
    """What a bigger CLI mounting :data:`data_app` adds to its commands (the click context's obj).

    Attributes:
        on_ingested: Called after a successful ingest with the lake's source and the report
            (:meth:`IngestReport.to_dict`); returns a line to print. If it raises, the ingest
            still succeeds and the error is printed as a warning.
    """

    on_ingested: Callable[[Source, dict[str, object]], str] | None = None


@data_app.command("ingest")
def ingest_command(
    ctx: typer.Context,
    path_or_url: Annotated[str, typer.Argument(help="A SNIIM publication (xlsx): path or URL.")],
    source: SourceOption = None,
) -> None:
    """Ingest one SNIIM publication into the lake and print what it did."""
    try:
        # Imported here: the ingest module is optional for every other command.
        ingest = importlib.import_module("milkprice.data.ingest")
    except ImportError as exc:
        fail(f"ingestion is not available in this installation ({exc})")
    with reporting_user_errors(*_ingest_errors(ingest)):
        settings = get_settings()
        lake = Lake.from_settings(settings, source)
        report = ingest.ingest_publication(path_or_url, lake).to_dict()
    out = console()
    _print_report(out, f"ingested {path_or_url} into {lake.base_uri}", report)
    hooks = ctx.find_object(CliHooks)
    if hooks is not None and hooks.on_ingested is not None:
        try:
            out.print(hooks.on_ingested(source or settings.source, report), soft_wrap=True)
        except Exception as exc:
            out.print(f"warning: {type(exc).__name__}: {exc}", style="yellow", soft_wrap=True)


def _ingest_errors(ingest: ModuleType) -> tuple[type[BaseException], ...]:
    """Find the SNIIM errors (bad workbook, failed download) that are the user's to fix."""
    modules = [ingest]
    for name in ("milkprice.data.sniim", "milkprice.data.sniim_download"):
        with suppress(ImportError):
            modules.append(importlib.import_module(name))
    found = {
        error
        for module in modules
        for name in ("SniimFormatError", "SniimDownloadError")
        if isinstance(error := getattr(module, name, None), type)
        and issubclass(error, BaseException)
    }
    return tuple(sorted(found, key=lambda error: error.__name__))


def _print_report(out: Console, title: str, report: dict[str, object]) -> None:
    """Scalars in one key/value table, lists of records (partitions) in a table of their own."""
    table = Table(title=title, show_header=False)
    table.add_column("field")
    table.add_column("value", overflow="fold")
    records: dict[str, list[dict[str, object]]] = {}
    for key, value in report.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            records[key] = value
        elif isinstance(value, list) and len(value) > _MAX_LISTED:
            table.add_row(key, f"{value[0]} .. {value[-1]} ({len(value)})")
        else:
            table.add_row(key, value if isinstance(value, str) else json.dumps(value, default=str))
    out.print(table)
    for key, rows in records.items():
        sub = Table(title=key)
        for column in rows[0]:
            sub.add_column(str(column), overflow="fold")
        for row in rows:
            sub.add_row(*(str(row.get(column, "")) for column in rows[0]))
        out.print(sub)

"""Command line of ``python orchestration/flows/main_flow.py``: run the training flow once, or serve it.

Kept apart from :mod:`orchestration.flows.main_flow` so that the flow module imports neither this
nor :mod:`orchestration.deployments` (which imports the flow to build its deployments).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from milkprice.data.lake import Lake
from milkprice.months import local_today
from milkprice.pipeline.training_run import (
    MAX_YEAR,
    MIN_YEAR,
    newest_complete_month,
    summary_text,
)
from milkprice.settings import get_settings
from orchestration import disable_telemetry
from orchestration.flows.main_flow import main
from orchestration.prefect_server import use_running_server

__all__ = ["run_cli"]


def _bounded(low: int, high: int, what: str) -> Callable[[str], int]:
    """An argparse type: an integer in ``low..high`` or 0, else a message saying what fits."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number ({what})") from None
        if value != 0 and not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range ({what})")
        return value

    return parse


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main_flow.py",
        description="Without arguments: serve the train-milk-model deployment. "
        "With --year/--month: run the training flow once for that validation month.",
    )
    parser.add_argument("--source", choices=["local", "s3"], default=None)
    parser.add_argument(
        "--year",
        type=_bounded(MIN_YEAR, MAX_YEAR, f"{MIN_YEAR}..{MAX_YEAR}, or 0 with --month 0"),
        default=None,
    )
    parser.add_argument(
        "--month",
        type=_bounded(1, 12, "1..12, or 0 with --year 0 for the previous month"),
        default=None,
    )
    parser.add_argument(
        "--latest",
        action="store_true",
        help="validate on the newest complete month in the lake (what `make run` does)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="train even when MLflow holds a complete run of the month for the same data and "
        "code (without it such a run is skipped)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def run_cli(argv: list[str]) -> int:
    """Entry point of the script; returns the process exit status."""
    args = _parser().parse_args(argv)
    disable_telemetry()
    if (
        not (args.latest or args.json or args.force)
        and args.year is args.month is args.source is None
    ):
        from orchestration.serve import serve_training  # noqa: PLC0415 - imports prefect.serve

        return serve_training()
    use_running_server()  # the `make up` server when it runs, instead of a temporary one
    settings = get_settings()
    source = args.source or settings.source
    try:
        year, month = args.year or 0, args.month or 0
        if args.latest:
            # "Complete" as of today where the user lives (MILKPRICE_TIMEZONE).
            lake = Lake.from_settings(settings, source)
            latest = newest_complete_month(lake, local_today(settings.zone))
            year, month = latest.year, latest.month
        result = main(source=source, year=year, month=month, force=args.force)
    except Exception as exc:  # the message is the user's answer; the flow logged the trace
        print(f"milk-price-training failed: {exc}", file=sys.stderr)
        return 1
    print(result.model_dump_json(indent=2) if args.json else summary_text(result, settings))
    return 0

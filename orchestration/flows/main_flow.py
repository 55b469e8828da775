"""The monthly training flow ``main(source, year, month)``, named ``milk-price-training``.

Run once (a manual backfill)::

    python orchestration/flows/main_flow.py --year 2025 --month 2 [--source s3]

or from Python: ``from orchestration.flows.main_flow import main; main(source="local",
year=2025, month=2)``. With no arguments the script serves the ``train-milk-model``
deployment on its monthly schedule (see :mod:`orchestration.serve`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Annotated, Literal

from prefect import flow
from pydantic import Field

from milkprice.lake import Lake
from milkprice.run import (
    MAX_YEAR,
    TrainingResult,
    newest_complete_month,
    resolve_validation_month,
    summary_text,
    training_result,
)
from milkprice.settings import get_settings
from milkprice.training import assemble_outcome
from orchestration import disable_telemetry
from orchestration.tasks.training import (
    evaluation,
    features,
    promotion_decision,
    refit_model,
    registered_version,
    report,
    training_window,
    tuned_model,
    validated_frame,
)

__all__ = ["FLOW_NAME", "main", "run_cli"]

FLOW_NAME = "milk-price-training"


@flow(name=FLOW_NAME, log_prints=True)
def main(
    source: Literal["local", "s3"] = "local",
    year: Annotated[
        int,
        Field(ge=0, le=MAX_YEAR, description="Year of the validation month; 0 with month=0."),
    ] = 0,
    month: Annotated[
        int,
        Field(ge=0, le=12, description="Validation month (1-12); 0/0 = previous calendar month."),
    ] = 0,
) -> TrainingResult:
    """Train on the 12 months before ``year/month``, validate on it, register, maybe promote."""
    settings = get_settings()
    validation_month = resolve_validation_month(year, month)
    lake = Lake.from_settings(settings, source)
    window = training_window(lake, validation_month)
    split = validated_frame(lake, window, validation_month)
    rows = features(window.frame, split)
    tuning, fitted = tuned_model(window.frame, split, rows, settings.seed, settings.n_trials)
    evaluated = evaluation(fitted, window.frame, validation_month)
    refit = refit_model(window.frame, split, rows, tuning.best_params, settings.seed)
    outcome = assemble_outcome(split, tuning, evaluated, refit)
    logged, version = registered_version(settings, outcome, window, source)
    decision = promotion_decision(settings, logged, version, outcome, window.frame)
    report(settings, outcome, logged, decision)
    result = training_result(source, outcome, window, logged, decision)
    print(f"{validation_month}: version {version}, promoted={decision.promoted}: {decision.reason}")
    return result


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="main_flow.py",
        description="Without arguments: serve the train-milk-model deployment. "
        "With --year/--month: run the training flow once for that validation month.",
    )
    parser.add_argument("--source", choices=["local", "s3"], default=None)
    parser.add_argument("--year", type=int, default=None)
    parser.add_argument("--month", type=int, default=None)
    parser.add_argument(
        "--latest",
        action="store_true",
        help="validate on the newest complete month in the lake (what `make run` does)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def run_cli(argv: list[str]) -> int:
    """Entry point of the script; returns the process exit status."""
    args = _parser().parse_args(argv)
    disable_telemetry()
    if not (args.latest or args.json) and args.year is args.month is args.source is None:
        from orchestration.serve import serve_training  # noqa: PLC0415 - only when serving

        return serve_training()
    settings = get_settings()
    source = args.source or settings.source
    try:
        year, month = args.year or 0, args.month or 0
        if args.latest:
            latest = newest_complete_month(Lake.from_settings(settings, source))
            year, month = latest.year, latest.month
        result = main(source=source, year=year, month=month)
    except Exception as exc:  # the message is the user's answer; the flow logged the trace
        print(f"milk-price-training failed: {exc}", file=sys.stderr)
        return 1
    print(result.model_dump_json(indent=2) if args.json else summary_text(result, settings))
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(sys.argv[1:]))

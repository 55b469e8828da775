"""The monthly training flow ``main(source, year, month)``, named ``milk-price-training``.

Run once (a manual backfill)::

    python orchestration/flows/main_flow.py --year 2025 --month 2 [--source s3] [--force]

or from Python: ``from orchestration.flows.main_flow import main; main(source="local",
year=2025, month=2)``. With no arguments the script serves the ``train-milk-model``
deployment on its monthly schedule (see :mod:`orchestration.deployments`).
"""

from __future__ import annotations

import sys
from typing import Annotated, Literal

from prefect import flow
from prefect.runtime import flow_run
from prefect.states import Completed, State
from pydantic import Field

from milkprice.data.lake import Lake
from milkprice.model.training import assemble_outcome
from milkprice.months import local_today
from milkprice.pipeline.backfill import SKIPPED, skipped_result
from milkprice.pipeline.training_run import (
    MAX_YEAR,
    TrainingResult,
    resolve_validation_month,
    training_result,
)
from milkprice.settings import get_settings
from orchestration.events import alert_on_failure
from orchestration.names import TRAINING_FLOW as FLOW_NAME
from orchestration.tasks.training import (
    baseline_version,
    champion_promoted_event,
    completed_run,
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

__all__ = ["FLOW_NAME", "main"]


@flow(name=FLOW_NAME, log_prints=True, on_failure=[alert_on_failure])
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
    force: Annotated[
        bool,
        Field(
            description="Train even if the month already has a complete run for this data "
            "and code (otherwise such a run ends Skipped, registering nothing)."
        ),
    ] = False,
) -> TrainingResult | State[TrainingResult]:
    """Train on the 12 months before ``year/month``, validate on it, register, maybe promote.

    A month whose window (same data fingerprint) already has a complete MLflow run made by the
    same code version is not trained again unless ``force``: the run ends in a Completed state
    named ``Skipped`` whose result is that run's (``TrainingResult.skipped``), and nothing is
    registered or promoted. So the ``milkprice.month.closed`` trigger and the monthly schedule,
    or two events for one month, train it once. A direct call returns the result either way.
    """
    settings = get_settings()
    # "previous month" of the run's schedule, not of the clock: a late or catch-up run of the
    # October schedule still trains on September (a direct call's scheduled time is now). The
    # day is the one in MILKPRICE_TIMEZONE: 03:00 UTC on 1 March is still February there.
    today = local_today(settings.zone, at=flow_run.scheduled_start_time)
    validation_month = resolve_validation_month(year, month, today)
    lake = Lake.from_settings(settings, source)
    window = training_window(lake, validation_month)
    done = None if force else completed_run(settings, window, validation_month)
    if done is not None:
        skipped = skipped_result(source, validation_month, window.fingerprint, done)
        print(f"{validation_month}: {skipped.reason}")
        return Completed(name=SKIPPED, message=skipped.reason, data=skipped)
    split = validated_frame(lake, window, validation_month)
    rows = features(window.frame, split)
    tuning, fitted, residuals = tuned_model(
        window.frame, split, rows, settings.seed, settings.n_trials
    )
    evaluated = evaluation(fitted, window.frame, validation_month)
    refit = refit_model(
        window.frame, split, rows, tuning.best_params, settings.seed, residuals, evaluated
    )
    outcome = assemble_outcome(split, tuning, evaluated, refit)
    logged, version = registered_version(settings, outcome, window, source)
    decision = promotion_decision(settings, logged, version, outcome, window.frame)
    decision = baseline_version(settings, outcome, window, source, decision)
    if decision.promoted or decision.served_baseline:
        champion_promoted_event(settings, decision, validation_month, source)
    report(settings, outcome, logged, decision)
    result = training_result(source, outcome, window, logged, decision)
    print(f"{validation_month}: version {version}, promoted={decision.promoted}: {decision.reason}")
    return result


if __name__ == "__main__":
    # The script's command line lives apart from the flow, so that this module (imported by
    # orchestration.serve to build deployments) imports nothing that imports it back.
    from orchestration.training_cli import run_cli

    sys.exit(run_cli(sys.argv[1:]))

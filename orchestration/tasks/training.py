"""Prefect tasks of the training flow: each a thin call into :mod:`milkprice`."""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact

from milkprice.data.lake import Lake, LakeError, LakeWindow
from milkprice.model.training import (
    Evaluation,
    TrainingOutcome,
    WindowSplit,
    build_window_rows,
    calibrate_intervals,
    evaluate_on_month,
    fit_forecaster,
    refit_on_window,
    tune,
)
from milkprice.model.tuning import TuningResult
from milkprice.months import Month
from milkprice.pipeline.backfill import CompletedRun, find_completed_run
from milkprice.pipeline.training_run import (
    check_window,
    code_version,
    load_training_window,
    log_and_register,
    metrics_table,
    promote_candidate,
    serve_baseline_if_needed,
)
from milkprice.registry.promotion import PromotionDecision
from milkprice.registry.tracking import LoggedRun, run_url
from milkprice.settings import Settings, Source
from orchestration.events import CHAMPION_PROMOTED_EVENT, emit_champion_promoted

__all__ = [
    "champion_promoted_event",
    "completed_run",
    "evaluation",
    "features",
    "promotion_decision",
    "registered_version",
    "report",
    "training_window",
    "tuned_model",
    "validated_frame",
]

_IO_RETRIES = 2


def _transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry reads only on errors that may pass (the store or network), not on bad data."""
    try:
        state.result()
    except (LakeError, ConnectionError, TimeoutError):
        return True
    except Exception:
        return False
    return False


@task(
    name="training-window",
    retries=_IO_RETRIES,
    retry_delay_seconds=2,
    retry_condition_fn=_transient,
)
def training_window(lake: Lake, validation_month: Month) -> LakeWindow:
    """The partitions of the 12 training months and the validation month, validated."""
    window = load_training_window(lake, validation_month)
    logger = get_run_logger()
    for summary in window.summaries:
        logger.info("read %s", summary.to_dict())
    return window


@task(name="completed-run", retries=_IO_RETRIES, retry_delay_seconds=2)
def completed_run(
    settings: Settings, window: LakeWindow, validation_month: Month
) -> CompletedRun | None:
    """The complete MLflow run of the month for this window's data and this code, if any.

    The backfill's own question (:func:`milkprice.pipeline.backfill.plan_backfill`), asked of
    the same fingerprint and code version.
    """
    return find_completed_run(settings, validation_month, window.fingerprint, code_version())


@task(name="validated-frame")
def validated_frame(lake: Lake, window: LakeWindow, validation_month: Month) -> WindowSplit:
    """Check the window can train a model; warn about missing training months."""
    split = check_window(lake, window, validation_month)
    if split.missing_months:
        get_run_logger().warning(
            "training without %s: proceeding with %d of 12 months",
            ", ".join(str(m) for m in split.missing_months),
            len(split.training_months),
        )
    return split


@task(name="features")
def features(frame: pd.DataFrame, split: WindowSplit) -> pd.DataFrame:
    """Supervised rows (features and target) at every origin of the window, built once."""
    rows = build_window_rows(frame, split)
    get_run_logger().info("features: %d rows x %d columns", len(rows), rows.shape[1])
    return rows


@task(name="tuned-model")
def tuned_model(
    frame: pd.DataFrame, split: WindowSplit, rows: pd.DataFrame, seed: int, n_trials: int
) -> tuple[TuningResult, Any, pd.DataFrame]:
    """Tuned parameters, their out-of-sample residuals (for intervals) and the fitted model."""
    tuning = tune(frame, split, n_trials=n_trials, seed=seed, rows=rows)
    get_run_logger().info(
        "tuning: best inner score %.4f in %d trials", tuning.best_score, tuning.n_trials
    )
    params = tuning.best_params
    residuals = calibrate_intervals(frame, split, params, seed=seed, rows=rows)
    fitted = fit_forecaster(frame, split, params, seed=seed, rows=rows, residuals=residuals)
    return tuning, fitted, residuals


@task(name="evaluation")
def evaluation(forecaster: Any, frame: pd.DataFrame, validation_month: Month) -> Evaluation:
    """The model and the baselines scored on the validation month."""
    return evaluate_on_month(forecaster, frame, validation_month)


@task(name="registered-version", retries=_IO_RETRIES, retry_delay_seconds=5)
def registered_version(
    settings: Settings, outcome: TrainingOutcome, window: LakeWindow, source: Source
) -> tuple[LoggedRun, str]:
    """The run logged to MLflow and its model registered as a new version."""
    return log_and_register(settings, outcome, window, source)


@task(name="refit-model")
def refit_model(  # noqa: PLR0917 - the flow passes each product of the steps before
    frame: pd.DataFrame,
    split: WindowSplit,
    rows: pd.DataFrame,
    params: dict[str, Any],
    seed: int,
    residuals: pd.DataFrame,
    evaluated: Evaluation,
) -> Any:
    """The model refit on all 13 months, with intervals from every out-of-sample residual."""
    return refit_on_window(
        frame, split, params, seed=seed, rows=rows, residuals=residuals, evaluation=evaluated
    )


@task(name="promotion-decision")
def promotion_decision(
    settings: Settings,
    logged: LoggedRun,
    version: str,
    outcome: TrainingOutcome,
    frame: pd.DataFrame,
) -> PromotionDecision:
    """Whether the new version takes the ``champion`` alias, and why."""
    decision = promote_candidate(settings, logged, version, outcome, frame)
    get_run_logger().info("promotion of version %s: %s", version, decision.reason)
    return decision


@task(name="baseline-version")
def baseline_version(
    settings: Settings,
    outcome: TrainingOutcome,
    window: LakeWindow,
    source: Source,
    decision: PromotionDecision,
) -> PromotionDecision:
    """With no champion and a rejected candidate, the trusted last price becomes the champion."""
    decision = serve_baseline_if_needed(settings, outcome, window, source, decision)
    if decision.served_baseline:
        get_run_logger().info("baseline version %s is served", decision.served_baseline)
    return decision


@task(name="champion-promoted-event")
def champion_promoted_event(
    settings: Settings, decision: PromotionDecision, validation_month: Month, source: Source
) -> str | None:
    """Tell Prefect a new champion exists (a forecast follows); the event id, if one was sent."""
    version = decision.served_baseline or decision.candidate_version
    sent = emit_champion_promoted(settings, version, validation_month, source)
    get_run_logger().info("%s: version %s of %s", CHAMPION_PROMOTED_EVENT, version, source)
    return sent


@task(name="report")
def report(
    settings: Settings, outcome: TrainingOutcome, logged: LoggedRun, decision: PromotionDecision
) -> list[dict[str, object]]:
    """Prefect artifacts: the metrics beside the baselines, and a link to the MLflow run."""
    month = outcome.validation_month
    table = metrics_table(outcome.metrics)
    create_table_artifact(
        table=table,
        key="milk-price-metrics",
        description=(
            f"Validation month {month}; version {decision.candidate_version} "
            f"{'promoted' if decision.promoted else 'not promoted'}: {decision.reason}"
        ),
    )
    create_link_artifact(
        link=run_url(
            settings.mlflow_tracking_uri,
            logged.experiment_id,
            logged.run_id,
            settings.mlflow_ui_url,
        ),
        link_text=f"MLflow run for {month}",
        key="milk-price-mlflow-run",
    )
    return table

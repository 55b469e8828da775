"""The training pipeline as separate steps: split, tune, fit, evaluate, refit.

Semantics for a validation month ``V``: the window is ``V-12 .. V``. The model is tuned and
fit on the 12 training months ``V-12 .. V-1`` (origins: month ends and mid-months, see
:func:`milkprice.model.tuning.training_origins`; only targets up to the end of ``V-1``), evaluated on
``V`` from the origin ``end of V-1``, then refit with the same parameters on the whole window
(targets up to the end of ``V``).
At least ``MIN_TRAINING_MONTHS`` of the 12 training months must have data. These functions
take the clean tidy frame and never read files, so an orchestrator can run each as a task.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pandas as pd

from milkprice.data.quality import assess_readings
from milkprice.model.calibration import (
    attach_intervals,
    evaluation_residuals,
    fold_residuals,
)
from milkprice.model.evaluation import (
    HISTORY_MONTHS,
    Evaluation,
    evaluate_on_month,
    interval_metrics,
    score_distribution,
    with_ratios,
)
from milkprice.model.features import (
    build_training_set,
)
from milkprice.model.forecast import MilkForecaster
from milkprice.model.tuning import (
    TRAINING_DATE_STRIDE,
    TuningResult,
    training_origins,
    tune_hyperparameters,
)
from milkprice.months import Month, month_range

__all__ = [
    "DEFAULT_N_TRIALS",
    "DEFAULT_TIMEOUT_S",
    "MIN_TRAINING_MONTHS",
    "TRAINING_MONTHS",
    "Evaluation",
    "TrainingOutcome",
    "WindowSplit",
    "assemble_outcome",
    "build_window_rows",
    "calibrate_intervals",
    "evaluate_on_month",
    "fit_forecaster",
    "interval_metrics",
    "refit_on_window",
    "score_distribution",
    "split_window",
    "train_and_evaluate",
    "tune",
    "window_verdicts",
    "with_ratios",
]

TRAINING_MONTHS = HISTORY_MONTHS
MIN_TRAINING_MONTHS = 6
# 0: the forecaster's fixed settings, nothing searched (a search on three inner folds mostly fits
# noise, see milkprice.model.tuning).
DEFAULT_N_TRIALS = 0
DEFAULT_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class WindowSplit:
    """Which months of the window have data, and the origins used for each step.

    Attributes:
        validation_month: The month held out for evaluation (``V``).
        training_months: Months of ``V-12 .. V-1`` present in the frame.
        missing_months: Months of ``V-12 .. V-1`` absent from the frame.
        train_origins: Origins for fitting on the training months (targets up to the
            validation origin).
        validation_origin: End of ``V-1``: the origin of the validation forecast.
        refit_origins: Origins for the refit on the whole window (targets up to the end of V).
    """

    validation_month: Month
    training_months: list[Month]
    missing_months: list[Month]
    train_origins: list[pd.Timestamp]
    validation_origin: pd.Timestamp
    refit_origins: list[pd.Timestamp]


@dataclass
class TrainingOutcome:
    """Everything one training run produced.

    Attributes:
        validation_month: ``V``.
        metrics: Validation metrics (see :class:`Evaluation`) plus ratios to naive.
        params: The parameters used (tuned).
        forecaster: The forecaster refit on the whole window, for forecasting after ``V``.
        evaluation: Validation scores and rows (model fit on the training months only).
        split: The window split.
        tuning: The search result.
        timings: Seconds per step (``features``, ``tune``, ``fit``, ``evaluate``, ``refit``,
            ``total``).
    """

    validation_month: Month
    metrics: dict[str, float]
    params: dict[str, Any]
    forecaster: MilkForecaster
    evaluation: Evaluation
    split: WindowSplit
    tuning: TuningResult
    timings: dict[str, float]


def _months_present(frame: pd.DataFrame) -> set[Month]:
    periods = pd.to_datetime(frame["Fecha"]).dt.to_period("M").unique()
    return {Month(p.year, p.month) for p in periods}


def split_window(frame: pd.DataFrame, validation_month: Month) -> WindowSplit:
    """Work out the months present in the window and the origins of each step.

    Args:
        frame: Clean tidy rows (rows outside ``V-12 .. V`` are ignored by later steps).
        validation_month: ``V``.

    Returns:
        The split.

    Raises:
        ValueError: If ``V`` has no rows, or fewer than ``MIN_TRAINING_MONTHS`` training months
            have data (the message names the missing months).
    """
    present = _months_present(frame)
    window = month_range(validation_month.shift(-TRAINING_MONTHS), validation_month.shift(-1))
    training = [m for m in window if m in present]
    missing = [m for m in window if m not in present]
    if validation_month not in present:
        raise ValueError(f"validation month {validation_month} has no rows in the frame")
    if len(training) < MIN_TRAINING_MONTHS:
        raise ValueError(
            f"only {len(training)} of the {TRAINING_MONTHS} training months before "
            f"{validation_month} have data (need {MIN_TRAINING_MONTHS}); missing: "
            f"{', '.join(str(m) for m in missing)}"
        )
    validation_origin = validation_month.shift(-1).end
    return WindowSplit(
        validation_month=validation_month,
        training_months=training,
        missing_months=missing,
        train_origins=training_origins(training, validation_origin),
        validation_origin=validation_origin,
        refit_origins=training_origins(training, validation_month.end),
    )


def _window_rows(frame: pd.DataFrame, first: Month, last: Month) -> pd.DataFrame:
    return frame.loc[frame["Fecha"].between(first.start, last.end)]


def _training_rows(frame: pd.DataFrame, split: WindowSplit) -> pd.DataFrame:
    return _window_rows(frame, split.training_months[0], split.validation_month.shift(-1))


def window_verdicts(frame: pd.DataFrame, split: WindowSplit) -> pd.DataFrame:
    """The quality verdicts of the window's readings, computed once and shared by the steps.

    A verdict depends only on the readings up to it (and its settlement is dated), so the
    verdicts of the whole window serve every origin inside it without leaking.
    """
    return assess_readings(_window_rows(frame, split.training_months[0], split.validation_month))


def build_window_rows(
    frame: pd.DataFrame, split: WindowSplit, verdicts: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Supervised rows for every origin of the window, built once and shared by the steps.

    Features at an origin only use data up to it, so the rows for the training steps are
    simply those whose target date is on or before the validation origin.
    """
    window = _window_rows(frame, split.training_months[0], split.validation_month)
    return build_training_set(
        window, split.refit_origins, date_stride=TRAINING_DATE_STRIDE, verdicts=verdicts
    )


def tune(
    frame: pd.DataFrame,
    split: WindowSplit,
    *,
    n_trials: int = DEFAULT_N_TRIALS,
    seed: int = 0,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
    rows: pd.DataFrame | None = None,
) -> TuningResult:
    """Search hyperparameters on inner folds of the training months (never ``V``).

    ``rows`` (from :func:`build_window_rows`) avoids rebuilding features.
    """
    return tune_hyperparameters(
        _training_rows(frame, split),
        split.training_months,
        n_trials=n_trials,
        seed=seed,
        timeout_s=timeout_s,
        rows=rows,
    )


def fit_forecaster(
    frame: pd.DataFrame,
    split: WindowSplit,
    params: dict[str, Any],
    *,
    seed: int = 0,
    rows: pd.DataFrame | None = None,
    residuals: pd.DataFrame | None = None,
) -> MilkForecaster:
    """Fit on the training months only (targets up to the validation origin).

    With ``residuals`` (from :func:`calibrate_intervals`) the model gets its interval table.
    """
    model = MilkForecaster(params=params, seed=seed)
    if rows is not None:
        model.fit_rows(rows.loc[rows["Fecha"] <= split.validation_origin])
    else:
        model.fit(
            _training_rows(frame, split), split.train_origins, date_stride=TRAINING_DATE_STRIDE
        )
    return model if residuals is None else attach_intervals(model, residuals)


def refit_on_window(
    frame: pd.DataFrame,
    split: WindowSplit,
    params: dict[str, Any],
    *,
    seed: int = 0,
    rows: pd.DataFrame | None = None,
    residuals: pd.DataFrame | None = None,
    evaluation: Evaluation | None = None,
) -> MilkForecaster:
    """Refit with the same parameters on the whole window, ``V`` included.

    Its interval table, when ``residuals`` are given, adds the validation month's own
    out-of-sample residuals (``evaluation``) to the training folds' ones.
    """
    model = MilkForecaster(params=params, seed=seed)
    if rows is not None:
        model.fit_rows(rows.loc[rows["Fecha"] <= split.validation_month.end])
    else:
        window = _window_rows(frame, split.training_months[0], split.validation_month)
        model.fit(window, split.refit_origins, date_stride=TRAINING_DATE_STRIDE)
    if residuals is None:
        return model
    if evaluation is not None:
        own = evaluation_residuals(evaluation.predictions, split.validation_origin)
        residuals = pd.concat([residuals, own], ignore_index=True)
    return attach_intervals(model, residuals)


def calibrate_intervals(
    frame: pd.DataFrame,
    split: WindowSplit,
    params: dict[str, Any],
    *,
    seed: int = 0,
    rows: pd.DataFrame | None = None,
    verdicts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Out-of-sample residuals on folds of the training months (never ``V``), for intervals."""
    if rows is None:
        rows = build_window_rows(frame, split, verdicts)
    return fold_residuals(
        frame, rows, params, split.validation_origin, seed=seed, verdicts=verdicts
    )


def train_and_evaluate(
    frame: pd.DataFrame,
    validation_month: Month,
    *,
    seed: int = 0,
    n_trials: int = DEFAULT_N_TRIALS,
    timeout_s: float | None = DEFAULT_TIMEOUT_S,
) -> TrainingOutcome:
    """Run every step: split, tune, fit on training months, evaluate on ``V``, refit on all.

    Args:
        frame: Clean tidy rows of the window ``V-12 .. V``.
        validation_month: ``V``.
        seed: Seed for the search and LightGBM.
        n_trials: Optuna trials; 0 (default) uses the fixed settings and chooses only the
            nothing else.
        timeout_s: Wall-time cap of the search.

    Returns:
        The outcome, with the refit forecaster and timings.
    """
    timings: dict[str, float] = {}
    started = time.perf_counter()
    split = split_window(frame, validation_month)

    step = time.perf_counter()
    verdicts = window_verdicts(frame, split)
    rows = build_window_rows(frame, split, verdicts)
    timings["features"] = time.perf_counter() - step

    step = time.perf_counter()
    tuning = tune(frame, split, n_trials=n_trials, seed=seed, timeout_s=timeout_s, rows=rows)
    timings["tune"] = time.perf_counter() - step

    step = time.perf_counter()
    residuals = calibrate_intervals(
        frame, split, tuning.best_params, seed=seed, rows=rows, verdicts=verdicts
    )
    timings["intervals"] = time.perf_counter() - step

    step = time.perf_counter()
    fitted = fit_forecaster(
        frame, split, tuning.best_params, seed=seed, rows=rows, residuals=residuals
    )
    timings["fit"] = time.perf_counter() - step

    step = time.perf_counter()
    evaluation = evaluate_on_month(fitted, frame, validation_month, verdicts)
    timings["evaluate"] = time.perf_counter() - step

    step = time.perf_counter()
    refit = refit_on_window(
        frame,
        split,
        tuning.best_params,
        seed=seed,
        rows=rows,
        residuals=residuals,
        evaluation=evaluation,
    )
    timings["refit"] = time.perf_counter() - step
    timings["total"] = time.perf_counter() - started

    return assemble_outcome(split, tuning, evaluation, refit, timings)


def assemble_outcome(
    split: WindowSplit,
    tuning: TuningResult,
    evaluation: Evaluation,
    refit: MilkForecaster,
    timings: dict[str, float] | None = None,
) -> TrainingOutcome:
    """The outcome of a run from its steps (run in a row here, or as the flow's tasks)."""
    return TrainingOutcome(
        validation_month=split.validation_month,
        metrics=with_ratios(evaluation.metrics),
        params=tuning.best_params,
        forecaster=refit,
        evaluation=evaluation,
        split=split,
        tuning=tuning,
        timings=timings or {},
    )

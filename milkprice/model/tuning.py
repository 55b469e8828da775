"""Choosing the forecaster's parameters on time-ordered folds inside the training window.

By default (``n_trials=0``) the LightGBM settings are the fixed
:data:`milkprice.model.forecast.DEFAULT_PARAMS` and only the shrink factor and the threshold of
the dead zone are chosen on the folds (three fits). With ``n_trials > 0`` an Optuna search also
chooses the loss (Huber or L2) and the trees; on the real data it did not beat the fixed settings
(a 12-trial search scored on three folds mostly selects noise), so it is an option, not the default.

Folds: for each of the last ``n_folds`` month-end origins of the window, the model is trained
on every supervised row whose target date is on or before that origin and scored on the month
after it. The validation month is never seen. The score of a set of parameters is the mean over
folds of ``(RMSE / naive RMSE + MAE / naive MAE) / 2``: both metrics count equally, relative to
the naive forecast (1.0 = as good as naive). For each parameter set the shrink factor and the
soft-threshold of the predicted change are chosen on a grid from the same fold predictions
(no refit needed), so they are tuned on the same folds as the trees.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from milkprice.model.features import (
    ANCHOR_COLUMN,
    FEATURE_COLUMNS,
    TARGET_COLUMN,
    build_training_set,
)
from milkprice.model.forecast import (
    DEFAULT_N_JOBS,
    DEFAULT_PARAMS,
    adjust_change,
    fit_booster,
    make_dataset,
)
from milkprice.months import Month, month_range

__all__ = [
    "SHRINK_GRID",
    "THRESHOLD_GRID",
    "TRAINING_DATE_STRIDE",
    "TuningResult",
    "training_origins",
    "tune_hyperparameters",
]

SHRINK_GRID: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 2.0)
THRESHOLD_GRID: tuple[float, ...] = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5)
TRAINING_DATE_STRIDE = 3
_MIN_FOLD_TRAIN_ORIGINS = 3
_MID_MONTH_DAY = 15


@dataclass
class TuningResult:
    """Outcome of the search.

    Attributes:
        best_params: Parameters for :class:`milkprice.model.forecast.MilkForecaster` (incl. shrink).
        best_score: Best inner-fold score (relative to naive; lower is better, 1.0 = naive).
        n_trials: Trials completed.
        fold_origins: Origins of the inner validation folds.
        seconds: Wall time of the search.
        trials: One row per trial: number, score, shrink and the sampled parameters.
    """

    best_params: dict[str, Any]
    best_score: float
    n_trials: int
    fold_origins: list[pd.Timestamp]
    seconds: float
    trials: pd.DataFrame = field(repr=False)


def training_origins(months: Sequence[Month], cutoff: pd.Timestamp) -> list[pd.Timestamp]:
    """Training origins: month ends and the 15th, from the first month's end until ``cutoff``.

    A second origin in mid-month doubles the number of distinct situations the model learns
    from (prices seen at different points between re-pricings) at little cost; rows are later
    restricted to targets on or before the fitting cutoff, so nothing leaks.

    Args:
        months: Months with data (only the first one matters).
        cutoff: No origin at or after this instant.

    Returns:
        Sorted origins.
    """
    if not months:
        return []
    first = min(months)
    origins: list[pd.Timestamp] = []
    for month in month_range(first, Month.of(pd.Timestamp(cutoff))):
        mid = month.start + pd.Timedelta(days=_MID_MONTH_DAY - 1)
        origins.extend(o for o in (mid, month.end) if first.end <= o < cutoff)
    return origins


def _fold_scores(
    actual: np.ndarray, anchor: np.ndarray, change: np.ndarray, folds: list[np.ndarray]
) -> np.ndarray:
    """Score per (shrink, threshold) grid point, averaged over folds."""
    scores = np.zeros((len(SHRINK_GRID), len(THRESHOLD_GRID)))
    for valid in folds:
        truth = actual[valid] - anchor[valid]
        naive_rmse = max(float(np.sqrt(np.mean(truth**2))), 1e-9)
        naive_mae = max(float(np.mean(np.abs(truth))), 1e-9)
        for j, threshold in enumerate(THRESHOLD_GRID):
            unit = adjust_change(change[valid], 1.0, threshold)
            for i, shrink in enumerate(SHRINK_GRID):
                error = truth - shrink * unit
                scores[i, j] += (
                    np.sqrt(np.mean(error**2)) / naive_rmse + np.mean(np.abs(error)) / naive_mae
                ) / 2
    return scores / len(folds)


_SEARCHED = (
    "objective",
    "alpha",
    "learning_rate",
    "num_boost_round",
    "num_leaves",
    "min_data_in_leaf",
    "feature_fraction",
    "lambda_l2",
)


def _suggest(trial: optuna.Trial) -> dict[str, Any]:
    # Bounded so that one trial (a fit per fold) stays well under a second.
    return {
        "objective": trial.suggest_categorical("objective", ["huber", "l2"]),
        "alpha": trial.suggest_float("alpha", 0.2, 2.0, log=True),
        "learning_rate": trial.suggest_float("learning_rate", 0.03, 0.2, log=True),
        "num_boost_round": trial.suggest_int("num_boost_round", 50, 150, step=25),
        "num_leaves": trial.suggest_int("num_leaves", 4, 31),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 400, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.5, 1.0),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-2, 10.0, log=True),
    }


def _folds(rows: pd.DataFrame, n_folds: int) -> tuple[list[pd.Timestamp], list[np.ndarray]]:
    origins = pd.DatetimeIndex(rows["origin"])
    month_ends = sorted({o for o in origins.unique() if o.is_month_end})
    chosen = [
        o
        for o in month_ends
        if origins[(rows["Fecha"] <= o).to_numpy()].nunique() >= _MIN_FOLD_TRAIN_ORIGINS
    ][-n_folds:]
    return chosen, [(origins == o) for o in chosen]


def tune_hyperparameters(
    frame: pd.DataFrame,
    training_months: list[Month],
    *,
    n_trials: int,
    seed: int,
    timeout_s: float | None = None,
    n_folds: int = 3,
    n_jobs: int = DEFAULT_N_JOBS,
    rows: pd.DataFrame | None = None,
) -> TuningResult:
    """Search LightGBM parameters, shrink and threshold on inner time-ordered folds.

    Args:
        frame: Clean tidy rows; only rows in ``training_months`` are used.
        training_months: Months of the training window that have data.
        n_trials: Number of Optuna trials (the first one is :data:`DEFAULT_PARAMS`); 0 means
            no search: the fixed :data:`DEFAULT_PARAMS`, with only shrink and threshold chosen.
        seed: Seed for the TPE sampler and LightGBM; same seed, same result (unless the
            timeout cuts the search short).
        timeout_s: Optional wall-time cap for the search (a safety net).
        n_folds: Number of inner folds (the last month-end origins of the window).
        n_jobs: LightGBM threads.
        rows: Optional prebuilt training rows (``build_training_set`` over
            :func:`training_origins`); rows with a target after the last training month are
            ignored.

    Returns:
        The best parameters (including ``shrink`` and ``threshold``) and the trial table.

    Raises:
        ValueError: If the window is too short for any inner fold, or ``n_trials`` is negative.
    """
    if n_trials < 0:
        raise ValueError(f"n_trials must be 0 (fixed settings) or more, got {n_trials}")
    started = time.perf_counter()
    months = sorted(set(training_months))
    if not months:
        raise ValueError("tuning needs training months, got none")
    cutoff = months[-1].end
    if rows is None:
        inside = frame.loc[frame["Fecha"].between(months[0].start, cutoff)]
        rows = build_training_set(
            inside, training_origins(months, cutoff), date_stride=TRAINING_DATE_STRIDE
        )
    rows = rows.loc[rows["Fecha"] <= cutoff].reset_index(drop=True)
    fold_origins, folds = _folds(rows, n_folds)
    if not folds:
        raise ValueError(
            f"no inner fold with {_MIN_FOLD_TRAIN_ORIGINS} earlier origins in "
            f"{[str(m) for m in months]}; the window is too short to tune"
        )
    train_sets = [make_dataset(rows.loc[(rows["Fecha"] <= o).to_numpy()]) for o in fold_origins]
    valid_x = [rows.loc[valid, FEATURE_COLUMNS].to_numpy(dtype=float) for valid in folds]
    actual = rows[TARGET_COLUMN].to_numpy(dtype=float)
    anchor = rows[ANCHOR_COLUMN].to_numpy(dtype=float)

    def score(params: dict[str, Any]) -> tuple[float, float, float]:
        change = np.zeros(len(rows))
        for train_set, valid, x in zip(train_sets, folds, valid_x, strict=True):
            change[valid] = fit_booster(train_set, params, seed, n_jobs).predict(x)
        scores = _fold_scores(actual, anchor, change, folds)
        i, j = np.unravel_index(int(np.argmin(scores)), scores.shape)
        return float(scores[i, j]), SHRINK_GRID[i], THRESHOLD_GRID[j]

    if n_trials == 0:
        best_score, shrink, threshold = score(dict(DEFAULT_PARAMS))
        return TuningResult(
            best_params={**DEFAULT_PARAMS, "shrink": shrink, "threshold": threshold},
            best_score=best_score,
            n_trials=0,
            fold_origins=fold_origins,
            seconds=time.perf_counter() - started,
            trials=pd.DataFrame(
                [{"number": 0, "score": best_score, "shrink": shrink, "threshold": threshold}]
            ),
        )

    def objective(trial: optuna.Trial) -> float:
        value, shrink, threshold = score({**DEFAULT_PARAMS, **_suggest(trial)})
        trial.set_user_attr("shrink", shrink)
        trial.set_user_attr("threshold", threshold)
        return value

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(6, n_trials))
    study = optuna.create_study(direction="minimize", sampler=sampler)
    study.enqueue_trial({k: DEFAULT_PARAMS[k] for k in _SEARCHED})
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study.optimize(objective, n_trials=n_trials, timeout=timeout_s)
    finally:
        optuna.logging.set_verbosity(verbosity)

    best = study.best_trial
    best_params = {
        **DEFAULT_PARAMS,
        **best.params,
        "shrink": best.user_attrs["shrink"],
        "threshold": best.user_attrs["threshold"],
    }
    trials = pd.DataFrame(
        [
            {"number": t.number, "score": t.value, **t.user_attrs, **t.params}
            for t in study.trials
            if t.state == optuna.trial.TrialState.COMPLETE
        ]
    )
    return TuningResult(
        best_params=best_params,
        best_score=float(best.value),
        n_trials=len(trials),
        fold_origins=fold_origins,
        seconds=time.perf_counter() - started,
        trials=trials,
    )

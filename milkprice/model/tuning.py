"""Choosing the forecaster's parameters on time-ordered folds inside the training window.

By default (``n_trials=0``) nothing is searched: the forecaster's fixed
:data:`milkprice.model.forecast.DEFAULT_PARAMS` are used (chosen once on the design months; a
search per run on three folds mostly selects noise). With ``n_trials > 0`` an Optuna search
chooses the boosting rounds, leaves, minimum leaf size and learning rate of both parts.

Folds: for each of the last ``n_folds`` month-end origins of the window, the model is trained
on every supervised row whose target date is on or before that origin and scored on the month
after it. The validation month is never seen. The score of a set of parameters is the mean over
folds of ``(MAE of the median / naive MAE + RMSE of the mean / naive RMSE) / 2``: both metrics
count equally, relative to the naive forecast (1.0 = as good as naive).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from milkprice.model.features import ANCHOR_COLUMN, TARGET_COLUMN, build_training_set
from milkprice.model.forecast import DEFAULT_N_JOBS, DEFAULT_PARAMS, MilkForecaster
from milkprice.months import Month, month_range

__all__ = [
    "TRAINING_DATE_STRIDE",
    "TuningResult",
    "training_origins",
    "tune_hyperparameters",
]

TRAINING_DATE_STRIDE = 3
_MIN_FOLD_TRAIN_ORIGINS = 3
_MID_MONTH_DAY = 15


@dataclass
class TuningResult:
    """Outcome of the search.

    Attributes:
        best_params: Parameters for :class:`milkprice.model.forecast.MilkForecaster` .
        best_score: Best inner-fold score (relative to naive; lower is better, 1.0 = naive).
        n_trials: Trials completed.
        fold_origins: Origins of the inner validation folds.
        seconds: Wall time of the search.
        trials: One row per trial: number, score and the sampled parameters.
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


_SEARCHED = ("learning_rate", "num_boost_round", "num_leaves", "min_data_in_leaf")


def _suggest(trial: optuna.Trial) -> dict[str, Any]:
    # Bounded so that one trial (two small fits per fold) stays well under a second.
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_boost_round": trial.suggest_int("num_boost_round", 20, 150, step=10),
        "num_leaves": trial.suggest_int("num_leaves", 4, 31),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 400, log=True),
    }


def _fold_score(
    rows: pd.DataFrame,
    fold_origins: list[pd.Timestamp],
    folds: list[np.ndarray],
    params: dict[str, Any],
    seed: int,
) -> float:
    scores = []
    for origin, valid in zip(fold_origins, folds, strict=True):
        train = rows.loc[(rows["Fecha"] <= origin).to_numpy()]
        held = rows.loc[valid]
        model = MilkForecaster(params=params, seed=seed, n_jobs=DEFAULT_N_JOBS).fit_rows(train)
        distribution = model.distribution(held)
        actual = held[TARGET_COLUMN].to_numpy(dtype=float)
        naive = held[ANCHOR_COLUMN].to_numpy(dtype=float)
        naive_mae = max(float(np.mean(np.abs(actual - naive))), 1e-9)
        naive_rmse = max(float(np.sqrt(np.mean((actual - naive) ** 2))), 1e-9)
        median_mae = float(np.mean(np.abs(actual - distribution.median())))
        mean_rmse = float(np.sqrt(np.mean((actual - distribution.mean()) ** 2)))
        scores.append((median_mae / naive_mae + mean_rmse / naive_rmse) / 2)
    return float(np.mean(scores))


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
    """Search the forecaster's LightGBM parameters on inner time-ordered folds.

    Args:
        frame: Clean tidy rows; only rows in ``training_months`` are used.
        training_months: Months of the training window that have data.
        n_trials: Number of Optuna trials (the first one is :data:`DEFAULT_PARAMS`); 0 means
            no search: the fixed :data:`DEFAULT_PARAMS`.
        seed: Seed for the TPE sampler and LightGBM; same seed, same result (unless the
            timeout cuts the search short).
        timeout_s: Optional wall-time cap for the search (a safety net).
        n_folds: Number of inner folds (the last month-end origins of the window).
        n_jobs: LightGBM threads.
        rows: Optional prebuilt training rows (``build_training_set`` over
            :func:`training_origins`); rows with a target after the last training month are
            ignored.

    Returns:
        The best parameters and the trial table.

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
    if n_trials == 0:
        return TuningResult(
            best_params=dict(DEFAULT_PARAMS),
            best_score=float("nan"),
            n_trials=0,
            fold_origins=fold_origins,
            seconds=time.perf_counter() - started,
            trials=pd.DataFrame([{"number": 0, "score": float("nan")}]),
        )

    def objective(trial: optuna.Trial) -> float:
        return _fold_score(rows, fold_origins, folds, {**DEFAULT_PARAMS, **_suggest(trial)}, seed)

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
    best_params = {**DEFAULT_PARAMS, **best.params}
    trials = pd.DataFrame(
        [
            {"number": t.number, "score": t.value, **t.params}
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

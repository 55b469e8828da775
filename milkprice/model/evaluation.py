"""Scoring one month: forecast it from the end of the month before, beside the baselines.

The model's median is scored with MAE, its mean with RMSE, ``p_change`` with the Brier score
against the training window's base rates, and the intervals with coverage and interval score
beside the same conformal method around naive; all on the same rows. Split from
:mod:`milkprice.model.training` (which re-exports these names), never reads files.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from milkprice.model.baseline import trusted_last_price
from milkprice.model.calibration import calibration_origins, naive_fold_residuals
from milkprice.model.distribution import CHANGE_TOLERANCE, QUANTILE_LEVELS
from milkprice.model.features import SERIES_KEYS, build_features, publication_dates
from milkprice.model.forecast import MilkForecaster
from milkprice.model.intervals import INTERVAL_COLUMNS, LEVELS, IntervalTable, interval_score
from milkprice.model.metrics import PREDICTION_COLUMN, mae, mean_forecast, naive_forecast, rmse
from milkprice.model.tuning import training_origins
from milkprice.months import Month, month_range

__all__ = [
    "HISTORY_MONTHS",
    "Evaluation",
    "evaluate_on_month",
    "interval_metrics",
    "naive_interval_scores",
    "score_distribution",
    "with_ratios",
]

# The months of history before the validation month (the training window's length).
HISTORY_MONTHS = 12


def _window_rows(frame: pd.DataFrame, first: Month, last: Month) -> pd.DataFrame:
    return frame.loc[frame["Fecha"].between(first.start, last.end)]


@dataclass
class Evaluation:
    """Scores on one month and the rows behind them.

    Attributes:
        month: The evaluated month.
        metrics: ``val_rmse``, ``val_mae``, ``naive_val_*``, ``mean_val_*``, ``n_scored``, ...
        predictions: ``SERIES_KEYS``, ``Fecha``, ``actual``, ``model``, ``naive``, ``mean``
            for every (series, publication date) of the month (``actual`` may be NaN).
    """

    month: Month
    metrics: dict[str, float]
    predictions: pd.DataFrame = field(repr=False)


def evaluate_on_month(
    forecaster: MilkForecaster,
    frame: pd.DataFrame,
    validation_month: Month,
    verdicts: pd.DataFrame | None = None,
) -> Evaluation:
    """Forecast ``validation_month`` from the end of the month before and score it.

    The history is the 12 months before the validation month. Every series present in the
    month is forecast; series without history get the fallback anchor. The model's median is
    scored with MAE (``val_mae``) and its mean with RMSE (``val_rmse``), beside the naive last
    published price, the trusted last price (the anchor after quality verdicts) and the
    series mean, all on the same rows (actual not NaN); ``p_change`` with the Brier score
    against the base rates of the model's training window; the intervals with coverage and
    interval score.

    Args:
        forecaster: A fitted forecaster (e.g. a freshly fit one, or the current champion).
        frame: Clean tidy rows including the validation month and the months before it.
        validation_month: The month to score.
        verdicts: Quality verdicts of the window (:func:`window_verdicts`; computed from the
            history when not given).

    Returns:
        Metrics and the per-row predictions (``model`` is the median, ``model_mean`` the mean).
    """
    origin = validation_month.shift(-1).end
    history = _window_rows(
        frame, validation_month.shift(-HISTORY_MONTHS), validation_month.shift(-1)
    )
    actual = _window_rows(frame, validation_month, validation_month)
    if actual.empty:
        raise ValueError(f"validation month {validation_month} has no rows in the frame")
    dates = publication_dates(actual, validation_month)
    series = actual[SERIES_KEYS].drop_duplicates()
    features = build_features(history, origin, dates, series=series, verdicts=verdicts)
    distribution = forecaster.distribution(features)
    table = features[[*SERIES_KEYS, "Fecha"]].copy()
    table["model"] = distribution.median()
    table["model_mean"] = distribution.mean()
    table["p_change"] = distribution.p_change()
    table["anchor"] = distribution.anchor
    table["trusted"] = trusted_last_price(features)
    table["p_glitch"] = features["p_glitch"].to_numpy(dtype=float)
    table["previous_level"] = features["previous_level"].to_numpy(dtype=float)
    horizon = (table["Fecha"] - origin).dt.days.to_numpy(dtype=float)
    table["base_p_change"] = forecaster.base_rate(features, horizon)
    for name, values in distribution.quantiles(QUANTILE_LEVELS).items():
        table[f"q_{name}"] = values
    baselines = {
        "naive": naive_forecast(history, origin, dates, series=series),
        "mean": mean_forecast(history, origin, dates, series=series),
    }
    for name, predicted in baselines.items():
        renamed = predicted.rename(columns={PREDICTION_COLUMN: name})
        table = table.merge(renamed, on=[*SERIES_KEYS, "Fecha"], how="left")
    observed = actual[[*SERIES_KEYS, "Fecha", "Precio"]].rename(columns={"Precio": "actual"})
    table = observed.merge(table, on=[*SERIES_KEYS, "Fecha"], how="left")
    table = table.sort_values([*SERIES_KEYS, "Fecha"]).reset_index(drop=True)
    intervals = getattr(forecaster, "intervals_", None)
    if intervals is not None:
        horizon = (table["Fecha"] - origin).dt.days.to_numpy(dtype=float)
        bases = {name: table[f"q_{name}"].to_numpy(dtype=float) for name in INTERVAL_COLUMNS}
        table = table.assign(
            **intervals.bounds(table["model"].to_numpy(dtype=float), bases, horizon)
        )
    metrics = score_distribution(table)
    if intervals is not None:
        metrics.update(interval_metrics(table))
        # The evaluated model's own (from residuals before the month): replays its aggregates.
        if hasattr(forecaster, "aggregate_dependence_"):
            metrics["aggregate_dependence"] = float(forecaster.aggregate_dependence_)
        metrics.update(naive_interval_scores(frame, validation_month, table))
    return Evaluation(month=validation_month, metrics=metrics, predictions=table)


def naive_interval_scores(
    frame: pd.DataFrame, validation_month: Month, table: pd.DataFrame
) -> dict[str, float]:
    """Interval scores of the same conformal method around the naive forecast.

    The reference the model's intervals must beat, calibrated on the same training origins.
    """
    origin = validation_month.shift(-1).end
    months = month_range(validation_month.shift(-HISTORY_MONTHS), validation_month.shift(-1))
    origins = calibration_origins(training_origins(months, origin), origin)
    residuals = naive_fold_residuals(frame, origins, origin)
    intervals = IntervalTable.fit(
        residuals["residual"].to_numpy(), residuals["horizon_days"].to_numpy()
    )
    scored = table.dropna(subset=["actual"])
    horizon = (scored["Fecha"] - origin).dt.days.to_numpy(dtype=float)
    bounds = intervals.apply(scored["naive"].to_numpy(dtype=float), horizon)
    actual = scored["actual"].to_numpy(dtype=float)
    return {
        f"naive_interval_score_{level}": interval_score(
            actual, bounds[f"lower_{level}"], bounds[f"upper_{level}"], level
        )
        for level in LEVELS
    }


def score_distribution(table: pd.DataFrame) -> dict[str, float]:
    """Point and probability scores of an evaluation table, on the rows with an actual price.

    ``val_mae`` scores the median (``model``), ``val_rmse`` the mean (``model_mean``); the
    baselines (``naive``, ``trusted``, ``mean``) are single numbers scored with both.
    """
    scored = table.dropna(subset=["actual", "model", "naive"])
    if scored.empty:
        raise ValueError("no row has both an actual price and every forecast; nothing to score")
    actual = scored["actual"].to_numpy(dtype=float)
    metrics = {
        "val_mae": mae(actual, scored["model"]),
        "val_rmse": rmse(actual, scored["model_mean"]),
        "val_median_rmse": rmse(actual, scored["model"]),
        "val_mean_mae": mae(actual, scored["model_mean"]),
    }
    for name in ("naive", "trusted", "mean"):
        metrics[f"{name}_val_mae"] = mae(actual, scored[name])
        metrics[f"{name}_val_rmse"] = rmse(actual, scored[name])
    changed = (np.abs(actual - scored["anchor"].to_numpy(dtype=float)) > CHANGE_TOLERANCE).astype(
        float
    )
    metrics["brier_change"] = float(np.mean((scored["p_change"].to_numpy() - changed) ** 2))
    metrics["base_brier_change"] = float(
        np.mean((scored["base_p_change"].to_numpy() - changed) ** 2)
    )
    metrics["n_scored"] = float(len(scored))
    metrics["n_unscored"] = float(table["actual"].notna().sum() - len(scored))
    return metrics


def interval_metrics(table: pd.DataFrame) -> dict[str, float]:
    """Coverage, mean width and interval score of each level on the rows with an actual price."""
    scored = table.dropna(subset=["actual"])
    actual = scored["actual"].to_numpy(dtype=float)
    out: dict[str, float] = {}
    for level in LEVELS:
        lower = scored[f"lower_{level}"].to_numpy(dtype=float)
        upper = scored[f"upper_{level}"].to_numpy(dtype=float)
        out[f"coverage_{level}"] = float(np.mean((actual >= lower) & (actual <= upper)))
        out[f"width_{level}"] = float(np.mean(upper - lower))
        out[f"interval_score_{level}"] = interval_score(actual, lower, upper, level)
    return out


def with_ratios(metrics: dict[str, float]) -> dict[str, float]:
    """The metrics plus their ratios.

    ``rmse_ratio_to_naive``, ``mae_ratio_to_naive`` (model / naive), the same to the trusted
    last price, and ``brier_skill`` (1 - Brier / base Brier).
    """
    out = dict(metrics)
    for metric in ("rmse", "mae"):
        for baseline in ("naive", "trusted"):
            reference = metrics.get(f"{baseline}_val_{metric}")
            if reference is None:
                continue
            out[f"{metric}_ratio_to_{baseline}"] = (
                metrics[f"val_{metric}"] / reference if reference else float("nan")
            )
    base = metrics.get("base_brier_change")
    if base is not None:
        out["brier_skill"] = 1 - metrics["brier_change"] / base if base else float("nan")
    return out

"""Error metrics, the two baselines, and scoring several forecasts on the same rows.

Scored rows are the validation rows whose actual ``Precio`` is not NaN and for which every
forecast being compared has a value. The baselines never leave a scored row without a value:
a series with no observed price at the origin gets the fallback anchor (state, then national
mean of the same Tipo/Canal, see :mod:`milkprice.model.features`), so model, naive and mean are
always scored on exactly the same rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from milkprice.model.features import ANCHOR_COLUMN, SERIES_KEYS, last_prices

__all__ = [
    "PREDICTION_COLUMN",
    "mae",
    "mean_forecast",
    "naive_forecast",
    "rmse",
    "score_forecasts",
]

PREDICTION_COLUMN = "prediction"


def rmse(actual: np.ndarray | pd.Series, predicted: np.ndarray | pd.Series) -> float:
    """Root mean squared error."""
    diff = np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)
    return float(np.sqrt(np.mean(diff**2)))


def mae(actual: np.ndarray | pd.Series, predicted: np.ndarray | pd.Series) -> float:
    """Mean absolute error."""
    diff = np.asarray(actual, dtype=float) - np.asarray(predicted, dtype=float)
    return float(np.mean(np.abs(diff)))


def _expand(per_series: pd.DataFrame, target_dates: Sequence[pd.Timestamp]) -> pd.DataFrame:
    dates = pd.DataFrame({"Fecha": pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in target_dates))})
    return per_series.merge(dates, how="cross")[[*SERIES_KEYS, "Fecha", PREDICTION_COLUMN]]


def naive_forecast(
    history: pd.DataFrame,
    origin: pd.Timestamp,
    target_dates: Sequence[pd.Timestamp],
    series: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Last observed price per series at the origin, repeated over the target dates.

    Series never observed get the fallback anchor (see module docstring). ``series`` optionally
    fixes which series to forecast (default: every series in the history).
    """
    anchors = last_prices(history, origin, series).rename(
        columns={ANCHOR_COLUMN: PREDICTION_COLUMN}
    )
    return _expand(anchors, target_dates)


def mean_forecast(
    history: pd.DataFrame,
    origin: pd.Timestamp,
    target_dates: Sequence[pd.Timestamp],
    series: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Mean price per series over the history up to the origin (the training window).

    Series never observed get the naive fallback, so the mean baseline covers the same rows.
    """
    origin = pd.Timestamp(origin)
    past = history.loc[history["Fecha"] <= origin]
    means = past.groupby(SERIES_KEYS, dropna=False)["Precio"].mean().rename("mean").reset_index()
    anchors = last_prices(history, origin, series).merge(means, on=SERIES_KEYS, how="left")
    anchors[PREDICTION_COLUMN] = anchors["mean"].fillna(anchors[ANCHOR_COLUMN])
    return _expand(anchors, target_dates)


def score_forecasts(
    actual_frame: pd.DataFrame, predictions: Mapping[str, pd.DataFrame]
) -> dict[str, float]:
    """RMSE and MAE of several forecasts on exactly the same rows.

    Args:
        actual_frame: Tidy rows with ``SERIES_KEYS``, ``Fecha`` and the actual ``Precio``.
        predictions: Name -> frame with ``SERIES_KEYS``, ``Fecha`` and ``prediction``. The name
            ``"model"`` gives keys ``val_rmse``/``val_mae``; any other name ``n`` gives
            ``n_val_rmse``/``n_val_mae``.

    Returns:
        The metrics plus ``n_scored`` (rows scored) and ``n_unscored`` (rows with an actual price
        that some forecast did not cover; 0 with this package's forecasters).
    """
    if not predictions:
        raise ValueError("score_forecasts needs at least one forecast")
    keys = [*SERIES_KEYS, "Fecha"]
    table = actual_frame.loc[actual_frame["Precio"].notna(), [*keys, "Precio"]]
    n_actual = len(table)
    for name, frame in predictions.items():
        missing = [c for c in [*keys, PREDICTION_COLUMN] if c not in frame.columns]
        if missing:
            raise ValueError(f"forecast {name!r} lacks columns {missing}")
        renamed = frame[[*keys, PREDICTION_COLUMN]].rename(columns={PREDICTION_COLUMN: name})
        table = table.merge(renamed, on=keys, how="left", validate="one_to_one")
    table = table.dropna(subset=list(predictions))
    if table.empty:
        raise ValueError("no row has both an actual price and every forecast; nothing to score")
    scores: dict[str, float] = {}
    for name in predictions:
        prefix = "" if name == "model" else f"{name}_"
        scores[f"{prefix}val_rmse"] = rmse(table["Precio"], table[name])
        scores[f"{prefix}val_mae"] = mae(table["Precio"], table[name])
    scores["n_scored"] = float(len(table))
    scores["n_unscored"] = float(n_actual - len(table))
    return scores

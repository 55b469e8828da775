"""Out-of-sample residuals for the interval table, from time-ordered folds of the training run.

For each of the last origins before a cut-off (month ends and mid-months, as in training), a
model with the run's parameters is fit on the supervised rows whose target is on or before that
origin, and forecasts every publication date after it, up to the longest horizon served
(:data:`milkprice.model.intervals.HORIZON_EDGES`) or the cut-off, whichever comes first. The
residuals ``actual - forecast`` are out of sample by construction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from milkprice.model.features import ANCHOR_COLUMN, SERIES_KEYS, build_features, last_prices
from milkprice.model.forecast import MilkForecaster
from milkprice.model.intervals import HORIZON_EDGES, IntervalTable

__all__ = [
    "CALIBRATION_ORIGINS",
    "RESIDUAL_COLUMNS",
    "attach_intervals",
    "calibration_origins",
    "evaluation_residuals",
    "fold_residuals",
    "naive_fold_residuals",
]

# Eight origins (four months of month ends and mid-months): about 40,000 residuals, the longest
# horizon bucket fed by the oldest four, for eight small fits.
CALIBRATION_ORIGINS = 8
RESIDUAL_COLUMNS = ["origin", "horizon_days", "residual"]
_MIN_EARLIER_ORIGINS = 3


def calibration_origins(
    origins: Sequence[pd.Timestamp], cutoff: pd.Timestamp, count: int = CALIBRATION_ORIGINS
) -> list[pd.Timestamp]:
    """The last ``count`` origins before ``cutoff`` that have enough earlier ones to fit on."""
    before = sorted({pd.Timestamp(o) for o in origins if pd.Timestamp(o) < cutoff})
    return before[_MIN_EARLIER_ORIGINS:][-count:]


def _targets(
    dates: pd.DatetimeIndex, origin: pd.Timestamp, cutoff: pd.Timestamp, days: int
) -> list:
    last = min(origin + pd.Timedelta(days=days), cutoff)
    return list(dates[(dates > origin) & (dates <= last)])


def fold_residuals(
    frame: pd.DataFrame,
    rows: pd.DataFrame,
    params: dict[str, Any],
    cutoff: pd.Timestamp,
    *,
    seed: int = 0,
    n_origins: int = CALIBRATION_ORIGINS,
    max_horizon_days: int = HORIZON_EDGES[-1],
) -> pd.DataFrame:
    """Residuals of models fit up to each of the last ``n_origins`` origins before ``cutoff``.

    Args:
        frame: Clean tidy rows (only rows up to ``cutoff`` are used, as actuals and history).
        rows: Supervised rows of the window (``milkprice.model.training.build_window_rows``).
        params: The run's (tuned) parameters.
        cutoff: Nothing after this instant is read.
        seed: LightGBM seed.
        n_origins: How many origins.
        max_horizon_days: Longest horizon forecast from each origin.

    Returns:
        ``origin``, ``horizon_days`` and ``residual`` (actual - forecast), one row per scored
        (series, date).

    Raises:
        ValueError: no origin has enough earlier data to fit a model.
    """
    cutoff = pd.Timestamp(cutoff)
    known = frame.loc[frame["Fecha"] <= cutoff]
    actual = known.dropna(subset=["Precio"])[[*SERIES_KEYS, "Fecha", "Precio"]]
    dates = pd.DatetimeIndex(sorted(known["Fecha"].unique()))
    parts: list[pd.DataFrame] = []
    for origin in calibration_origins(pd.unique(rows["origin"]), cutoff, n_origins):
        targets = _targets(dates, origin, cutoff, max_horizon_days)
        train = rows.loc[(rows["Fecha"] <= origin).to_numpy()]
        if not targets or train.empty:
            continue
        model = MilkForecaster(params=params, seed=seed).fit_rows(train)
        features = build_features(known, origin, targets)
        features["forecast"] = model.predict_rows(features)
        parts.append(_residuals(features, actual, origin))
    if not parts:
        raise ValueError(
            f"no origin before {cutoff.date()} has {_MIN_EARLIER_ORIGINS} earlier origins and "
            "published prices after it; the window is too short to calibrate intervals"
        )
    return pd.concat(parts, ignore_index=True)


def _residuals(forecast: pd.DataFrame, actual: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    scored = forecast.merge(actual, on=[*SERIES_KEYS, "Fecha"], how="inner")
    return pd.DataFrame(
        {
            "origin": origin,
            "horizon_days": (scored["Fecha"] - origin).dt.days.to_numpy(dtype=float),
            "residual": (scored["Precio"] - scored["forecast"]).to_numpy(dtype=float),
        }
    )


def naive_fold_residuals(
    frame: pd.DataFrame,
    origins: Sequence[pd.Timestamp],
    cutoff: pd.Timestamp,
    *,
    max_horizon_days: int = HORIZON_EDGES[-1],
) -> pd.DataFrame:
    """Residuals of the naive forecast (the anchor) from ``origins``, as :func:`fold_residuals`.

    The same conformal method around the last price: the reference that tells whether the
    model's intervals are any sharper than what the naive forecast gives for free.
    """
    cutoff = pd.Timestamp(cutoff)
    known = frame.loc[frame["Fecha"] <= cutoff]
    actual = known.dropna(subset=["Precio"])[[*SERIES_KEYS, "Fecha", "Precio"]]
    dates = pd.DatetimeIndex(sorted(known["Fecha"].unique()))
    parts = []
    for origin in origins:
        targets = _targets(dates, pd.Timestamp(origin), cutoff, max_horizon_days)
        if targets:
            anchors = last_prices(known, origin).rename(columns={ANCHOR_COLUMN: "forecast"})
            grid = anchors.merge(pd.DataFrame({"Fecha": pd.DatetimeIndex(targets)}), how="cross")
            parts.append(_residuals(grid, actual, pd.Timestamp(origin)))
    if not parts:
        raise ValueError(f"no origin before {cutoff.date()} has published prices after it")
    return pd.concat(parts, ignore_index=True)


def evaluation_residuals(predictions: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """Residuals of a month's evaluation (``actual``, ``model`` columns) from its origin."""
    scored = predictions.dropna(subset=["actual", "model"])
    return pd.DataFrame(
        {
            "origin": pd.Timestamp(origin),
            "horizon_days": (scored["Fecha"] - pd.Timestamp(origin)).dt.days.astype(float),
            "residual": (scored["actual"] - scored["model"]).to_numpy(dtype=float),
        }
    )


def attach_intervals(model: MilkForecaster, residuals: pd.DataFrame) -> MilkForecaster:
    """Give ``model`` the interval table fit on ``residuals``; returns the model."""
    finite = residuals.loc[np.isfinite(residuals["residual"])]
    model.intervals_ = IntervalTable.fit(
        finite["residual"].to_numpy(), finite["horizon_days"].to_numpy()
    )
    return model

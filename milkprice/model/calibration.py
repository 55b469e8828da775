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

import pandas as pd

from milkprice.data.quality import assess_readings
from milkprice.model.aggregate import estimate_dependence
from milkprice.model.distribution import QUANTILE_LEVELS
from milkprice.model.features import ANCHOR_COLUMN, SERIES_KEYS, build_features, last_prices
from milkprice.model.forecast import MilkForecaster
from milkprice.model.intervals import HORIZON_EDGES, INTERVAL_COLUMNS, IntervalTable

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
# The series and date of each residual too: their correlation at the same origin and date is
# the dependence of the aggregate bands (milkprice.model.aggregate.estimate_dependence).
RESIDUAL_COLUMNS = [
    *SERIES_KEYS,
    "Fecha",
    "origin",
    "horizon_days",
    "residual",
    *(f"r_{n}" for n in INTERVAL_COLUMNS),
]
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
    verdicts: pd.DataFrame | None = None,
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
        verdicts: Quality verdicts of ``frame``'s readings (computed when not given).

    Returns:
        :data:`RESIDUAL_COLUMNS`: ``residual`` (actual - median) and ``r_<bound>`` (actual - the
        distribution's raw quantile behind each interval bound), one row per scored
        (series, date).

    Raises:
        ValueError: no origin has enough earlier data to fit a model.
    """
    cutoff = pd.Timestamp(cutoff)
    known = frame.loc[frame["Fecha"] <= cutoff]
    actual = known.dropna(subset=["Precio"])[[*SERIES_KEYS, "Fecha", "Precio"]]
    dates = pd.DatetimeIndex(sorted(known["Fecha"].unique()))
    if verdicts is None:
        verdicts = assess_readings(known)
    parts: list[pd.DataFrame] = []
    for origin in calibration_origins(pd.unique(rows["origin"]), cutoff, n_origins):
        targets = _targets(dates, origin, cutoff, max_horizon_days)
        train = rows.loc[(rows["Fecha"] <= origin).to_numpy()]
        if not targets or train.empty:
            continue
        model = MilkForecaster(params=params, seed=seed).fit_rows(train)
        features = build_features(known, origin, targets, verdicts=verdicts)
        distribution = model.distribution(features)
        features["forecast"] = distribution.median()
        for name, values in distribution.quantiles(QUANTILE_LEVELS).items():
            features[f"q_{name}"] = values
        parts.append(_residuals(features, actual, origin))
    if not parts:
        raise ValueError(
            f"no origin before {cutoff.date()} has {_MIN_EARLIER_ORIGINS} earlier origins and "
            "published prices after it; the window is too short to calibrate intervals"
        )
    return pd.concat(parts, ignore_index=True)


def _residuals(forecast: pd.DataFrame, actual: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    scored = forecast.merge(actual, on=[*SERIES_KEYS, "Fecha"], how="inner")
    actual_price = scored["Precio"].to_numpy(dtype=float)
    out = scored[[*SERIES_KEYS, "Fecha"]].reset_index(drop=True)
    out = out.assign(
        **{
            "origin": origin,
            "horizon_days": (scored["Fecha"] - origin).dt.days.to_numpy(dtype=float),
            "residual": actual_price - scored["forecast"].to_numpy(dtype=float),
        }
    )
    for name in INTERVAL_COLUMNS:
        base = scored[f"q_{name}"] if f"q_{name}" in scored else scored["forecast"]
        out[f"r_{name}"] = actual_price - base.to_numpy(dtype=float)
    return out


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
    """Residuals of a month's evaluation (``actual``, ``model``, ``q_<bound>``) from its origin."""
    scored = predictions.dropna(subset=["actual", "model"]).rename(
        columns={"model": "forecast", "actual": "Precio"}
    )
    return _residuals(scored, scored[[*SERIES_KEYS, "Fecha"]], pd.Timestamp(origin))


def attach_intervals(model: MilkForecaster, residuals: pd.DataFrame) -> MilkForecaster:
    """Give ``model`` the interval table and the aggregate dependence fit on ``residuals``.

    ``aggregate_dependence_``: the correlation of the series' residuals within Tipo x Canal at
    the same origin and date (:func:`milkprice.model.aggregate.estimate_dependence`), what the
    bands of state and national averages are simulated with. Returns the model.
    """
    model.intervals_ = IntervalTable.fit_quantiles(
        {name: residuals[f"r_{name}"].to_numpy() for name in INTERVAL_COLUMNS},
        residuals["horizon_days"].to_numpy(),
    )
    model.aggregate_dependence_ = estimate_dependence(residuals)
    return model

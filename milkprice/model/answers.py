"""What every forecast publishes, computed once for batch files, the API and the pyfunc model.

For each (series, date): ``price`` (the median), ``mean``, ``p_change`` and the 80/95% bounds,
read off the forecaster's distribution; the bounds come from its interval table (conformalized
quantiles for the model, conformal offsets around the price for the baseline).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from milkprice.model.baseline import BASELINE_KIND, BaselineForecaster
from milkprice.model.distribution import QUANTILE_LEVELS, Distribution
from milkprice.model.features import FEATURE_COLUMNS, SERIES_KEYS, build_features
from milkprice.model.forecast import MilkForecaster
from milkprice.model.intervals import INTERVAL_COLUMNS, IntervalTable

__all__ = [
    "ANSWER_COLUMNS",
    "DECIMALS",
    "Forecaster",
    "answer_columns",
    "forecast_frame",
    "load_forecaster",
]

ANSWER_COLUMNS: list[str] = ["price", "mean", "p_change", *INTERVAL_COLUMNS]
# Pesos to 1/100 of a centavo: clean numbers in files and answers, the same everywhere.
DECIMALS = 4


class Forecaster(Protocol):
    """What the predictor needs of a registered model (the model or the baseline)."""

    intervals_: IntervalTable

    def distribution_of(
        self,
        features: np.ndarray,
        p_glitch: np.ndarray | None = None,
        previous_level: np.ndarray | None = None,
    ) -> Distribution:
        """The forecast distribution of feature rows."""
        ...

    def base_rate(self, rows: pd.DataFrame, horizon_days: np.ndarray) -> np.ndarray:
        """The training window's share of changed prices per row."""
        ...


def answer_columns(
    forecaster: Forecaster,
    features: np.ndarray,
    p_glitch: np.ndarray,
    previous_level: np.ndarray,
    horizon_days: np.ndarray,
) -> dict[str, np.ndarray]:
    """:data:`ANSWER_COLUMNS` for feature rows, rounded to :data:`DECIMALS`.

    A forecaster without an interval table gives no bounds.

    Raises:
        ValueError: a horizon outside the interval table's (1 .. max horizon days).
    """
    distribution = forecaster.distribution_of(features, p_glitch, previous_level)
    price = distribution.median()
    # A forecaster fit outside a training run may have no interval table: no bounds then.
    table: IntervalTable | None = getattr(forecaster, "intervals_", None)
    bounds = (
        {}
        if table is None
        else table.bounds(price, distribution.quantiles(QUANTILE_LEVELS), horizon_days)
    )
    out = {
        "price": price,
        "mean": distribution.mean(),
        "p_change": distribution.p_change(),
        **bounds,
    }
    return {name: np.round(out[name], DECIMALS) for name in ANSWER_COLUMNS if name in out}


def load_forecaster(directory: Path) -> MilkForecaster | BaselineForecaster:
    """Load the model or the baseline from its text artifacts (by the ``kind`` it records)."""
    config = json.loads((Path(directory) / "forecaster.json").read_text())
    if config.get("kind") == BASELINE_KIND:
        return BaselineForecaster.from_artifacts(directory)
    return MilkForecaster.from_artifacts(directory)


def forecast_frame(
    forecaster: Forecaster,
    history: pd.DataFrame,
    origin: pd.Timestamp,
    target_dates: Sequence[pd.Timestamp],
    series: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every series of ``history`` (or ``series``) at every target date.

    Returns:
        ``SERIES_KEYS``, ``Fecha`` and :data:`ANSWER_COLUMNS`, from the history up to ``origin``.
    """
    origin = pd.Timestamp(origin)
    rows = build_features(history, origin, target_dates, series=series)
    answers = answer_columns(
        forecaster,
        rows[FEATURE_COLUMNS].to_numpy(dtype=float),
        rows["p_glitch"].to_numpy(dtype=float),
        rows["previous_level"].to_numpy(dtype=float),
        rows["horizon_days"].to_numpy(dtype=float),
    )
    return rows[[*SERIES_KEYS, "Fecha"]].assign(**answers).reset_index(drop=True)

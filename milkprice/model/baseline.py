"""The trusted last price as a registered model: what users get when no model beat it.

:class:`BaselineForecaster` forecasts the anchor after quality verdicts (the last published
price, or the level before it when a glitch is more likely than not), with the suspect anchor's
two outcomes as its distribution, and split-conformal intervals of its own out-of-sample
residuals around it. It answers through the same interface as
:class:`~milkprice.model.forecast.MilkForecaster` (``distribution_of``, ``base_rate``,
``intervals_``, text artifacts), so the predictor, the API and the batch forecast serve it
unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from milkprice.data.quality import assess_readings
from milkprice.model.calibration import calibration_origins
from milkprice.model.distribution import Distribution
from milkprice.model.features import ANCHOR_COLUMN, FEATURE_COLUMNS, SERIES_KEYS, build_features
from milkprice.model.intervals import HORIZON_EDGES, IntervalTable

__all__ = ["BASELINE_KIND", "BaselineForecaster", "fit_baseline", "trusted_last_price"]

BASELINE_KIND = "trusted-last-price"
_CONFIG_FILE = "forecaster.json"
_INTERVALS_FILE = "intervals.json"


def trusted_last_price(features: pd.DataFrame) -> np.ndarray:
    """The anchor after verdicts, per feature row (no model).

    The level before a suspect anchor when a glitch is more likely than not, else the anchor.
    """
    glitch = features["p_glitch"].to_numpy(dtype=float) > 0.5
    previous = features["previous_level"].to_numpy(dtype=float)
    anchor = features[ANCHOR_COLUMN].to_numpy(dtype=float)
    return np.where(glitch & np.isfinite(previous), previous, anchor)


class BaselineForecaster:
    """The trusted last price with conformal intervals (see the module docstring).

    Attributes:
        intervals_: The interval table around the trusted last price.
        base_rate_: The training window's share of changed prices (the Brier reference).
    """

    kind = BASELINE_KIND

    def __init__(self, intervals: IntervalTable, base_rate: float) -> None:
        self.intervals_ = intervals
        self.base_rate_ = float(base_rate)

    def distribution_of(
        self,
        features: np.ndarray,
        p_glitch: np.ndarray | None = None,
        previous_level: np.ndarray | None = None,
    ) -> Distribution:
        """Two atoms: the anchor (weight ``1 - p_glitch``) and the previous level."""
        anchor = features[:, FEATURE_COLUMNS.index(ANCHOR_COLUMN)]
        n = len(anchor)
        p = np.zeros(n) if p_glitch is None else np.nan_to_num(np.asarray(p_glitch, dtype=float))
        level = anchor if previous_level is None else np.asarray(previous_level, dtype=float)
        level = np.where(np.isfinite(level), level, anchor)
        stay = Distribution(anchor[:, None], np.ones((n, 1)), anchor)
        back = Distribution(level[:, None], np.ones((n, 1)), level)
        return Distribution.mixture(stay, back, p)

    def distribution(self, rows: pd.DataFrame) -> Distribution:
        """The distribution of feature rows (a frame with the quality columns)."""
        return self.distribution_of(
            rows[FEATURE_COLUMNS].to_numpy(dtype=float),
            rows["p_glitch"].to_numpy(dtype=float),
            rows["previous_level"].to_numpy(dtype=float),
        )

    def base_rate(self, rows: pd.DataFrame, horizon_days: np.ndarray) -> np.ndarray:
        """The training window's share of changed prices, for every row."""
        return np.full(len(rows), self.base_rate_)

    def to_artifacts(self, directory: Path) -> None:
        """Write the configuration and the interval table as JSON."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = {"kind": self.kind, "base_rate": self.base_rate_}
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        (directory / _INTERVALS_FILE).write_text(
            json.dumps(self.intervals_.to_dict(), indent=2, sort_keys=True)
        )

    @classmethod
    def from_artifacts(cls, directory: Path) -> BaselineForecaster:
        """Load a baseline written by :meth:`to_artifacts`."""
        directory = Path(directory)
        config = json.loads((directory / _CONFIG_FILE).read_text())
        if config.get("kind") != BASELINE_KIND:
            raise ValueError(f"{directory / _CONFIG_FILE} is not a {BASELINE_KIND} baseline")
        table = IntervalTable.from_dict(json.loads((directory / _INTERVALS_FILE).read_text()))
        return cls(table, float(config["base_rate"]))


def fit_baseline(
    frame: pd.DataFrame, origins: list[pd.Timestamp], cutoff: pd.Timestamp
) -> BaselineForecaster:
    """The baseline's conformal table from its residuals after the last origins before ``cutoff``.

    Args:
        frame: Clean tidy rows (only rows up to ``cutoff`` are read).
        origins: Candidate origins (the training origins); the last ones with published prices
            after them are used, as for the model's own calibration.
        cutoff: Nothing after it is read.

    Raises:
        ValueError: no origin has published prices after it.
    """
    cutoff = pd.Timestamp(cutoff)
    known = frame.loc[frame["Fecha"] <= cutoff]
    actual = known.dropna(subset=["Precio"])[[*SERIES_KEYS, "Fecha", "Precio"]]
    dates = pd.DatetimeIndex(sorted(known["Fecha"].unique()))
    verdicts = assess_readings(known)
    residuals, horizons, changed = [], [], []
    for origin in calibration_origins(origins, cutoff):
        last = min(origin + pd.Timedelta(days=HORIZON_EDGES[-1]), cutoff)
        targets = list(dates[(dates > origin) & (dates <= last)])
        if not targets:
            continue
        features = build_features(known, origin, targets, verdicts=verdicts)
        price = trusted_last_price(features)
        scored = features.assign(forecast=price).merge(actual, on=[*SERIES_KEYS, "Fecha"])
        residuals.append((scored["Precio"] - scored["forecast"]).to_numpy(dtype=float))
        horizons.append((scored["Fecha"] - origin).dt.days.to_numpy(dtype=float))
        changed.append(np.abs(scored["Precio"] - scored[ANCHOR_COLUMN]).to_numpy() > 0.005)
    if not residuals:
        raise ValueError(f"no origin before {cutoff.date()} has published prices after it")
    table = IntervalTable.fit(np.concatenate(residuals), np.concatenate(horizons))
    return BaselineForecaster(table, float(np.mean(np.concatenate(changed))))

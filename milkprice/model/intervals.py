"""Prediction intervals: split-conformal quantiles of out-of-sample residuals by horizon bucket.

The forecaster gives one price per (series, date). Its errors are far from Gaussian: most prices
do not move (residual exactly 0) and a few jump, mostly upwards, and errors grow with the
horizon. So the interval is read off the errors themselves: during training, models fit on the
data up to earlier origins forecast the weeks after those origins (never data they were fit on),
and the signed residuals ``actual - forecast`` are grouped by horizon bucket. For a level
``1 - a`` the interval is ``price + [q(a/2), q(1 - a/2)]`` with the split-conformal finite-sample
quantile levels. Quantiles are clipped so that the forecast lies inside its interval, and the
95% interval contains the 80% one.

The table is small JSON (bucket edges and offsets) stored beside the booster: no pickle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "HORIZON_EDGES",
    "INTERVAL_COLUMNS",
    "INTERVAL_METHOD",
    "LEVELS",
    "QUANTILE_METHOD",
    "IntervalTable",
    "interval_score",
]

LEVELS: tuple[int, ...] = (80, 95)
INTERVAL_COLUMNS: list[str] = ["lower_95", "lower_80", "upper_80", "upper_95"]
# Upper edges (days, inclusive) of the horizon buckets; the last one is the longest horizon a
# model answers for. A week per bucket while errors grow fastest, then wider.
HORIZON_EDGES: tuple[int, ...] = (7, 14, 21, 31, 46, 62)
INTERVAL_METHOD = "split-conformal: signed out-of-sample residual quantiles by horizon bucket"
QUANTILE_METHOD = (
    "conformalized quantiles: the forecast distribution's quantiles, each shifted by the "
    "split-conformal quantile of its out-of-sample residuals by horizon bucket"
)
# Buckets with fewer residuals than this borrow the residuals of the next shorter bucket too.
_MIN_RESIDUALS = 50


def _conformal_level(n: int, level: float) -> float:
    """Finite-sample quantile level ``ceil((n + 1) * level) / n``, capped at 1."""
    return min(1.0, math.ceil((n + 1) * level) / n)


@dataclass(frozen=True)
class IntervalTable:
    """Offsets to add to a point forecast, per horizon bucket and level.

    Attributes:
        edges: Upper edge (days, inclusive) of each bucket; ``edges[-1]`` is the max horizon.
        offsets: ``{"lower_80": [...], "upper_80": [...], ...}``, one value per bucket.
        counts: Residuals behind each bucket.
        method: How the table was made (shown by the API's ``/model``).
    """

    edges: tuple[int, ...]
    offsets: dict[str, list[float]]
    counts: list[int]
    method: str = INTERVAL_METHOD
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def max_horizon_days(self) -> int:
        """The longest horizon the table (and so the model) answers for."""
        return int(self.edges[-1])

    @classmethod
    def fit(
        cls,
        residuals: np.ndarray,
        horizon_days: np.ndarray,
        edges: tuple[int, ...] = HORIZON_EDGES,
    ) -> IntervalTable:
        """Quantiles of ``residuals`` (actual - forecast) in each horizon bucket.

        Raises:
            ValueError: no finite residual at all, or a horizon beyond ``edges[-1]``.
        """
        residuals = np.asarray(residuals, dtype=float)
        horizon_days = np.asarray(horizon_days, dtype=float)
        ok = np.isfinite(residuals) & np.isfinite(horizon_days)
        residuals, horizon_days = residuals[ok], horizon_days[ok]
        if residuals.size == 0:
            raise ValueError("no out-of-sample residual to calibrate intervals on")
        bucket = np.searchsorted(np.asarray(edges), horizon_days, side="left")
        offsets: dict[str, list[float]] = {name: [] for name in INTERVAL_COLUMNS}
        counts: list[int] = []
        pooled = np.empty(0)
        for index in range(len(edges)):
            own = residuals[bucket == index]
            # A sparse bucket pools with the shorter ones (errors only grow with the horizon,
            # so this errs on the narrow side only for the few rows that lack their own data).
            pooled = own if own.size >= _MIN_RESIDUALS else np.concatenate([pooled, own])
            if pooled.size == 0:
                pooled = residuals
            counts.append(int(pooled.size))
            for level in LEVELS:
                alpha = 1 - level / 100
                n = pooled.size
                high = float(np.quantile(pooled, _conformal_level(n, 1 - alpha / 2)))
                low = -float(np.quantile(-pooled, _conformal_level(n, 1 - alpha / 2)))
                offsets[f"lower_{level}"].append(min(low, 0.0))
                offsets[f"upper_{level}"].append(max(high, 0.0))
        # Nested by construction of the quantile levels; enforce it against float ties anyway.
        offsets["lower_95"] = list(np.minimum(offsets["lower_95"], offsets["lower_80"]))
        offsets["upper_95"] = list(np.maximum(offsets["upper_95"], offsets["upper_80"]))
        return cls(edges=tuple(int(e) for e in edges), offsets=offsets, counts=counts)

    @classmethod
    def fit_quantiles(
        cls,
        residuals: dict[str, np.ndarray],
        horizon_days: np.ndarray,
        edges: tuple[int, ...] = HORIZON_EDGES,
    ) -> IntervalTable:
        """Conformal offsets for quantile forecasts (conformalized quantile regression).

        ``residuals[name]`` holds ``actual - q_name`` for each interval column ``name`` (the
        distribution's raw quantile behind it). A lower bound is shifted by the conformal
        ``alpha/2`` quantile of its residuals, an upper bound by the ``1 - alpha/2`` one, per
        horizon bucket, so that each side misses at most ``alpha/2`` of fresh rows; a
        well-calibrated distribution gets offsets near 0.

        Raises:
            ValueError: no finite residual at all.
        """
        horizon_days = np.asarray(horizon_days, dtype=float)
        offsets: dict[str, list[float]] = {name: [] for name in INTERVAL_COLUMNS}
        counts: list[int] = []
        for name in INTERVAL_COLUMNS:
            values = np.asarray(residuals[name], dtype=float)
            ok = np.isfinite(values) & np.isfinite(horizon_days)
            values, horizon = values[ok], horizon_days[ok]
            if values.size == 0:
                raise ValueError("no out-of-sample residual to calibrate intervals on")
            bucket = np.searchsorted(np.asarray(edges), horizon, side="left")
            level = int(name.rsplit("_", 1)[1])
            tail = 1 - (1 - level / 100) / 2
            pooled = np.empty(0)
            counts_here = []
            for index in range(len(edges)):
                own = values[bucket == index]
                pooled = own if own.size >= _MIN_RESIDUALS else np.concatenate([pooled, own])
                if pooled.size == 0:
                    pooled = values
                counts_here.append(int(pooled.size))
                q = _conformal_level(pooled.size, tail)
                if name.startswith("lower"):
                    offsets[name].append(-float(np.quantile(-pooled, q)))
                else:
                    offsets[name].append(float(np.quantile(pooled, q)))
            counts = counts_here
        return cls(
            edges=tuple(int(e) for e in edges),
            offsets=offsets,
            counts=counts,
            method=QUANTILE_METHOD,
        )

    def apply_quantiles(
        self, price: np.ndarray, bases: dict[str, np.ndarray], horizon_days: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Bounds from the distribution's quantiles ``bases`` and the table's offsets.

        The bounds are ordered ``lower_95 <= lower_80 <= price <= upper_80 <= upper_95``.

        Raises:
            ValueError: a horizon below 1 day or past :attr:`max_horizon_days`.
        """
        bucket = self._checked_buckets(horizon_days)
        price = np.asarray(price, dtype=float)
        out = {
            name: np.asarray(bases[name], dtype=float)
            + np.asarray(self.offsets[name], dtype=float)[bucket]
            for name in INTERVAL_COLUMNS
        }
        out["lower_80"] = np.minimum(out["lower_80"], price)
        out["upper_80"] = np.maximum(out["upper_80"], price)
        out["lower_95"] = np.minimum(out["lower_95"], out["lower_80"])
        out["upper_95"] = np.maximum(out["upper_95"], out["upper_80"])
        return out

    def bounds(
        self, price: np.ndarray, quantiles: dict[str, np.ndarray], horizon_days: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The bounds this table makes.

        Around ``quantiles`` for a conformalized-quantile table, around ``price`` for a table
        of offsets around a point forecast.
        """
        if self.method == QUANTILE_METHOD:
            return self.apply_quantiles(price, quantiles, horizon_days)
        return self.apply(price, horizon_days)

    def _checked_buckets(self, horizon_days: np.ndarray) -> np.ndarray:
        bucket = self.bucket_of(horizon_days)
        if (bucket < 0).any():
            raise ValueError(
                f"horizons must be 1..{self.max_horizon_days} days; got "
                f"{sorted(set(np.asarray(horizon_days)[bucket < 0].tolist()))[:5]}"
            )
        return bucket

    def bucket_of(self, horizon_days: np.ndarray) -> np.ndarray:
        """Bucket index per horizon (days); horizons past the last edge get ``-1``."""
        horizon = np.asarray(horizon_days, dtype=float)
        index = np.searchsorted(np.asarray(self.edges), horizon, side="left")
        return np.where((horizon >= 1) & (index < len(self.edges)), index, -1)

    def apply(self, price: np.ndarray, horizon_days: np.ndarray) -> dict[str, np.ndarray]:
        """``lower_95, lower_80, upper_80, upper_95`` around ``price`` for each row.

        Raises:
            ValueError: a horizon below 1 day or past :attr:`max_horizon_days`.
        """
        bucket = self._checked_buckets(horizon_days)
        price = np.asarray(price, dtype=float)
        return {
            name: price + np.asarray(self.offsets[name], dtype=float)[bucket]
            for name in INTERVAL_COLUMNS
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "edges": list(self.edges),
            "offsets": {k: [round(float(x), 6) for x in v] for k, v in self.offsets.items()},
            "counts": list(self.counts),
            "method": self.method,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IntervalTable:
        """Inverse of :meth:`to_dict`; refuses a table whose shape does not add up."""
        edges = tuple(int(e) for e in data["edges"])
        offsets = {name: [float(x) for x in data["offsets"][name]] for name in INTERVAL_COLUMNS}
        if any(len(values) != len(edges) for values in offsets.values()):
            raise ValueError("interval table: one offset per horizon bucket expected")
        return cls(
            edges=edges,
            offsets=offsets,
            counts=[int(c) for c in data["counts"]],
            method=str(data.get("method", INTERVAL_METHOD)),
            extra=dict(data.get("extra", {})),
        )


def interval_score(actual: np.ndarray, lower: np.ndarray, upper: np.ndarray, level: int) -> float:
    """Mean interval score (Gneiting & Raftery): width plus penalties for misses; lower is better."""
    actual, lower, upper = (np.asarray(x, dtype=float) for x in (actual, lower, upper))
    alpha = 1 - level / 100
    below = np.maximum(lower - actual, 0.0)
    above = np.maximum(actual - upper, 0.0)
    return float(np.mean((upper - lower) + 2 / alpha * (below + above)))

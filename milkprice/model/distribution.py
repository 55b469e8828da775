"""The forecast distribution of a sticky price, and the numbers read off it.

For each (series, date) the distribution is a set of support points with weights: an atom at
the anchor (no change), an atom at the level before the last change (a revert, as a promotion
ends), and two spreads of move sizes, up and down. A suspect anchor doubles it: the same shape
around the anchor with weight ``1 - p_glitch`` and around the previous level with ``p_glitch``.
Everything a forecast publishes comes from these points: the median (``price``), the mean,
``p_change`` and the quantiles the conformal step widens into intervals.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["CHANGE_TOLERANCE", "QUANTILE_LEVELS", "Distribution"]

# Prices are published to the centavo: a difference below half a centavo is no change.
CHANGE_TOLERANCE = 0.005
# The raw quantiles behind each interval column (before conformal calibration).
QUANTILE_LEVELS: dict[str, float] = {
    "lower_95": 0.025,
    "lower_80": 0.10,
    "upper_80": 0.90,
    "upper_95": 0.975,
}


@dataclass(frozen=True)
class Distribution:
    """Weighted support points per row (``points`` and ``weights`` are ``(rows, k)``).

    Attributes:
        points: Prices.
        weights: Probabilities; each row sums to 1.
        anchor: The price a forecast compares with (the trusted anchor), per row.
    """

    points: np.ndarray
    weights: np.ndarray
    anchor: np.ndarray

    @classmethod
    def mixture(
        cls, first: Distribution, second: Distribution, weight_second: np.ndarray
    ) -> Distribution:
        """``(1 - w) * first + w * second`` row by row; the anchor is the heavier one's."""
        w = np.clip(np.asarray(weight_second, dtype=float), 0.0, 1.0)[:, None]
        anchor = np.where(w[:, 0] > 0.5, second.anchor, first.anchor)
        return cls(
            points=np.concatenate([first.points, second.points], axis=1),
            weights=np.concatenate([first.weights * (1 - w), second.weights * w], axis=1),
            anchor=anchor,
        )

    def _sorted(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(self.points, axis=1, kind="stable")
        points = np.take_along_axis(self.points, order, axis=1)
        cumulative = np.take_along_axis(self.weights, order, axis=1).cumsum(axis=1)
        return points, cumulative / cumulative[:, -1:]

    def quantiles(self, levels: dict[str, float]) -> dict[str, np.ndarray]:
        """The smallest point whose cumulative weight reaches each level, per row."""
        points, cumulative = self._sorted()
        rows = np.arange(len(points))
        out = {}
        for name, level in levels.items():
            index = np.minimum((cumulative < level - 1e-12).sum(axis=1), points.shape[1] - 1)
            out[name] = points[rows, index]
        return out

    def median(self) -> np.ndarray:
        """The median: what MAE rewards (the anchor unless a move is more likely than not)."""
        return self.quantiles({"median": 0.5})["median"]

    def mean(self) -> np.ndarray:
        """The expected price: what RMSE rewards."""
        return (self.points * self.weights).sum(axis=1) / self.weights.sum(axis=1)

    def p_change(self) -> np.ndarray:
        """Probability that the published price differs from the anchor."""
        same = np.abs(self.points - self.anchor[:, None]) <= CHANGE_TOLERANCE
        stay = (self.weights * same).sum(axis=1) / self.weights.sum(axis=1)
        return np.clip(1.0 - stay, 0.0, 1.0)

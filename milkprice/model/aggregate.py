"""Forecast intervals of averages of series (a state, the nation), by simulation.

The band of an average is not the average of the series' bands: that is the band of a typical
series, right only when every series moves in lockstep. Here each series is drawn from its own
forecast distribution and the draws are averaged:

- *marginals*: a series' quantile function runs through its published knots (``lower_95``,
  ``lower_80``, ``price``, ``upper_80``, ``upper_95`` at 2.5/10/50/90/97.5 %), linear in the
  Gaussian score between knots and beyond the outer ones (a Gaussian series is reproduced
  exactly). The two-part model puts a point mass ``1 - p_change`` at the anchor (no change):
  when the frame has ``p_change`` and ``anchor`` the quantile function is flat at the anchor
  over that much probability, as far as the knots allow (they are the calibrated truth);
- *dependence*: a one-factor Gaussian copula, the score of a series being
  ``sqrt(d) * common + sqrt(1 - d) * own``. ``d = 0`` makes the series independent (the band
  of an average of ``n`` alike series shrinks like ``1 / sqrt(n)``), ``d = 1`` makes them move
  together (the band is the mean of the series' bounds, exactly at the knots);
- *cost*: each series' quantile function is tabulated on a fixed grid of probability cells,
  a draw picks a cell per series (the same cell at every date: only each date's own
  distribution is reported), so a draw of 216 series x 30 dates is one gather and one sum.
  Every factor is stratified (one draw per ``1/draws`` of probability, a Latin hypercube),
  which removes most of the simulation error of each series' marginal.

``d`` is estimated out of sample by :func:`estimate_dependence` from the residuals the
training run calibrates intervals on, and kept on the model as ``aggregate_dependence_``;
:func:`dependence_of` reads it (1.0, today's conservative width, for models made before).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.special import ndtr, ndtri

__all__ = [
    "AGGREGATE_COLUMNS",
    "DATE_COLUMN",
    "DEFAULT_DEPENDENCE",
    "GRID_CELLS",
    "KNOTS",
    "aggregate_forecast",
    "dependence_of",
    "estimate_dependence",
    "mean_of_bounds",
]

DATE_COLUMN = "Fecha"
# The published numbers of a series and the probability each one sits at.
KNOTS: dict[str, float] = {
    "lower_95": 0.025,
    "lower_80": 0.10,
    "price": 0.50,
    "upper_80": 0.90,
    "upper_95": 0.975,
}
AGGREGATE_COLUMNS: list[str] = ["n_series", "price", "mean", *(k for k in KNOTS if k != "price")]
# Models made before the dependence was estimated: the widest band (series in lockstep).
DEFAULT_DEPENDENCE = 1.0
# Probability cells of the tabulated quantile functions: 1/256 is below the simulation error
# of 2000 draws (a few thousandths), and the table (rows x cells) stays small.
GRID_CELLS = 256
_SERIES_KEYS = ("Estado", "Ciudad", "Tipo", "Canal")
_CHANGE_TOLERANCE = 0.005
_TINY = 1e-12
_EDGE = 1e-6


def dependence_of(model: object) -> float:
    """The dependence to aggregate a model's forecasts with (``aggregate_dependence_``).

    A model made before the dependence was estimated (or with an unusable value) gets
    :data:`DEFAULT_DEPENDENCE`: the band of series moving together, today's width.
    """
    value = getattr(model, "aggregate_dependence_", DEFAULT_DEPENDENCE)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return DEFAULT_DEPENDENCE
    return number if math.isfinite(number) and 0.0 <= number <= 1.0 else DEFAULT_DEPENDENCE


def _checked_dependence(dependence: float) -> float:
    try:
        number = float(dependence)
    except (TypeError, ValueError):
        raise ValueError(f"dependence must be a number in [0, 1]; got {dependence!r}") from None
    if not (math.isfinite(number) and 0.0 <= number <= 1.0):
        raise ValueError(f"dependence must be a number in [0, 1]; got {dependence!r}")
    return number


def _checked_frame(forecast: pd.DataFrame, by: Sequence[str], draws: int) -> list[str]:
    if isinstance(by, str):
        raise ValueError(f"by must be a sequence of column names, not the string {by!r}")
    groups = list(by)
    if DATE_COLUMN in groups:
        raise ValueError(f"by must not name {DATE_COLUMN!r}: the date is always a grouping key")
    if not isinstance(draws, int | np.integer) or isinstance(draws, bool) or draws < 2:
        raise ValueError(f"draws must be an integer of at least 2; got {draws!r}")
    needed = [*groups, DATE_COLUMN, *KNOTS, "mean"]
    missing = [c for c in needed if c not in forecast.columns]
    if missing:
        raise ValueError(f"forecast has no column {', '.join(map(repr, missing))}")
    if forecast.empty:
        raise ValueError("forecast has no rows to aggregate")
    doubled = [c for c in dict.fromkeys(needed) if list(forecast.columns).count(c) > 1]
    if doubled:
        raise ValueError(f"forecast has more than one column {', '.join(map(repr, doubled))}")
    for column in [*KNOTS, "mean"]:
        values = pd.to_numeric(forecast[column], errors="coerce").to_numpy(dtype=float)
        if not np.isfinite(values).all():
            raise ValueError(f"forecast column {column!r} has missing or non-numeric values")
    return groups


def _knot_table(forecast: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per row, knots ``(u, x)`` sorted by ``u``: the five published ones and the anchor's atom.

    The atom ``[u_lo, u_hi]`` at the anchor holds ``1 - p_change`` as far as the knots allow:
    it lies between the last knot below the anchor and the first above it, covers the knots
    equal to it, and splits the free probability on either side in proportion to the distance
    to the neighbouring knots.
    """
    levels = np.asarray(list(KNOTS.values()))
    x = np.maximum.accumulate(forecast[list(KNOTS)].to_numpy(dtype=float), axis=1)
    n = len(x)
    u = np.broadcast_to(levels, (n, len(levels)))
    if "p_change" in forecast.columns and "anchor" in forecast.columns:
        anchor = pd.to_numeric(forecast["anchor"], errors="coerce").to_numpy(dtype=float)
        stay = 1.0 - pd.to_numeric(forecast["p_change"], errors="coerce").to_numpy(dtype=float)
        usable = (
            np.isfinite(anchor)
            & np.isfinite(stay)
            & (anchor >= x[:, 0] - _CHANGE_TOLERANCE)
            & (anchor <= x[:, -1] + _CHANGE_TOLERANCE)
        )
        anchor = np.where(usable, anchor, x[:, 2])
        below = x < anchor[:, None] - _CHANGE_TOLERANCE
        above = x > anchor[:, None] + _CHANGE_TOLERANCE
        equal = ~below & ~above
        low = np.where(below, u, 0.0).max(axis=1)
        high = np.where(above, u, 1.0).min(axis=1)
        first_equal = np.where(equal, u, np.inf).min(axis=1)
        last_equal = np.where(equal, u, -np.inf).max(axis=1)
        span = np.where(np.isfinite(first_equal), last_equal - first_equal, 0.0)
        mass = np.clip(np.where(usable, stay, 0.0), span, high - low)
        x_low = np.where(below, x, -np.inf).max(axis=1)
        x_high = np.where(above, x, np.inf).min(axis=1)
        gap = x_high - x_low
        bounded = np.isfinite(gap) & (gap > 0)
        share = np.full(n, 0.5)
        np.divide(anchor - x_low, gap, out=share, where=bounded)
        start = low + (high - low - mass) * np.clip(share, 0.0, 1.0)
        start = np.clip(
            start,
            np.maximum(low, np.where(np.isfinite(last_equal), last_equal - mass, low)),
            np.minimum(np.where(np.isfinite(first_equal), first_equal, high), high - mass),
        )
        u = np.concatenate([u, start[:, None], (start + mass)[:, None]], axis=1)
        x = np.concatenate([x, anchor[:, None], anchor[:, None]], axis=1)
        order = np.lexsort((x, u), axis=1)  # ties in probability: the lower value first
        u = np.take_along_axis(u, order, axis=1)
        x = np.maximum.accumulate(np.take_along_axis(x, order, axis=1), axis=1)
    return np.clip(u, _EDGE, 1 - _EDGE), x


def _scores(probabilities: np.ndarray) -> np.ndarray:
    """Gaussian scores (the standard normal quantile) of probabilities."""
    return ndtri(np.asarray(probabilities, dtype=float))


def _tabulate(u: np.ndarray, x: np.ndarray, cells: int) -> np.ndarray:
    """Each row's quantile function at the cell midpoints ``(j + 0.5) / cells``."""
    n, k = u.shape
    z = _scores(u)
    dz = np.diff(z, axis=1)
    slope = np.zeros_like(dz)
    np.divide(np.diff(x, axis=1), dz, out=slope, where=dz > _TINY)
    # Segment s of a row: below the first knot (0), between knots s-1 and s, past the last (k).
    slopes = np.concatenate([slope[:, :1], slope, slope[:, -1:]], axis=1)
    intercepts = np.concatenate([x[:, :1], x], axis=1) - slopes * np.concatenate(
        [z[:, :1], z], axis=1
    )
    # The first cell at or past each knot starts a new segment: a cumulative count of starts.
    first_cell = np.clip(np.ceil(u * cells - 0.5).astype(np.intp), 0, cells)
    row_base = (np.arange(n) * (cells + 1))[:, None]
    starts = np.bincount((first_cell + row_base).ravel(), minlength=n * (cells + 1))
    segment = np.cumsum(starts.reshape(n, cells + 1)[:, :cells], axis=1)
    # Flat gathers (``take_along_axis`` is several times slower here).
    flat = segment + (np.arange(n) * (k + 1))[:, None]
    grid_z = _scores((np.arange(cells) + 0.5) / cells)
    return np.take(intercepts.ravel(), flat) + np.take(slopes.ravel(), flat) * grid_z[None, :]


def _cells(n_series: int, draws: int, dependence: float, seed: int, cells: int) -> np.ndarray:
    """``(n_series, draws)`` probability cells drawn from the one-factor Gaussian copula."""
    rng = np.random.default_rng(seed)
    # Latin hypercube: every factor (the common one and each series' own) takes the score of
    # each 1/draws of probability once (its midpoint), in an independent random order. The
    # marginals are exact to a stratum, the factors independent, and a draw is a gather.
    middles = _scores((np.arange(draws) + 0.5) / draws).astype(np.float32)
    order = rng.permuted(np.tile(np.arange(draws), (n_series + 1, 1)), axis=1)
    factors = middles[order]
    score = math.sqrt(dependence) * factors[:1] + math.sqrt(1.0 - dependence) * factors[1:]
    return np.minimum((ndtr(score) * cells).astype(np.intp), cells - 1)


def _ids(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    """Dense ids of ``columns``' value combinations, in sorted order (0 for no column)."""
    if not columns:
        return np.zeros(len(frame), dtype=np.intp)
    return frame.groupby(columns, sort=True, dropna=False).ngroup().to_numpy()


def _layout(frame: pd.DataFrame, groups: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: its group, its series (numbered group by group) and its date index.

    A series is a combination of the group and the series keys in the frame (its rank within
    its group and date when the frame has no series keys).

    Raises:
        ValueError: two rows for the same series and date.
    """
    extra = [c for c in _SERIES_KEYS if c in frame.columns and c not in groups]
    keyed = frame[[*groups, *extra, DATE_COLUMN]].copy()
    if not extra:
        keyed["_rank"] = keyed.groupby([*groups, DATE_COLUMN], dropna=False).cumcount()
        extra = ["_rank"]
    group = _ids(keyed, groups)
    series = _ids(keyed, [*groups, *extra])
    date = _ids(keyed, [DATE_COLUMN])
    if pd.Series(series * (date.max() + 1) + date).duplicated().any():
        raise ValueError(
            "forecast has more than one row for a series and date "
            f"(series: {', '.join([*groups, *extra])}; date: {DATE_COLUMN})"
        )
    return group, series, date


def aggregate_forecast(
    forecast: pd.DataFrame,
    by: Sequence[str],
    *,
    dependence: float,
    draws: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """The forecast of the simple mean over the series of each group, per date.

    Args:
        forecast: Per-series rows as the batch forecast, the predictor or a backtest give them
            (``Fecha``, ``price``, ``mean``, the 80/95 % bounds; ``p_change`` and ``anchor``
            when known; the series keys identify a series across dates).
        by: Grouping columns, e.g. ``("Tipo", "Canal")`` for the nation; the date is added.
        dependence: In [0, 1]: 0 independent series, 1 series moving together (the band is
            then the mean of the series' bounds). See :func:`dependence_of`.
        draws: Simulated draws per group and date.
        seed: Seed of the draws: the result is the same for the same inputs and seed.

    Returns:
        One row per group and date, sorted by them: the ``by`` columns, ``Fecha``,
        ``n_series``, ``price`` (the median of the simulated mean), ``mean`` (the mean of the
        series' means, exact) and ``lower_80``, ``upper_80``, ``lower_95``, ``upper_95`` of the
        simulated mean.

    Raises:
        ValueError: ``dependence`` outside [0, 1], ``draws`` below 2, a missing column, a
            non-finite value (each named), or two rows for one series and date.
    """
    dependence = _checked_dependence(dependence)
    groups = _checked_frame(forecast, by, draws)
    frame = forecast.reset_index(drop=True)
    group, series, date = _layout(frame, groups)
    n_series, n_dates = int(series.max()) + 1, int(date.max()) + 1
    # (series, date, cell): a series' table is small enough to stay in cache while drawn from.
    # Single precision: a centavo is 1e-6 of a price's float32 resolution away; half the bytes.
    table = np.zeros((n_series, n_dates, GRID_CELLS), dtype=np.float32)
    table[series, date] = _tabulate(*_knot_table(frame), GRID_CELLS)
    present = np.zeros((n_series, n_dates))
    present[series, date] = 1.0
    means = np.zeros((n_series, n_dates))
    means[series, date] = frame["mean"].to_numpy(dtype=float)
    series_group = np.zeros(n_series, dtype=np.intp)
    series_group[series] = group
    cells = _cells(n_series, draws, dependence, seed, GRID_CELLS)
    totals = np.zeros((int(group.max()) + 1, n_dates, draws), dtype=np.float32)
    drawn = np.empty((n_dates, draws), dtype=np.float32)
    for one in range(n_series):  # one series at a time: no (series, dates, draws) array
        np.take(table[one], cells[one], axis=1, out=drawn)
        totals[series_group[one]] += drawn
    first = np.flatnonzero(np.r_[True, np.diff(series_group) != 0])
    counts = np.add.reduceat(present, first, axis=0)  # (groups, dates)
    shown = counts > 0
    totals /= np.where(shown, counts, 1.0).astype(np.float32)[:, :, None]
    # (knots, groups, dates)
    quantiles = np.quantile(totals, list(KNOTS.values()), axis=2).astype(float)
    at_group, at_date = np.nonzero(shown)
    first_row = np.unique(group, return_index=True)[1]
    out = frame.loc[first_row[at_group], groups].reset_index(drop=True)
    out[DATE_COLUMN] = frame.loc[
        np.unique(date, return_index=True)[1][at_date], DATE_COLUMN
    ].to_numpy()
    out["n_series"] = counts[at_group, at_date].astype(int)
    for name, values in zip(KNOTS, quantiles, strict=True):
        out[name] = values[at_group, at_date]
    out["mean"] = (np.add.reduceat(means, first, axis=0) / np.where(shown, counts, 1.0))[
        at_group, at_date
    ]
    return out[[*groups, DATE_COLUMN, *AGGREGATE_COLUMNS]]


def mean_of_bounds(forecast: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """The old display: each column averaged over the group's series (a typical series' band).

    The band of an average only if every series moves together (``dependence = 1``); kept as
    the reference the aggregate band is compared with.
    """
    groups = _checked_frame(forecast, by, 2)
    keys = [*groups, DATE_COLUMN]
    grouped = forecast.groupby(keys, sort=True)
    out = grouped[["mean", *KNOTS]].mean()
    out.insert(0, "n_series", grouped.size())
    return out.reset_index()[[*keys, *AGGREGATE_COLUMNS]]


def estimate_dependence(
    residuals: pd.DataFrame, within: Sequence[str] = ("Tipo", "Canal")
) -> float:
    """The average pairwise correlation of out-of-sample residuals at the same origin and date.

    Pooled over the groups of ``within``: ``sum_{i != j} E[r_i r_j] / sum_{i != j}
    sqrt(E[r_i^2] E[r_j^2])``, moments taken over the (origin, date) pairs two series share,
    uncentred (a bias common to all series is exactly what widens the band of their average).
    It is the one number that makes the variance of each group's mean residual match its
    series' own variances: the copula's weight of the common factor. Clipped to [0, 1].

    Args:
        residuals: Rows with ``origin``, ``Fecha``, ``residual`` and the series keys
            (:func:`milkprice.model.calibration.fold_residuals`).
        within: Columns whose groups are correlated inside (the aggregates' groups).

    Returns:
        The dependence; :data:`DEFAULT_DEPENDENCE` when no two series share a residual.

    Raises:
        ValueError: a missing column (named).
    """
    needed = [*_SERIES_KEYS, *within, "origin", DATE_COLUMN, "residual"]
    missing = [c for c in dict.fromkeys(needed) if c not in residuals.columns]
    if missing:
        raise ValueError(f"residuals have no column {', '.join(map(repr, missing))}")
    clean = residuals.loc[np.isfinite(residuals["residual"].to_numpy(dtype=float))]
    numerator = denominator = 0.0
    for _, group in clean.groupby(list(within), sort=False):
        wide = group.pivot_table(
            index=list(_SERIES_KEYS), columns=["origin", DATE_COLUMN], values="residual"
        )
        if len(wide) < 2:
            continue
        r = wide.to_numpy(dtype=float)
        seen = np.isfinite(r).astype(float)
        r = np.nan_to_num(r)
        shared = seen @ seen.T
        cross = (r @ r.T) / np.maximum(shared, 1.0)
        squares = r**2
        own = (squares @ seen.T) / np.maximum(shared, 1.0)  # E[r_i^2] on the pairs' dates
        scale = np.sqrt(own * own.T)
        off = (shared > 0) & ~np.eye(len(r), dtype=bool)
        numerator += float(cross[off].sum())
        denominator += float(scale[off].sum())
    if denominator <= 0:
        return DEFAULT_DEPENDENCE
    return float(np.clip(numerator / denominator, 0.0, 1.0))

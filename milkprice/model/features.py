"""Features for forecasting each series' price on the publication dates after an origin.

Every feature is computed from rows with ``Fecha <= origin`` only. The central quantity is the
*anchor*: the last observed price of the series at the origin (the naive forecast). Series with
no observed price fall back, in order, to the mean anchor of the same Tipo/Canal in their state,
then nationally, then to the mean of every anchor, so that every series has an anchor and
therefore a naive forecast. The model predicts the change from the anchor.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from milkprice.data.quality import QualityMatrix, assess_readings
from milkprice.months import Month

__all__ = [
    "ANCHOR_COLUMN",
    "FEATURE_COLUMNS",
    "QUALITY_COLUMNS",
    "SERIES_KEYS",
    "TARGET_COLUMN",
    "build_features",
    "build_training_set",
    "future_publication_dates",
    "last_prices",
    "publication_dates",
    "series_features",
    "to_wide",
]

SERIES_KEYS: list[str] = ["Estado", "Ciudad", "Tipo", "Canal"]
ANCHOR_COLUMN = "anchor"
TARGET_COLUMN = "target"

# Look-backs in days for the "price then" features; multiples of a week so that they land on
# comparable publication days.
_LAGS_DAYS: tuple[int, ...] = (7, 14, 28, 56, 91)
_STATS_WINDOW_DAYS = 91
_MISSING_WINDOW_DAYS = 28

FEATURE_COLUMNS: list[str] = [
    ANCHOR_COLUMN,
    "has_last",
    "is_ultra",
    "is_autoservicio",
    "horizon_days",
    "days_since_obs",
    "days_since_change",
    *[f"delta_{lag}d" for lag in _LAGS_DAYS],
    "rel_mean_91d",
    "rel_max_91d",
    "rel_min_91d",
    "vol_91d",
    "changes_91d",
    "missing_frac_28d",
    "last_missing",
    "rel_state",
    "rel_national",
    "rel_national_pct",
    "rel_other_canal",
    "city_delta_14d",
    "step_size_91d",
    "prev_level_delta",
    "revert_share_91d",
]


# Carried beside the features (never fed to the boosters): the anchor's verdict.
QUALITY_COLUMNS: list[str] = ["p_glitch", "previous_level"]


def to_wide(frame: pd.DataFrame) -> pd.DataFrame:
    """Pivot tidy rows to a dates x series matrix of prices (NaN where not reported).

    Duplicated (date, series) rows are averaged. Series whose prices are all NaN keep a column.

    Args:
        frame: Tidy rows with ``Fecha``, the series keys and ``Precio``.

    Returns:
        A frame indexed by sorted ``Fecha`` with a column MultiIndex of ``SERIES_KEYS``.
    """
    missing = [c for c in ["Fecha", *SERIES_KEYS, "Precio"] if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks required columns {missing}")
    grouped = frame.groupby(["Fecha", *SERIES_KEYS], dropna=False, sort=True)["Precio"].mean()
    wide = grouped.unstack(SERIES_KEYS)
    return wide.sort_index().astype(float)


def publication_dates(frame: pd.DataFrame, month: Month) -> list[pd.Timestamp]:
    """The publication dates actually present in ``frame`` for ``month``, sorted."""
    dates = pd.to_datetime(frame["Fecha"])
    inside = dates[(dates >= month.start) & (dates <= month.end)]
    return sorted(pd.Timestamp(d) for d in inside.unique())


def future_publication_dates(month: Month) -> list[pd.Timestamp]:
    """The Monday, Wednesday and Friday dates of ``month`` (SNIIM's publication days).

    Public holidays are not removed: a forecast for a day that is never published is harmless.
    """
    days = pd.date_range(month.start, month.end, freq="D")
    return [pd.Timestamp(d) for d in days if d.weekday() in (0, 2, 4)]


def _series_frame(columns: pd.Index) -> pd.DataFrame:
    return pd.DataFrame(list(columns), columns=SERIES_KEYS)


def _fill_anchor(series: pd.DataFrame, last: np.ndarray) -> np.ndarray:
    """Last price, or the state, then national Tipo/Canal mean, then the overall mean."""
    frame = series.assign(last=last)
    state = frame.groupby(["Estado", "Tipo", "Canal"])["last"].transform("mean").to_numpy()
    national = frame.groupby(["Tipo", "Canal"])["last"].transform("mean").to_numpy()
    overall = np.nanmean(last) if np.isfinite(last).any() else np.nan
    anchor = np.where(np.isnan(last), state, last)
    anchor = np.where(np.isnan(anchor), national, anchor)
    return np.where(np.isnan(anchor), overall, anchor)


def _window_rows(dates: pd.DatetimeIndex, origin: pd.Timestamp, days: int) -> slice:
    start = int(dates.searchsorted(origin - pd.Timedelta(days=days), side="right"))
    return slice(start, len(dates))


def _nan_reduce(func: str, values: np.ndarray) -> np.ndarray:
    """Column-wise nan-aware reduction that returns NaN (silently) for all-NaN columns."""
    out = np.full(values.shape[1], np.nan)
    if values.shape[0] == 0:
        return out
    has = ~np.isnan(values).all(axis=0)
    if has.any():
        out[has] = getattr(np, func)(values[:, has], axis=0)
    return out


def _last_index(mask: np.ndarray) -> np.ndarray:
    """Row index of the last True per column, -1 if none."""
    rows = np.arange(mask.shape[0])[:, None]
    return np.where(mask, rows, -1).max(axis=0, initial=-1)


def _days_before(dates: pd.DatetimeIndex, index: np.ndarray, origin: pd.Timestamp) -> np.ndarray:
    out = np.full(index.shape, np.nan)
    ok = index >= 0
    out[ok] = (origin - dates[index[ok]]).days.to_numpy(dtype=float)
    return out


def _series_features(
    wide: pd.DataFrame, origin: pd.Timestamp, quality: QualityMatrix | None = None
) -> pd.DataFrame:
    """Per-series features at ``origin`` from a wide matrix already cut at the origin.

    With ``quality`` (aligned with the uncut matrix), readings known at the origin to have been
    glitches are skipped, and the anchor's ``p_glitch`` and previous level are added.
    """
    dates = pd.DatetimeIndex(wide.index)
    values = wide.to_numpy(dtype=float)
    p_glitch = np.zeros(values.shape[1])
    previous_level = np.full(values.shape[1], np.nan)
    if quality is not None:
        values, p_glitch, previous_level = quality.at(values, origin)
        wide = pd.DataFrame(values, index=wide.index, columns=wide.columns)
    series = _series_frame(wide.columns)
    n_dates, n_series = values.shape
    filled = wide.ffill().to_numpy(dtype=float)
    last = filled[-1] if n_dates else np.full(n_series, np.nan)
    observed = ~np.isnan(values)

    steps = np.diff(filled, axis=0)
    changed = (steps != 0) & ~np.isnan(steps)
    first_obs = np.where(observed.any(axis=0), observed.argmax(axis=0), -1)
    last_change = _last_index(changed)
    # A series that never changed has been stable since its first observation (censored).
    change_row = np.where(last_change >= 0, last_change + 1, first_obs)

    out = series.copy()
    out["has_last"] = (~np.isnan(last)).astype(float)
    out[ANCHOR_COLUMN] = _fill_anchor(series, last)
    out["is_ultra"] = (series["Tipo"] == "Ultrapasteurizada").astype(float).to_numpy()
    out["is_autoservicio"] = (series["Canal"] == "Autoservicios").astype(float).to_numpy()
    out["days_since_obs"] = _days_before(dates, _last_index(observed), origin)
    out["days_since_change"] = _days_before(dates, change_row, origin)

    for lag in _LAGS_DAYS:
        row = int(dates.searchsorted(origin - pd.Timedelta(days=lag), side="right")) - 1
        then = filled[row] if row >= 0 else np.full(n_series, np.nan)
        out[f"delta_{lag}d"] = last - then

    window = values[_window_rows(dates, origin, _STATS_WINDOW_DAYS)]
    out["rel_mean_91d"] = last - _nan_reduce("nanmean", window)
    out["rel_max_91d"] = last - _nan_reduce("nanmax", window)
    out["rel_min_91d"] = last - _nan_reduce("nanmin", window)
    step_rows = _window_rows(dates[1:], origin, _STATS_WINDOW_DAYS)
    out["vol_91d"] = _nan_reduce("nanstd", steps[step_rows])
    abs_steps = np.where(changed, np.abs(steps), np.nan)
    out["step_size_91d"] = _nan_reduce("nanmean", abs_steps[step_rows])
    out["changes_91d"] = changed[step_rows].sum(axis=0).astype(float)
    out["prev_level_delta"], out["revert_share_91d"] = _previous_level(filled, changed, step_rows)
    recent = observed[_window_rows(dates, origin, _MISSING_WINDOW_DAYS)]
    out["missing_frac_28d"] = 1.0 - recent.mean(axis=0) if len(recent) else np.nan
    out["last_missing"] = (~observed[-1]).astype(float) if n_dates else np.nan

    out = out.assign(**_peer_features(series, last, out["delta_14d"].to_numpy()))
    out["p_glitch"] = p_glitch
    out["previous_level"] = previous_level
    return out


def _previous_level(
    filled: np.ndarray, changed: np.ndarray, window: slice
) -> tuple[np.ndarray, np.ndarray]:
    """The level before the last change (minus the anchor), and how often changes went back.

    Supermarket prices step between a regular and a promotional price, so the most likely move
    of many series is back to the level before the last change. ``revert_share_91d`` is the
    share of the window's changes that landed on the level held before the previous change.
    """
    n_steps, n_series = changed.shape
    if n_steps == 0:
        nan = np.full(n_series, np.nan)
        return nan, nan
    step_index = np.arange(n_steps)[:, None]
    # Row of the latest change strictly before each step (-1 if none).
    marks = np.where(changed, step_index, -1)
    previous = np.vstack([np.full((1, n_series), -1), np.maximum.accumulate(marks, axis=0)[:-1]])
    columns = np.arange(n_series)[None, :]
    before_previous = filled[np.maximum(previous, 0), columns]
    after = filled[1:]
    reverted = changed & (previous >= 0) & (np.abs(after - before_previous) < 0.005)
    last_change = _last_index(changed)
    level_before = np.where(
        last_change >= 0, filled[np.maximum(last_change, 0), np.arange(n_series)], np.nan
    )
    n_changes = changed[window].sum(axis=0)
    share = np.where(n_changes > 0, reverted[window].sum(axis=0) / np.maximum(n_changes, 1), np.nan)
    return level_before - filled[-1], share


def _mean_of_others(series: pd.DataFrame, keys: list[str], values: np.ndarray) -> np.ndarray:
    """Per row, the mean of ``values`` over the *other* rows of its group (NaN if none)."""
    present = ~np.isnan(values)
    grouped = series.assign(v=values).groupby(keys)["v"]
    count = grouped.transform("count").to_numpy() - present
    total = grouped.transform("sum").to_numpy() - np.where(present, values, 0.0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _peer_features(series: pd.DataFrame, last: np.ndarray, recent: np.ndarray) -> dict:
    """Cross-sectional position at the origin: mean reversion towards peers, peers' moves."""
    peers = series.assign(last=last)
    state_mean = peers.groupby(["Estado", "Tipo", "Canal"])["last"].transform("mean").to_numpy()
    national = peers.groupby(["Tipo", "Canal"])["last"]
    return {
        "rel_state": last - state_mean,
        "rel_national": last - national.transform("mean").to_numpy(),
        "rel_national_pct": last / national.transform("median").to_numpy() - 1.0,
        # Same city and Tipo, the other Canal: shops and supermarkets tend to move together.
        "rel_other_canal": last - _mean_of_others(series, ["Estado", "Ciudad", "Tipo"], last),
        # Did the other series of the city just move? A city-wide price change spreads.
        "city_delta_14d": _mean_of_others(series, ["Estado", "Ciudad"], recent),
    }


def _expand_to_dates(
    per_series: pd.DataFrame, origin: pd.Timestamp, target_dates: Sequence[pd.Timestamp]
) -> pd.DataFrame:
    dates = pd.DatetimeIndex(sorted(pd.Timestamp(d) for d in target_dates))
    if (dates <= origin).any():
        raise ValueError(f"target dates must be after the origin {origin.date()}")
    repeated = per_series.loc[per_series.index.repeat(len(dates))].reset_index(drop=True)
    repeated["Fecha"] = np.tile(dates.to_numpy(), len(per_series))
    repeated["horizon_days"] = (repeated["Fecha"] - origin).dt.days.astype(float)
    return repeated[[*SERIES_KEYS, "Fecha", *FEATURE_COLUMNS, *QUALITY_COLUMNS]]


def _cut(wide: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    return wide.loc[wide.index <= origin]


def _quality(
    history: pd.DataFrame, wide: pd.DataFrame, verdicts: pd.DataFrame | None
) -> QualityMatrix:
    if verdicts is None:
        verdicts = assess_readings(history)
    return QualityMatrix.from_verdicts(verdicts, wide.index, wide.columns)


def build_features(
    history: pd.DataFrame,
    origin: pd.Timestamp,
    target_dates: Sequence[pd.Timestamp],
    series: pd.DataFrame | None = None,
    verdicts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Feature rows for every series and target date, using only rows with ``Fecha <= origin``.

    Args:
        history: Clean tidy rows (``Fecha``, ``SERIES_KEYS``, ``Precio``); later rows are ignored.
        origin: The forecast origin (the last instant whose data may be used).
        target_dates: Dates to forecast, all after the origin.
        series: Optional frame of ``SERIES_KEYS`` fixing which series to produce rows for
            (default: every series in ``history``). Series unknown to the history get the
            fallback anchor and NaN history features.
        verdicts: The readings' quality verdicts (:func:`milkprice.data.quality.assess_readings`
            of ``history`` or of a longer frame); computed from ``history`` when not given.

    Returns:
        One row per (series, target date): ``SERIES_KEYS``, ``Fecha``, ``FEATURE_COLUMNS`` and
        ``QUALITY_COLUMNS``.
    """
    origin = pd.Timestamp(origin)
    wide = _with_series(_cut(to_wide(history), origin), series)
    quality = _quality(history.loc[history["Fecha"] <= origin], wide, verdicts)
    per_series = _series_features(wide, origin, quality)
    return _expand_to_dates(_only(per_series, series), origin, target_dates)


def series_features(
    history: pd.DataFrame, origin: pd.Timestamp, verdicts: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Per-series features at ``origin`` (every feature but ``horizon_days``, which is NaN).

    What :func:`build_features` computes once per series before repeating it over the target
    dates; a server computes it once per cut-off and answers any (series, date) from it.

    Returns:
        One row per series of ``history``: ``SERIES_KEYS``, ``FEATURE_COLUMNS`` and
        ``QUALITY_COLUMNS``.
    """
    origin = pd.Timestamp(origin)
    wide = _cut(to_wide(history), origin)
    quality = _quality(history.loc[history["Fecha"] <= origin], wide, verdicts)
    per_series = _series_features(wide, origin, quality)
    per_series["horizon_days"] = np.nan
    return per_series[[*SERIES_KEYS, *FEATURE_COLUMNS, *QUALITY_COLUMNS]].reset_index(drop=True)


def _with_series(wide: pd.DataFrame, series: pd.DataFrame | None) -> pd.DataFrame:
    if series is None:
        return wide
    wanted = pd.MultiIndex.from_frame(series[SERIES_KEYS].drop_duplicates())
    return wide.reindex(columns=wide.columns.union(wanted))


def _only(per_series: pd.DataFrame, series: pd.DataFrame | None) -> pd.DataFrame:
    if series is None:
        return per_series
    return per_series.merge(series[SERIES_KEYS].drop_duplicates(), on=SERIES_KEYS)


def last_prices(
    history: pd.DataFrame, origin: pd.Timestamp, series: pd.DataFrame | None = None
) -> pd.DataFrame:
    """The anchor (last observed price, with the documented fallback) per series at ``origin``.

    Args:
        history: Clean tidy rows; rows after the origin are ignored.
        origin: The forecast origin.
        series: Optional ``SERIES_KEYS`` frame fixing the series (default: those in history).

    Returns:
        ``SERIES_KEYS`` plus the ``anchor`` column.
    """
    wide = _with_series(_cut(to_wide(history), pd.Timestamp(origin)), series)
    keys = _series_frame(wide.columns)
    filled = wide.ffill().to_numpy(dtype=float)
    last = filled[-1] if len(filled) else np.full(len(keys), np.nan)
    return _only(keys.assign(**{ANCHOR_COLUMN: _fill_anchor(keys, last)}), series)


def target_horizon_end(origin: pd.Timestamp) -> pd.Timestamp:
    """Last date forecast from ``origin``: one month ahead (month end if origin is a month end).

    From the end of January the targets are February's dates; from 15 January, the dates up
    to 15 February.
    """
    origin = pd.Timestamp(origin)
    if origin.is_month_end:
        return origin + pd.offsets.MonthEnd(1)
    return origin + pd.DateOffset(months=1)


def build_training_set(
    frame: pd.DataFrame,
    origins: Sequence[pd.Timestamp],
    *,
    date_stride: int = 1,
    verdicts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Supervised rows over several origins: features plus the observed price as target.

    For each origin the targets are the publication dates present in ``frame`` up to
    :func:`target_horizon_end` (for a month-end origin: the next month). Rows whose actual
    price is NaN are dropped.

    Args:
        frame: Clean tidy rows covering the origins' histories and target dates.
        origins: Forecast origins.
        date_stride: Keep every ``date_stride``-th target date of each origin (1: all). Sticky
            prices make neighbouring dates nearly duplicate rows; thinning saves training time.
        verdicts: Quality verdicts of ``frame``'s readings (computed when not given); each
            origin skips the readings known by then to have been glitches.

    Returns:
        Feature rows with ``SERIES_KEYS``, ``Fecha``, ``origin`` and ``TARGET_COLUMN``.
    """
    wide = to_wide(frame)
    quality = _quality(frame, wide, verdicts)
    all_dates = [pd.Timestamp(d) for d in wide.index]
    actual = wide.stack(SERIES_KEYS, future_stack=True).rename(TARGET_COLUMN).reset_index()
    parts: list[pd.DataFrame] = []
    for raw_origin in origins:
        origin = pd.Timestamp(raw_origin)
        horizon_end = target_horizon_end(origin)
        targets = [d for d in all_dates if origin < d <= horizon_end][::date_stride]
        if not targets:
            continue
        per_series = _series_features(_cut(wide, origin), origin, quality)
        rows = _expand_to_dates(per_series, origin, targets)
        rows["origin"] = origin
        parts.append(rows)
    if not parts:
        raise ValueError("no origin has a following month with data; cannot build training rows")
    rows = pd.concat(parts, ignore_index=True)
    rows = rows.merge(actual, on=[*SERIES_KEYS, "Fecha"], how="left")
    return rows.loc[rows[TARGET_COLUMN].notna()].reset_index(drop=True)

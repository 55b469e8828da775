"""Accuracy over time: every stored forecast joined with the prices published since.

Each row of ``forecasts/cutoff=YYYY-MM-DD/forecast.parquet`` (see
:mod:`milkprice.pipeline.forecast_run`) is, once its date is published, scored against the
actual price beside the naive forecast *from the same cut-off* (the series' last price at that
cut-off), on the same rows, as training scores its validation month: MAE on the median
(``price``), RMSE on the ``mean``, the Brier score of ``p_change``, coverage and interval score. A row whose date is after the newest publication in the lake is
``pending``, not an error; a published date without a price for that series (a city that did
not report) is ``unreported``. The table groups scored rows by the month forecast and any of
``Estado``, ``Tipo``, ``Canal``, ``cutoff``.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

from milkprice.data.lake import Lake
from milkprice.model.distribution import CHANGE_TOLERANCE
from milkprice.model.features import ANCHOR_COLUMN, SERIES_KEYS, last_prices
from milkprice.model.intervals import interval_score
from milkprice.months import Month, month_range
from milkprice.serving.loader import HISTORY_MONTHS

__all__ = [
    "GROUPINGS",
    "PENDING",
    "SCORED",
    "UNREPORTED",
    "accuracy_over_time",
    "accuracy_table",
    "read_stored_forecasts",
    "score_stored_forecasts",
]

SCORED, PENDING, UNREPORTED = "scored", "pending", "unreported"
GROUPINGS = ("Estado", "Tipo", "Canal", "cutoff")
_FORECAST_KEY = re.compile(r"forecasts/cutoff=(\d{4}-\d{2}-\d{2})/forecast\.parquet$")


def read_stored_forecasts(lake: Lake) -> pd.DataFrame:
    """Every batch forecast the lake holds, one frame (empty if none).

    Raises:
        LakeError: the lake cannot be listed or read.
    """
    keys = sorted(k for k in lake.list_objects("forecasts/") if _FORECAST_KEY.search(k))
    frames = []
    for key in keys:
        data = lake.get_object(key)
        if data is not None:
            frames.append(pd.read_parquet(io.BytesIO(data)))
    if not frames:
        return pd.DataFrame(columns=[*SERIES_KEYS, "Fecha", "price", "cutoff"])
    return pd.concat(frames, ignore_index=True)


def score_stored_forecasts(forecasts: pd.DataFrame, prices: pd.DataFrame) -> pd.DataFrame:
    """Each forecast row with its ``actual`` price, the ``naive`` one and a ``status``.

    Args:
        forecasts: Stored forecast rows (series keys, ``Fecha``, ``price``, bounds, ``cutoff``).
        prices: The lake's clean rows, covering every cut-off's history (for the naive
            forecast) and the dates forecast (the actuals).

    Returns:
        ``forecasts`` plus ``actual``, ``naive`` and ``status`` (scored, pending, unreported).
    """
    published = pd.Timestamp(prices["Fecha"].max()) if len(prices) else pd.Timestamp.min
    actual = prices[[*SERIES_KEYS, "Fecha", "Precio"]].rename(columns={"Precio": "actual"})
    out = forecasts.merge(actual, on=[*SERIES_KEYS, "Fecha"], how="left", validate="many_to_one")
    naive = []
    for cutoff, group in out.groupby("cutoff", sort=True):
        anchors = last_prices(prices, pd.Timestamp(cutoff), group[SERIES_KEYS].drop_duplicates())
        naive.append(anchors.assign(cutoff=cutoff).rename(columns={ANCHOR_COLUMN: "naive"}))
    if naive:
        out = out.merge(pd.concat(naive), on=[*SERIES_KEYS, "cutoff"], how="left")
    else:
        out["naive"] = np.nan
    out["status"] = np.where(
        out["Fecha"] > published, PENDING, np.where(out["actual"].isna(), UNREPORTED, SCORED)
    )
    return out


def _scores(group: pd.DataFrame) -> pd.Series:
    """The month's scores, the way training scores a validation month.

    MAE on the median (``price``), RMSE on the ``mean``, ``p_change`` with the Brier score
    against the change from the forecast's anchor, the bounds with coverage and interval score.
    """
    scored = group.loc[group["status"] == SCORED]
    # Forecasts stored before the distribution existed have only ``price``: it is their mean too.
    mean = scored["mean"] if "mean" in scored else scored["price"]
    error = scored["actual"] - scored["price"]
    mean_error = scored["actual"] - mean
    naive_error = scored["actual"] - scored["naive"]
    values = {
        "scored": float(len(scored)),
        "pending": float((group["status"] == PENDING).sum()),
        "unreported": float((group["status"] == UNREPORTED).sum()),
        "rmse": float(np.sqrt(np.mean(mean_error**2))) if len(scored) else np.nan,
        "mae": float(np.mean(np.abs(error))) if len(scored) else np.nan,
        "naive_rmse": float(np.sqrt(np.mean(naive_error**2))) if len(scored) else np.nan,
        "naive_mae": float(np.mean(np.abs(naive_error))) if len(scored) else np.nan,
    }
    for level in (80, 95):
        lower, upper = scored[f"lower_{level}"], scored[f"upper_{level}"]
        inside = scored["actual"].between(lower, upper)
        values[f"coverage_{level}"] = float(inside.mean()) if len(scored) else np.nan
        values[f"interval_score_{level}"] = (
            interval_score(scored["actual"], lower, upper, level) if len(scored) else np.nan
        )
    # Forecasts whose anchor was suspect when they were made (mixed with the previous level).
    suspect = scored["suspect"].fillna(False).astype(bool) if "suspect" in scored else None
    values["suspect_series"] = (
        float(scored.loc[suspect, SERIES_KEYS].drop_duplicates().shape[0])
        if suspect is not None
        else np.nan
    )
    if "p_change" in scored and "anchor" in scored and len(scored):
        changed = (scored["actual"] - scored["anchor"]).abs() > CHANGE_TOLERANCE
        values["brier_change"] = float(np.mean((scored["p_change"] - changed) ** 2))
    else:
        values["brier_change"] = np.nan
    for metric in ("rmse", "mae"):
        naive = values[f"naive_{metric}"]
        values[f"{metric}_ratio"] = values[metric] / naive if naive else np.nan
    return pd.Series(values)


def accuracy_table(scored: pd.DataFrame, by: Sequence[str] = ()) -> pd.DataFrame:
    """RMSE, MAE, coverage and the naive baseline per month forecast (and ``by`` columns).

    Args:
        scored: Output of :func:`score_stored_forecasts`.
        by: Any of :data:`GROUPINGS`, after the month.

    Raises:
        ValueError: an unknown grouping column.
    """
    unknown = [c for c in by if c not in GROUPINGS]
    if unknown:
        raise ValueError(f"cannot group by {unknown}; choose from {', '.join(GROUPINGS)}")
    keys = ["month", *by]
    frame = scored.assign(month=scored["Fecha"].dt.strftime("%Y-%m"))
    table = frame.groupby(keys, sort=True)[list(frame.columns)].apply(_scores)
    return table.reset_index()


def accuracy_over_time(lake: Lake, by: Sequence[str] = ()) -> pd.DataFrame:
    """The accuracy table of every forecast stored in ``lake``, scored on its prices.

    The prices read reach back :data:`~milkprice.serving.loader.HISTORY_MONTHS` before the
    earliest cut-off, as the predictor read them, so the naive forecast is the one it saw.

    Raises:
        FileNotFoundError: the lake holds no forecast yet (run the forecast flow first).
    """
    forecasts = read_stored_forecasts(lake)
    if forecasts.empty:
        raise FileNotFoundError(
            f"no forecast under {lake.object_uri('forecasts/')}; run `milkprice forecast` first"
        )
    months = lake.list_months()
    first = Month.of(pd.Timestamp(forecasts["cutoff"].min())).shift(-HISTORY_MONTHS)
    prices = lake.read_window(month_range(first, max(months[-1], first))).frame
    return accuracy_table(score_stored_forecasts(forecasts, prices), by)

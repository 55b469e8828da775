"""Figures logged with every run."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

__all__ = [
    "plot_backtest_ratios",
    "plot_forecast_vs_actual",
    "plot_national_forecast",
    "plot_series_forecast",
]


def plot_forecast_vs_actual(predictions: pd.DataFrame, path: Path, title: str) -> Path:
    """PNG of the validation month: mean price per date, and model vs actual per row.

    Args:
        predictions: rows with ``Fecha``, ``actual``, ``model`` and ``naive``.
        path: where to write the PNG.
        title: figure title (say the month and the model version).
    """
    scored = predictions.dropna(subset=["actual"])
    daily = scored.groupby("Fecha")[["actual", "model", "naive"]].mean()
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    left.plot(daily.index, daily["actual"], "o-", label="actual", color="black")
    left.plot(daily.index, daily["model"], "s--", label="model")
    left.plot(daily.index, daily["naive"], "^:", label="naive (last price)")
    left.set_title("Mean over series, per publication date")
    left.set_ylabel("MXN per litre")
    left.legend()
    left.tick_params(axis="x", rotation=30)
    right.scatter(scored["actual"], scored["model"], s=6, alpha=0.4)
    low, high = scored["actual"].min(), scored["actual"].max()
    right.plot([low, high], [low, high], color="grey", linewidth=1)
    right.set_xlabel("actual")
    right.set_ylabel("forecast")
    right.set_title("Every series and date")
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes (closed afterwards): the caller decides where they go."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def _draw_forecast(axes: Axes, history: pd.Series, forecast: pd.DataFrame) -> None:
    """History as a line, then the forecast (median and mean) with its 95 % and 80 % bands."""
    axes.plot(history.index, history.to_numpy(), "-", color="black", linewidth=1.2, label="price")
    dates = forecast["Fecha"]
    axes.fill_between(
        dates, forecast["lower_95"], forecast["upper_95"], alpha=0.18, color="C0", label="95 %"
    )
    axes.fill_between(
        dates, forecast["lower_80"], forecast["upper_80"], alpha=0.35, color="C0", label="80 %"
    )
    axes.plot(dates, forecast["price"], "o-", color="C0", markersize=3, label="median (price)")
    if "mean" in forecast:
        axes.plot(dates, forecast["mean"], "--", color="C1", linewidth=1.2, label="mean")
    axes.set_ylabel("MXN per litre")
    axes.tick_params(axis="x", rotation=30)


def plot_national_forecast(history: pd.DataFrame, national: pd.DataFrame, title: str) -> bytes:
    """PNG of the national average per ``Tipo`` x ``Canal``: history, forecast, 80/95 bands.

    The bands are the intervals of the national average itself (simulated from the series'
    distributions and their dependence, :func:`milkprice.model.aggregate.aggregate_forecast`),
    narrower than a typical series' band.

    Args:
        history: tidy rows (``Fecha``, ``Tipo``, ``Canal``, ``Precio``) before the cut-off.
        national: the national average's forecast, one row per ``Tipo`` x ``Canal`` and
            ``Fecha`` (``price``, ``mean`` and the bounds), as ``aggregate_forecast`` gives it
            with ``by=("Tipo", "Canal")``.
        title: figure title (say the cut-off and the model version).
    """
    pairs = sorted(national[["Tipo", "Canal"]].drop_duplicates().itertuples(index=False))
    columns = 2 if len(pairs) > 1 else 1
    rows = max(1, -(-len(pairs) // columns))
    figure, grid = plt.subplots(rows, columns, figsize=(6 * columns, 3.6 * rows), squeeze=False)
    for axes, (tipo, canal) in zip(grid.ravel(), pairs, strict=False):
        past = history.loc[(history["Tipo"] == tipo) & (history["Canal"] == canal)]
        ahead = national.loc[(national["Tipo"] == tipo) & (national["Canal"] == canal)]
        _draw_forecast(axes, past.groupby("Fecha")["Precio"].mean(), ahead.sort_values("Fecha"))
        axes.set_title(f"{tipo} / {canal}")
    for axes in grid.ravel()[len(pairs) :]:
        axes.set_visible(False)
    grid.ravel()[0].legend(loc="upper left", fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    return _png_bytes(figure)


def plot_series_forecast(history: pd.DataFrame, forecast: pd.DataFrame, title: str) -> bytes:
    """PNG of one series: its prices before the cut-off, the forecast and its 80/95 bands.

    Args:
        history: the series' tidy rows (``Fecha``, ``Precio``) before the cut-off.
        forecast: the series' forecast rows (``Fecha``, ``price`` and the bounds).
        title: figure title (name the series, the cut-off and the model version).
    """
    figure, axes = plt.subplots(figsize=(10, 4))
    _draw_forecast(axes, history.dropna(subset=["Precio"]).set_index("Fecha")["Precio"], forecast)
    axes.legend(loc="upper left", fontsize="small")
    axes.set_title(title, fontsize="medium")
    figure.tight_layout()
    return _png_bytes(figure)


def plot_backtest_ratios(table: pd.DataFrame) -> bytes:
    """PNG of a backtest: the model's RMSE and MAE as ratios to naive, month by month.

    Args:
        table: :func:`milkprice.pipeline.backtest.backtest_table` (its ``mean`` row is drawn
            as a level; months with a short training window are starred).
    """
    months = table.loc[~table["month"].isin(["mean", "worst"])]
    mean = table.loc[table["month"] == "mean"].iloc[0]
    short = months["short_window"].astype(bool)
    labels = [m + ("*" if s else "") for m, s in zip(months["month"], short, strict=True)]
    figure, axes = plt.subplots(figsize=(10, 4.5))
    for column, marker in (("rmse_ratio", "o-"), ("mae_ratio", "s--")):
        name = column.split("_")[0].upper()
        line = axes.plot(labels, months[column], marker, label=name)
        axes.axhline(mean[column], color=line[0].get_color(), linewidth=0.8, linestyle=":")
    axes.axhline(1.0, color="black", linewidth=1, label="naive (last price)")
    axes.axhline(1.03, color="red", linewidth=0.8, linestyle="--", label="1.03")
    axes.set_ylabel("model / naive")
    note = "; * short training window" if short.any() else ""
    axes.set_title(f"Backtest: model error relative to the last price (dotted: mean{note})")
    axes.legend()
    axes.tick_params(axis="x", rotation=30)
    figure.tight_layout()
    return _png_bytes(figure)

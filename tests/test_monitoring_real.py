"""Monitoring on the real SNIIM data: January 2025 (the last design month; 2025-02..04 are the
developers' hold-out), forecast at the end of December 2024, scored from the stored forecast
file, reports what the training run's own evaluation of that month computed: MAE on the
median, RMSE on the mean, coverage of the bounds."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest

from milkprice.data.lake import Lake
from milkprice.model.training import (
    build_window_rows,
    calibrate_intervals,
    fit_forecaster,
    train_and_evaluate,
)
from milkprice.monitoring.accuracy import accuracy_over_time
from milkprice.months import Month, month_range
from milkprice.pipeline.forecast_run import build_forecast, forecast_keys
from milkprice.serving.predictor import ModelInfo, Predictor

pytestmark = pytest.mark.realdata
APRIL = Month(2025, 1)


def test_monitoring_a_month_reproduces_the_training_evaluation(
    real_data_dir: Path, tmp_path
) -> None:
    real = Lake(str(real_data_dir))
    frame = real.read_window(month_range(APRIL.shift(-12), APRIL)).frame
    outcome = train_and_evaluate(frame, APRIL, seed=0, n_trials=0)

    # The model the evaluation scored: fit on the months before April, with its intervals.
    split = outcome.split
    rows = build_window_rows(frame, split)
    residuals = calibrate_intervals(frame, split, outcome.params, seed=0, rows=rows)
    fitted = fit_forecaster(frame, split, outcome.params, seed=0, rows=rows, residuals=residuals)
    cutoff = split.validation_origin  # 2024-12-31
    info = ModelInfo("milk-price-model", "1", str(APRIL), "")
    predictor = Predictor(fitted, info, frame.loc[frame["Fecha"] <= cutoff], cutoff)

    # A lake as production has it: the partitions, and the forecast stored at the cut-off.
    lake = Lake(str(tmp_path / "lake"))
    for month in month_range(Month(2024, 8), APRIL):
        shutil.copytree(
            real_data_dir / "monthly" / f"{month.year}" / f"{month.month:02d}",
            tmp_path / "lake" / "monthly" / f"{month.year}" / f"{month.month:02d}",
        )
    buffer = io.BytesIO()
    build_forecast(predictor).to_parquet(buffer, index=False)
    lake.put_object(forecast_keys(cutoff).parquet, buffer.getvalue())

    april = accuracy_over_time(lake).set_index("month").loc[str(APRIL)]
    expected = outcome.metrics
    # Same rows: every series the evaluation scored was forecast (none was stale at the cut-off).
    assert april["scored"] == expected["n_scored"]
    assert april["pending"] == 0
    # Forecasts are served to 4 decimals: errors agree to that, coverage to a row or two.
    assert april["rmse"] == pytest.approx(expected["val_rmse"], abs=1e-4)
    assert april["mae"] == pytest.approx(expected["val_mae"], abs=1e-4)
    assert april["naive_rmse"] == pytest.approx(expected["naive_val_rmse"], abs=1e-9)
    for level in (80, 95):
        assert april[f"coverage_{level}"] == pytest.approx(
            expected[f"coverage_{level}"], abs=2 / expected["n_scored"]
        )

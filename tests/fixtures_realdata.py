"""The design-months backtest on the real data, trained once per session for every test that
scores it (accuracy, aggregate coverage): 2024-07..2025-01, each month trained on the 12 before
it as the flow does, with the product's settings (``MILKPRICE_N_TRIALS``, default 0)."""

from __future__ import annotations

from pathlib import Path

import pytest

from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.pipeline.backtest import BacktestReport, run_backtest
from milkprice.settings import get_settings

DESIGN_MONTHS = month_range(Month(2024, 7), Month(2025, 1))


@pytest.fixture(scope="session")
def design_backtest(real_data_dir: Path) -> BacktestReport:
    """The backtest report of the design months (the hold-out 2025-02..2025-04 is not read)."""
    settings = get_settings()
    return run_backtest(
        Lake(str(real_data_dir)), DESIGN_MONTHS, seed=0, n_trials=settings.n_trials, jobs=1
    )

"""Cost of the aggregate bands against the old display, in the same process.

Run: ``.venv/bin/python benchmarks/bench_aggregate.py``. Builds a seeded forecast frame the size
of the product's (216 series: 32 states x Tipo x Canal, 30 publication dates, sticky knots with
a point mass at the anchor), then alternates :func:`aggregate_forecast` (2000 draws; the nation
by Tipo x Canal and the states by Estado x Tipo x Canal) with :func:`mean_of_bounds` (the
pandas group mean the plot drew before), and reports the median times and their ratios (a busy
neighbour slows both alike). Writes ``benchmarks/results/aggregate.json``.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from milkprice.model.aggregate import KNOTS, aggregate_forecast, mean_of_bounds

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "aggregate.json"
REPEATS = 15
SCORES = {"lower_95": -1.96, "lower_80": -1.28, "price": 0.0, "upper_80": 1.28, "upper_95": 1.96}


def forecast_frame(n_series: int = 216, n_dates: int = 30, seed: int = 0) -> pd.DataFrame:
    """Seeded per-series forecasts shaped like the batch forecast's."""
    rng = np.random.default_rng(seed)
    index = np.arange(n_series)
    series = pd.DataFrame(
        {
            "Estado": [f"Estado {i % 32}" for i in index],
            "Ciudad": [f"Ciudad {i}" for i in index],
            "Tipo": np.where(index % 2, "Pasteurizada", "Ultrapasteurizada"),
            "Canal": np.where(index % 4 < 2, "Autoservicio", "Tradicional"),
        }
    )
    dates = pd.DataFrame({"Fecha": pd.date_range("2025-02-03", periods=n_dates, freq="2D")})
    frame = series.merge(dates, how="cross")
    anchor = np.repeat(rng.uniform(18, 32, n_series), n_dates)
    horizon = np.tile(np.arange(1, n_dates + 1), n_series)
    p_change = np.clip(0.02 * horizon * rng.uniform(0.5, 1.5, len(frame)), 0, 0.95)
    spread = 0.02 * anchor * np.sqrt(horizon / 10)
    for (name, score), level in zip(SCORES.items(), KNOTS.values(), strict=True):
        # Sticky: a knot inside the anchor's atom (centred on the median) stays at the anchor.
        inside = abs(level - 0.5) < (1 - p_change) / 2
        frame[name] = np.where(inside, anchor, anchor + spread * score)
    frame["anchor"] = anchor
    frame["p_change"] = p_change
    frame["mean"] = anchor + 0.3 * p_change * spread
    return frame


def median_seconds(run: Callable[[], object], others: list[Callable[[], object]]) -> float:
    """Median wall time of ``run`` over :data:`REPEATS`, interleaved with ``others``."""
    times = []
    for _ in range(REPEATS):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
        for other in others:
            other()
    return statistics.median(times)


def main() -> int:
    frame = forecast_frame()
    nation, states = ("Tipo", "Canal"), ("Estado", "Tipo", "Canal")
    cases = {
        "aggregate_nation": lambda: aggregate_forecast(frame, nation, dependence=0.5),
        "aggregate_states": lambda: aggregate_forecast(frame, states, dependence=0.5),
        "mean_of_bounds_nation": lambda: mean_of_bounds(frame, nation),
        "mean_of_bounds_states": lambda: mean_of_bounds(frame, states),
    }
    for run in cases.values():  # warm-up: imports, allocator
        run()
    seconds = {
        name: median_seconds(run, [r for n, r in cases.items() if n != name][:1])
        for name, run in cases.items()
    }
    result = {
        "rows": len(frame),
        "series": int(frame[["Estado", "Ciudad", "Tipo", "Canal"]].drop_duplicates().shape[0]),
        "dates": int(frame["Fecha"].nunique()),
        "draws": 2000,
        "median_ms": {name: round(1000 * s, 2) for name, s in seconds.items()},
        "ratio_nation": round(seconds["aggregate_nation"] / seconds["mean_of_bounds_nation"], 2),
        "ratio_states": round(seconds["aggregate_states"] / seconds["mean_of_bounds_states"], 2),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Growth with the number of series: feature building, tuning+training and the batch forecast.

Run: ``.venv/bin/python benchmarks/bench_scale.py``. The seeded demo generator makes the same 13
months (2024-03..2025-03: 12 training months and the validation month 2025-03) for 54, 250, 500
and 5,000 cities: 216, 1,000, 2,000 and 20,000 series. Each (size, step) runs in a fresh
process that reads the validated frame from a parquet file, then times one step:

- ``features``: :func:`milkprice.model.training.build_window_rows` (the supervised rows of every
  origin of the window, what the flow's ``features`` task builds);
- ``training``: :func:`milkprice.model.training.train_and_evaluate` with the default settings
  (features, the dead-zone tuning on inner folds, interval calibration, fit, evaluation, refit);
- ``forecast``: a :class:`milkprice.serving.predictor.Predictor` over the last 5 months at the
  cut-off 2025-03-31 and its batch forecast of every series to the end of April (what the daily
  forecast flow does after loading the champion).

Time is wall and CPU seconds (this machine is shared: CPU time, which a busy neighbour does
not inflate, is what the growth exponent should be read from). Memory is the process's peak
resident set (``ru_maxrss``: LightGBM's C++ allocations count,
which tracemalloc would miss), beside the resident set right after reading the frame. The
growth exponent is the least-squares slope of log(value) on log(series). Writes
``benchmarks/results/scale.json``. ``BENCH_SCALE_CITIES`` and ``BENCH_SCALE_TRAIN_CITIES`` (cities,
comma-separated) choose the sizes.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "scale.json"
# Cities (4 series each) of every step: 216, 1,000, 2,000 and 20,000 series. Training 20,000
# series takes about 4.5 CPU minutes, most of this script's ~8 minutes on an idle 2-core
# machine: BENCH_SCALE_TRAIN_CITIES=54,250,500 leaves it out.
DEFAULT_CITIES = "54,250,500,5000"
DEFAULT_TRAIN_CITIES = "54,250,500,5000"
STEPS = ("features", "training", "forecast")
VALIDATION = (2025, 3)
SEED = 0


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _cpu_s() -> float:
    """CPU seconds of this process and its threads (robust to a busy neighbour, unlike wall)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def prepare(folder: Path, cities: int) -> dict[str, float]:
    """Generate and validate the 13 months of ``cities`` cities into ``folder/frame.parquet``."""
    from milkprice.data.demo import generate_demo_frame  # noqa: PLC0415
    from milkprice.data.schema import validate_frame  # noqa: PLC0415
    from milkprice.months import Month  # noqa: PLC0415

    month = Month(*VALIDATION)
    started = time.perf_counter()
    raw = generate_demo_frame(month.shift(-12), month, SEED, cities=cities)
    frame, _ = validate_frame(raw, origin=f"demo with {cities} cities")
    frame.to_parquet(folder / "frame.parquet", index=False)
    return {"rows": len(frame), "seconds": time.perf_counter() - started}


def run_step(folder: Path, step: str) -> dict[str, object]:
    """One step on the prepared frame, in this (fresh) process: seconds and memory."""
    import pandas as pd  # noqa: PLC0415

    from milkprice.model.training import (  # noqa: PLC0415
        build_window_rows,
        split_window,
        train_and_evaluate,
    )
    from milkprice.months import Month  # noqa: PLC0415
    from milkprice.serving.predictor import ModelInfo, Predictor, forecast_dates  # noqa: PLC0415

    month = Month(*VALIDATION)
    frame = pd.read_parquet(folder / "frame.parquet")
    loaded_mb = _rss_mb()
    out: dict[str, object] = {}
    started, cpu_started = time.perf_counter(), _cpu_s()
    if step == "features":
        out["rows"] = len(build_window_rows(frame, split_window(frame, month)))
    elif step == "training":
        outcome = train_and_evaluate(frame, month, seed=SEED, n_trials=0)
        out["timings"] = outcome.timings
        out["rmse_ratio"] = outcome.metrics["rmse_ratio_to_naive"]
        (folder / "model.pkl").write_bytes(pickle.dumps(outcome.forecaster))
    else:
        forecaster = pickle.loads((folder / "model.pkl").read_bytes())
        cutoff = month.end
        history = frame.loc[frame["Fecha"] >= month.shift(-4).start]
        info = ModelInfo("bench", "1", str(month), "-")
        forecast = Predictor(forecaster, info, history, cutoff).forecast(forecast_dates(cutoff))
        out["rows"] = len(forecast)
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = _cpu_s() - cpu_started
    out["loaded_mb"] = loaded_mb
    out["peak_mb"] = _rss_mb()
    return out


def _child(*args: str) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, *args], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"bench_scale {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def growth_exponent(series: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) on log(series): 1 is linear."""
    return float(np.polyfit(np.log(series), np.log(values), 1)[0])


def _sizes(variable: str, default: str) -> list[int]:
    return sorted(int(c) for c in os.environ.get(variable, default).split(","))


def _table(results: dict[str, dict[int, dict]], summary: dict[str, dict[str, float]]) -> None:
    """Print each step's figures per size with the fitted exponent; fill ``summary``."""
    for step, by_size in results.items():
        sizes = sorted(by_size)
        series = [cities * 4 for cities in sizes]
        print(f"\n{step:<22}" + "".join(f"{n:>12,}" for n in series) + "  exponent")
        measures = [("seconds", "s"), ("cpu_seconds", "s"), ("peak_mb", "MB")]
        if step == "training":
            parts = ("features", "tune", "intervals", "fit", "evaluate", "refit")
            measures += [(f"timings.{part}", "s") for part in parts]
        for measure, unit in measures:
            values = [_value(by_size[c], measure) for c in sizes]
            slope = growth_exponent(series, values) if len(series) > 1 else float("nan")
            summary[f"{step} {measure}"] = {
                "exponent": slope,
                **{str(n): v for n, v in zip(series, values, strict=True)},
            }
            cells = "".join(f"{v:>10.1f}{unit:>2}" for v in values)
            print(f"  {measure:<20}{cells}  {slope:6.2f}")


def _value(entry: dict, measure: str) -> float:
    if measure.startswith("timings."):
        return float(entry["timings"][measure.split(".", 1)[1]])
    return float(entry[measure])


def main() -> int:
    """Prepare every size, then train the smallest (its model serves every forecast), then
    features and forecast per size, then the larger trainings (the longest last)."""
    cities = _sizes("BENCH_SCALE_CITIES", DEFAULT_CITIES)
    trained = _sizes("BENCH_SCALE_TRAIN_CITIES", DEFAULT_TRAIN_CITIES)
    results: dict[str, dict[int, dict]] = {step: {} for step in STEPS}
    prepared: dict[int, dict] = {}

    def record(step: str, size: int, folder: Path) -> None:
        results[step][size] = _child("step", str(folder), step)
        print(f"{size * 4:>6} series  {step:<9} {results[step][size]}", flush=True)

    with tempfile.TemporaryDirectory(prefix="milkprice-bench-scale-") as tmp:
        folders = {size: Path(tmp) / str(size) for size in sorted({*cities, *trained})}
        for size, folder in folders.items():
            folder.mkdir()
            prepared[size] = _child("prepare", str(folder), str(size))
        # The forecasts all use the model trained on the smallest size: the forecast's cost
        # depends on the rows asked for, not on which fitted model answers them.
        record("training", trained[0], folders[trained[0]])
        model = (folders[trained[0]] / "model.pkl").read_bytes()
        for size in cities:
            (folders[size] / "model.pkl").write_bytes(model)
            record("features", size, folders[size])
            record("forecast", size, folders[size])
        for size in trained[1:]:
            record("training", size, folders[size])
    summary: dict[str, dict[str, float]] = {}
    _table(results, summary)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "prepared": {str(c * 4): v for c, v in prepared.items()},
                "results": {
                    step: {str(c * 4): v for c, v in by_size.items()}
                    for step, by_size in results.items()
                },
                "summary": summary,
                "load_average": os.getloadavg(),
            },
            indent=2,
            default=str,
        )
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "prepare":
        print(json.dumps(prepare(Path(sys.argv[2]), int(sys.argv[3]))))
        sys.exit(0)
    if len(sys.argv) > 1 and sys.argv[1] == "step":
        print(json.dumps(run_step(Path(sys.argv[2]), sys.argv[3]), default=str))
        sys.exit(0)
    sys.exit(main())

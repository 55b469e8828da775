"""The rolling backtest on the real data: accuracy per month, time with 1 and 2 jobs, and the
promotion gate replayed over the months with the old rule (RMSE) and the new one (score).

Run: ``.venv/bin/python benchmarks/bench_backtest.py``. Backtests 2024-07..2025-01, the design months (the months
of 2024 have fewer than 12 training months: flagged "short"), prints the table with its mean and
worst month, the wall time with ``--jobs 1`` and ``--jobs 2`` (their ratio), and how the gate's
decisions differ, and writes ``benchmarks/results/backtest.json``. Reads the shared data only.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pandas as pd

from milkprice.data.lake import Lake
from milkprice.model.training import DEFAULT_N_TRIALS, evaluate_on_month
from milkprice.months import Month, month_range
from milkprice.pipeline.backtest import BacktestReport, run_backtest
from milkprice.registry.promotion import gate_score

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "backtest.json"
MONTHS = month_range(Month(2024, 7), Month(2025, 1))
SEED = 0
N_TRIALS = int(os.environ.get("MILKPRICE_N_TRIALS", str(DEFAULT_N_TRIALS)))


def replay_gate(report: BacktestReport, lake: Lake) -> list[dict[str, object]]:
    """Each month's candidate through both gates, each gate keeping its own champion."""
    frame = lake.read_window(month_range(MONTHS[0].shift(-12), MONTHS[-1])).frame
    champions: dict[str, tuple[Month, object] | None] = {"rmse": None, "score": None}
    decisions = []
    for result in report.months:
        metrics = {
            "val_rmse": result.metrics["model_rmse"],
            "val_mae": result.metrics["model_mae"],
            "naive_val_rmse": result.metrics["naive_rmse"],
            "naive_val_mae": result.metrics["naive_mae"],
        }
        row: dict[str, object] = {"month": str(result.month)}
        for rule, champion in champions.items():
            value = metrics["val_rmse"] if rule == "rmse" else gate_score(metrics)
            beats_naive = value < (metrics["naive_val_rmse"] if rule == "rmse" else 1.0)
            promoted = beats_naive
            if beats_naive and champion is not None:
                rescored = evaluate_on_month(champion[1], frame, result.month).metrics
                promoted = value <= (
                    rescored["val_rmse"] if rule == "rmse" else gate_score(rescored)
                )
            if promoted:
                champions[rule] = (result.month, result.model)
            row[f"{rule}_gate"] = "promoted" if promoted else "rejected"
            row[f"{rule}_champion"] = str(champions[rule][0]) if champions[rule] else "-"
        decisions.append(row)
    return decisions


def main() -> int:
    root = Path(os.environ.get("MILKPRICE_REAL_DATA", REPO.parent / "shared" / "data" / "sniim"))
    lake = Lake(str(root))
    timings = {}
    reports = {}
    for jobs in (1, 2):
        started = time.perf_counter()
        reports[jobs] = run_backtest(lake, MONTHS, seed=SEED, n_trials=N_TRIALS, jobs=jobs)
        timings[jobs] = time.perf_counter() - started
    report = reports[1]
    table = report.table()
    pd.set_option("display.width", 200)
    columns = [
        "month", "short_window", "rmse_ratio", "mae_ratio", "coverage_80", "coverage_95",
        "interval_score_80", "naive_interval_score_80", "interval_score_95",
        "naive_interval_score_95",
    ]  # fmt: skip
    print(table[columns].round(3).to_string(index=False))
    full = table.loc[table["short_window"].eq(False)]
    summary = {
        "all_mean_rmse_ratio": float(table.loc[table["month"] == "mean", "rmse_ratio"].iloc[0]),
        "all_mean_mae_ratio": float(table.loc[table["month"] == "mean", "mae_ratio"].iloc[0]),
        "all_worst_ratio": float(
            table.loc[table["month"] == "worst", ["rmse_ratio", "mae_ratio"]].max(axis=1).iloc[0]
        ),
        "full_window_mean_rmse_ratio": float(full["rmse_ratio"].mean()),
        "full_window_mean_mae_ratio": float(full["mae_ratio"].mean()),
        "seconds_jobs_1": timings[1],
        "seconds_jobs_2": timings[2],
        "speedup_jobs_2": timings[1] / timings[2],
        "same_table_for_1_and_2_jobs": bool(
            (reports[1].table()["rmse_ratio"] - reports[2].table()["rmse_ratio"]).abs().max() < 1e-9
        ),
        "n_trials": N_TRIALS,
        "load_average": os.getloadavg(),
    }
    print(json.dumps(summary, indent=2))
    decisions = replay_gate(report, lake)
    print(pd.DataFrame(decisions).to_string(index=False))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {"summary": summary, "table": table.to_dict("records"), "gate": decisions},
            indent=2,
            default=str,
        )
    )
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A 12-month backtest: sequential in this process vs one task per month on a 2-worker Dask cluster.

Run: ``.venv/bin/python benchmarks/bench_backtest_dask.py``. Writes a seeded demo lake of
2024-01..2025-12 (216 series) in a temporary folder, starts a real ``prefect server``, a ``dask
scheduler`` and two ``dask worker`` processes (one thread each) on loopback, then backtests
2025-01..2025-12 (every month with its full 12 training months) three ways, each published the
same way (files in the lake, one MLflow run):

- sequential: :func:`milkprice.pipeline.backtest.run_backtest` with ``jobs=1`` (``milkprice
  backtest``);
- a local process pool: ``jobs=2`` (``milkprice backtest --jobs 2``), the one-machine reference;
- the Prefect flow on the Dask cluster (``milkprice backtest --dask-address``).

The workers import milkprice once before the timing (a long-lived cluster is warm). Prints the
wall times, the ratios to the sequential run and whether the three tables are identical; writes
``benchmarks/results/backtest_dask.json``. Everything started is stopped at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_flow_overhead import start_prefect_server, stop_prefect_server

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "backtest_dask.json"
WORKERS = 2


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_dask(folder: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    """A scheduler and ``WORKERS`` single-threaded workers on loopback, each in its own group."""
    from distributed import Client  # noqa: PLC0415

    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    commands = [[dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]]
    commands += [
        [dask, "worker", address, "--nworkers", "1", "--nthreads", "1", "--host", "127.0.0.1",
         "--no-dashboard", "--local-directory", str(folder / f"worker-{i}")]
        for i in range(WORKERS)
    ]  # fmt: skip
    processes = []
    for i, command in enumerate(commands):
        log = (folder / f"dask-{i}.log").open("wb")
        processes.append(
            subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        )
    with Client(address, timeout=120) as client:
        client.wait_for_workers(WORKERS, timeout=120)
        # Warm the workers: a long-lived cluster has imported milkprice and Prefect long ago.
        client.run(lambda: __import__("orchestration.flows.backtest_flow"))
    return address, processes


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """SIGTERM each process group (workers first), SIGKILL what does not stop."""
    for process in reversed(processes):
        try:
            os.killpg(process.pid, 15)
            process.wait(timeout=30)
        except ProcessLookupError:
            continue
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait(timeout=10)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="milkprice-bench-backtest-dask-"))
    server, api_url = start_prefect_server(work)
    os.environ.update(
        PREFECT_API_URL=api_url,
        MILKPRICE_DATA_ROOT=str(work / "lake"),
        MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
        MILKPRICE_N_TRIALS="0",
        MILKPRICE_SEED="0",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    processes: list[subprocess.Popen[bytes]] = []
    try:
        # Imported only now: Prefect reads PREFECT_API_URL from the environment.
        import pandas as pd  # noqa: PLC0415

        from milkprice.data.demo import write_demo_lake  # noqa: PLC0415
        from milkprice.data.lake import Lake  # noqa: PLC0415
        from milkprice.months import Month, month_range  # noqa: PLC0415
        from milkprice.pipeline.backtest import (  # noqa: PLC0415
            MODELS,
            publish_backtest,
            run_backtest,
        )
        from milkprice.settings import get_settings  # noqa: PLC0415
        from orchestration.flows.backtest_flow import backtest_on_dask  # noqa: PLC0415

        first, last = Month(2025, 1), Month(2025, 12)
        settings = get_settings()
        lake = Lake.from_settings(settings, "local")
        write_demo_lake(lake, Month(2024, 1), last, seed=0)
        address, processes = start_dask(work)
        months = month_range(first, last)
        seconds: dict[str, float] = {}
        tables = {}
        for name, jobs in (("sequential", 1), ("process_pool_2", 2)):
            started = time.perf_counter()
            report = run_backtest(
                lake, months, seed=settings.seed, n_trials=settings.n_trials, jobs=jobs
            )
            publish_backtest(settings, lake, report)
            seconds[name] = time.perf_counter() - started
            tables[name] = report.table()
            print(f"{name}: {seconds[name]:.1f} s", flush=True)
        started = time.perf_counter()
        published = backtest_on_dask(address, "local", first, last, MODELS)
        seconds["dask_2_workers"] = time.perf_counter() - started
        tables["dask_2_workers"] = published.report.table()
        print(f"dask_2_workers: {seconds['dask_2_workers']:.1f} s", flush=True)
    finally:
        stop(processes)
        stop_prefect_server(server)
        shutil.rmtree(work, ignore_errors=True)

    identical = {}
    for name in ("process_pool_2", "dask_2_workers"):
        try:
            pd.testing.assert_frame_equal(tables[name], tables["sequential"])
            identical[name] = True
        except AssertionError:
            identical[name] = False
    seconds_per_month = {name: value / len(months) for name, value in seconds.items()}
    speedup = {name: seconds["sequential"] / value for name, value in seconds.items()}
    summary = {
        "months": f"{first}..{last}",
        "series": 216,
        "seconds": seconds,
        "seconds_per_month": seconds_per_month,
        "speedup_vs_sequential": speedup,
        "same_table_as_sequential": identical,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "mean_rmse_ratio": float(tables["sequential"].set_index("month").loc["mean", "rmse_ratio"]),
    }
    print(json.dumps(summary, indent=2))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(summary, indent=2))
    print(f"wrote {RESULTS}")
    return 0 if all(identical.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

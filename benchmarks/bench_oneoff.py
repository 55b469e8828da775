"""A one-off training run as a whole process: the flow script vs the same steps called plainly.

Run: ``.venv/bin/python benchmarks/bench_oneoff.py``. On a seeded demo lake (2024-01..2025-02,
validation month 2025-02) it times three commands, each a fresh process as a user starts it,
alternated ``REPEATS`` times (env ``BENCH_REPEATS``, default 3), each on an empty copy of one
migrated MLflow SQLite store:

- ``plain``: ``python -c "run_training(...)"`` (:func:`milkprice.pipeline.training_run.run_training`);
- ``flow_temporary_server``: ``python orchestration/flows/main_flow.py --year 2025 --month 2``
  with no ``PREFECT_API_URL`` and no stack: Prefect starts its temporary server;
- ``flow_running_server``: the same command with a ``.state/stack.json`` naming a running
  ``prefect server start`` (what ``make up`` writes): the run reuses it
  (:mod:`orchestration.prefect_server`).

Prints the medians and their ratios to ``plain``; writes ``benchmarks/results/oneoff.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "oneoff.json"
MAIN_FLOW = REPO / "orchestration" / "flows" / "main_flow.py"
FIRST, LAST, YEAR, MONTH = "2024-01", "2025-02", 2025, 2
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))
PLAIN = (
    "from milkprice.pipeline.training_run import run_training\n"
    "from milkprice.settings import get_settings\n"
    f"run_training(get_settings(), 'local', {YEAR}, {MONTH})\n"
)
MIGRATE = "import mlflow, sys; mlflow.MlflowClient(sys.argv[1]).search_experiments()"
SAYS_SO = "Using the running Prefect server at"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _start_server(home: Path, env: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    server_env = {
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
    }
    with (home / "server.log").open("wb") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "prefect"), "server", "start"],
            env=server_env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return process, url
        except OSError:
            time.sleep(0.5)
    _stop(process)
    raise TimeoutError(f"prefect server did not answer at {url}; see {home / 'server.log'}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _base_env(work: Path) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MILKPRICE_", "MLFLOW_")) and key != "STATE_DIR"
    }
    env.update(
        MILKPRICE_DATA_ROOT=str(work / "lake"),
        PREFECT_HOME=str(work / "prefect-home"),
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="true",
        MLFLOW_DISABLE_TELEMETRY="true",
        # Prefect gives its temporary server 20 s to start; a loaded machine needs more.
        PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="180",
    )
    return env


def _timed(command: list[str], env: dict[str, str], cwd: Path, store: Path) -> tuple[float, str]:
    """Wall time of one process on an empty MLflow store, and its stderr."""
    run_dir = Path(tempfile.mkdtemp(dir=cwd.parent))
    shutil.copyfile(store, run_dir / "mlflow.db")
    env = {**env, "MLFLOW_TRACKING_URI": f"sqlite:///{run_dir / 'mlflow.db'}"}
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"{command} failed:\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    return elapsed, done.stderr


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="milkprice-bench-oneoff-"))
    env = _base_env(work)
    demo = ["data", "demo", "--start", FIRST, "--end", LAST, "--seed", "0"]
    milkprice = str(Path(sys.executable).parent / "milkprice")
    subprocess.run([milkprice, *demo], env=env, check=True, capture_output=True)
    store = work / "template.db"
    subprocess.run(
        [sys.executable, "-c", MIGRATE, f"sqlite:///{store}"],
        env=env,
        check=True,
        capture_output=True,
    )
    (work / "server-home").mkdir()
    server, api_url = _start_server(work / "server-home", env)
    # Two working directories: one whose .state/stack.json names the running server, one without.
    with_stack, without = work / "with-stack", work / "without-stack"
    (with_stack / ".state").mkdir(parents=True)
    without.mkdir()
    (with_stack / ".state" / "stack.json").write_text(
        json.dumps({"stack": "local", "prefect_api_url": api_url})
    )
    flow = [sys.executable, str(MAIN_FLOW), "--year", str(YEAR), "--month", str(MONTH)]
    cases = {
        "plain": ([sys.executable, "-c", PLAIN], without),
        "flow_temporary_server": (flow, without),
        "flow_running_server": (flow, with_stack),
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    try:
        for command, cwd in cases.values():  # warm-up: file caches, first imports
            _timed(command, env, cwd, store)
        for _ in range(REPEATS):
            for name, (command, cwd) in cases.items():
                elapsed, stderr = _timed(command, env, cwd, store)
                reused = SAYS_SO in stderr
                if reused != (name == "flow_running_server"):
                    raise RuntimeError(f"{name}: server reuse was {reused}:\n{stderr[-2000:]}")
                times[name].append(elapsed)
    finally:
        _stop(server)
    medians = {name: statistics.median(values) for name, values in times.items()}
    result = {
        "validation_month": f"{YEAR}-{MONTH:02d}",
        "lake": f"demo {FIRST}..{LAST}, seed 0",
        "repeats": REPEATS,
        "seconds": times,
        "median_seconds": medians,
        "ratio_to_plain": {name: medians[name] / medians["plain"] for name in medians},
        "ratio_temporary_to_running": medians["flow_temporary_server"]
        / medians["flow_running_server"],
        "load_average": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    for name, values in times.items():
        print(
            f"{name:<24} median {medians[name]:6.2f} s  x{result['ratio_to_plain'][name]:.2f} "
            f"of plain  ({', '.join(f'{v:.1f}' for v in values)})"
        )
    print(f"temporary / running server: {result['ratio_temporary_to_running']:.2f}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

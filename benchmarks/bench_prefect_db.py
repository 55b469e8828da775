"""Prefect overhead per flow run: a server on PostgreSQL vs one on SQLite, in one process.

Run: ``.venv/bin/python benchmarks/bench_prefect_db.py [--runs N]``. Starts a private PostgreSQL
cluster (:mod:`stack.postgres`, as ``make up STACK=cluster`` does) and two real
``prefect server`` processes on free loopback ports, one on SQLite (the local stack) and one on
PostgreSQL (the cluster stack). Then, in this process, a trivial flow (one task returning a
number) runs ``N`` times against each server, in alternating blocks so that a change of machine
load hits both alike. A flow run's wall time here is nearly all orchestration: creating the run,
its state transitions, the task run, and the logs and events it sends. Reports the median per
run on each and the ratio PostgreSQL / SQLite. Writes ``benchmarks/results/prefect_db.json``.
"""

from __future__ import annotations

import argparse
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
RESULTS = REPO / "benchmarks" / "results" / "prefect_db.json"
BLOCK = 5


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, log: Path, timeout_s: float = 240) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout_s}s; see {log}")


def start_postgres(base: Path) -> tuple[subprocess.Popen[bytes], int]:
    from stack import postgres  # noqa: PLC0415

    postgres.ensure_postgresql()
    postgres.owned_dir(base)
    data_dir, socket_dir = base / "data", postgres.owned_dir(base / "socket")
    postgres.init_cluster(data_dir)
    port = _free_port()
    process = subprocess.Popen(
        postgres.server_command(data_dir, port, socket_dir),
        cwd=base,
        stdout=(base / "postgres.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        **postgres.run_as(),
    )
    postgres.wait_ready(port, 180)
    postgres.create_database(port, "prefect")
    return process, port


def start_prefect_server(
    home: Path, database_url: str | None
) -> tuple[subprocess.Popen[bytes], str]:
    home.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
    }
    if database_url:
        env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = database_url
    log = home / "server.log"
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start"],
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    try:
        _wait_http(f"{url}/health", log)
    except TimeoutError:
        os.killpg(process.pid, signal.SIGKILL)
        raise
    return process, url


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> None:
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=60)
    except ProcessLookupError:
        return
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _timed_runs(api_url: str, count: int) -> list[float]:
    """``count`` runs of the trivial flow against ``api_url``; seconds each."""
    from prefect import flow, task  # noqa: PLC0415
    from prefect.logging.handlers import APILogWorker  # noqa: PLC0415
    from prefect.settings import PREFECT_API_URL, temporary_settings  # noqa: PLC0415

    @task
    def one() -> int:
        return 1

    @flow(name="bench-trivial")
    def trivial() -> int:
        return one()

    seconds = []
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        for _ in range(count):
            started = time.perf_counter()
            trivial()
            seconds.append(time.perf_counter() - started)
        APILogWorker.drain_all(timeout=10)  # send the logs to the server they belong to
    return seconds


def _count_flow_runs(api_url: str) -> int:
    request = urllib.request.Request(
        f"{api_url}/flow_runs/count", data=b"{}", headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return int(json.loads(response.read()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="Flow runs per server (default 30).")
    args = parser.parse_args()
    os.environ.update(DO_NOT_TRACK="true", PREFECT_SERVER_ANALYTICS_ENABLED="false")
    # Under /tmp, not a 0700 folder: the `postgres` OS user must reach the cluster's folder.
    work = Path(tempfile.mkdtemp(prefix="milkprice-bench-db-", dir="/tmp"))
    work.chmod(0o755)
    started: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        pg, pg_port = start_postgres(work / "postgres")
        started.append((pg, signal.SIGINT))  # PostgreSQL's fast shutdown
        from stack.postgres import url  # noqa: PLC0415

        servers = {}
        for name, database in (
            ("sqlite", None),
            ("postgresql", url(pg_port, "prefect", "postgresql+asyncpg")),
        ):
            process, api_url = start_prefect_server(work / f"prefect-{name}", database)
            started.append((process, signal.SIGTERM))
            servers[name] = api_url
        for api_url in servers.values():  # warm-up: imports, flow and task registration
            _timed_runs(api_url, 3)
        times: dict[str, list[float]] = {name: [] for name in servers}
        while len(times["sqlite"]) < args.runs:
            for name, api_url in servers.items():
                times[name] += _timed_runs(api_url, min(BLOCK, args.runs - len(times[name])))
        # Each server holds its own runs: the settings switch really sent them there.
        counts = {name: _count_flow_runs(api_url) for name, api_url in servers.items()}
        if any(count != args.runs + 3 for count in counts.values()):
            raise RuntimeError(f"expected {args.runs + 3} flow runs on each server, got {counts}")
    finally:
        for process, sig in reversed(started):
            _stop(process, sig)
        shutil.rmtree(work, ignore_errors=True)
    medians = {name: statistics.median(values) for name, values in times.items()}
    ratio = medians["postgresql"] / medians["sqlite"]
    result = {
        "flow": "one flow with one task returning a constant",
        "runs_per_server": args.runs,
        "seconds": times,
        "median_s": medians,
        "mean_s": {name: statistics.fmean(values) for name, values in times.items()},
        "ratio_postgresql_to_sqlite": ratio,
        "load_average": os.getloadavg(),
        "cpus": os.cpu_count(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    for name, median in medians.items():
        print(f"{name:10} median {median * 1000:7.1f} ms per flow run ({args.runs} runs)")
    print(f"PostgreSQL / SQLite (median per flow run): {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

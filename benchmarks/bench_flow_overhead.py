"""Cost of orchestration: the Prefect flow vs the same training run called plainly.

Run: ``.venv/bin/python benchmarks/bench_flow_overhead.py``. Starts a real ``prefect server``
on a free loopback port, then on the real SNIIM data (validation month 2025-01) alternates
``milkprice.pipeline.training_run.run_training`` (plain) and the flow ``main`` (each task a Prefect task run
reported to the server), both logging to the same SQLite MLflow store, and reports the ratio of
the median flow time to the median plain time (target <= 1.15). Writes
``benchmarks/results/flow_overhead.json``.
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "flow_overhead.json"
YEAR, MONTH = 2025, 1
REPEATS = 3
MAX_RATIO = 1.15


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_prefect_server(home: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "true",
    }
    process = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        stdout=(home / "server.log").open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}/api"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return process, url
        except OSError:
            time.sleep(0.5)
    process.terminate()
    raise TimeoutError(f"prefect server did not answer at {url}; see {home / 'server.log'}")


def stop_prefect_server(server: subprocess.Popen[bytes]) -> None:
    """Send the flows' logs while the server still answers, then stop its process group."""
    from prefect.logging.handlers import APILogWorker  # noqa: PLC0415

    APILogWorker.drain_all(timeout=5)
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def main() -> int:
    data = Path(os.environ.get("MILKPRICE_REAL_DATA", REPO.parent / "shared" / "data" / "sniim"))
    work = Path(tempfile.mkdtemp(prefix="milkprice-bench-"))
    server, api_url = start_prefect_server(work)
    os.environ.update(
        PREFECT_API_URL=api_url,
        MILKPRICE_DATA_ROOT=str(data),
        MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    try:
        # Imported only now: Prefect reads PREFECT_API_URL from the environment.
        from milkprice.pipeline.training_run import run_training  # noqa: PLC0415
        from milkprice.settings import get_settings  # noqa: PLC0415
        from orchestration.flows.main_flow import main as flow  # noqa: PLC0415

        settings = get_settings()
        run_training(settings, "local", YEAR, MONTH)  # warm-up: imports, MLflow tables
        flow(source="local", year=YEAR, month=MONTH)  # warm-up: flow registration
        plain, orchestrated = [], []
        for _ in range(REPEATS):
            started = time.perf_counter()
            run_training(get_settings(), "local", YEAR, MONTH)
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            flow(source="local", year=YEAR, month=MONTH)
            orchestrated.append(time.perf_counter() - started)
    finally:
        stop_prefect_server(server)
    ratio = statistics.median(orchestrated) / statistics.median(plain)
    result = {
        "validation_month": f"{YEAR}-{MONTH:02d}",
        "plain_seconds": plain,
        "flow_seconds": orchestrated,
        "median_plain_s": statistics.median(plain),
        "median_flow_s": statistics.median(orchestrated),
        "ratio_flow_to_plain": ratio,
        "target_ratio": MAX_RATIO,
        "load_average": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print(f"plain runs (s): {', '.join(f'{s:.2f}' for s in plain)}")
    print(f"flow runs  (s): {', '.join(f'{s:.2f}' for s in orchestrated)}")
    verdict = "PASS" if ratio <= MAX_RATIO else "FAIL"
    print(f"flow / plain (median): {ratio:.3f}  target <= {MAX_RATIO}: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

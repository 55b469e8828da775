"""Latency and throughput of the prediction API on the real SNIIM data, against in-process calls.

Run: ``.venv/bin/python benchmarks/bench_api.py``. Trains a champion on the real data
(``MILKPRICE_REAL_DATA``, default ``../shared/data/sniim``, read only; validation month 2025-01,
2 Optuna trials, MLflow SQLite store in a temporary folder), starts the real server
(``milkprice api``) on a free loopback port and measures: start-up to ready, single-row
``/predict`` p50/p99, sustained requests/s under a bounded load from ``wrk`` (8 connections;
installed with apt-get when missing, else a thread pool of httpx clients), 216-row and
10,000-row p50; then ``Predictor.predict_keys`` in this process for the same rows. Prints a
table with the targets and writes ``benchmarks/results/api.json``. Exits 0 even when a target
is missed (the table says MISSED).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pandas as pd

from milkprice.serving.loader import load_predictor
from milkprice.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "api.json"
MILKPRICE = Path(sys.executable).parent / "milkprice"
VALIDATION_MONTH = (2025, 1)
N_TRIALS = "2"
LOAD_SECONDS = 12
CONNECTIONS = 8

# Targets from the issue: (figure, limit, "max" or "min").
TARGETS = {
    "startup_to_ready_s": (10.0, "max"),
    "single_p50_ms": (5.0, "max"),
    "single_p99_ms": (20.0, "max"),
    "requests_per_s": (500.0, "min"),
    "rows216_p50_ms": (50.0, "max"),
    "rows10000_p50_ms": (1000.0, "max"),
}


def data_root() -> Path:
    return Path(os.environ.get("MILKPRICE_REAL_DATA", REPO.parent / "shared" / "data" / "sniim"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bench_env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MILKPRICE_", "MLFLOW_"))}
    env.update(
        MILKPRICE_DATA_ROOT=str(data_root()),
        MLFLOW_TRACKING_URI=f"sqlite:///{tmp / 'mlflow.db'}",
        MILKPRICE_N_TRIALS=N_TRIALS,
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    return env


def train_champion(env: dict[str, str], cwd: Path) -> float:
    year, month = VALIDATION_MONTH
    code = (
        "from milkprice.pipeline.training_run import run_training\n"
        "from milkprice.settings import get_settings\n"
        f"r = run_training(get_settings(), 'local', {year}, {month})\n"
        "assert r.promoted, r\n"
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - started


def start_server(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (cwd / "api.log").open("wb")
    started = time.perf_counter()
    process = subprocess.Popen(
        [str(MILKPRICE), "api", "--port", str(port)],
        env=env,
        cwd=cwd,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    with httpx.Client(base_url=url, timeout=5) as client:
        while time.perf_counter() - started < 120:
            try:
                if client.get("/readyz").status_code == 200:
                    return process, url, time.perf_counter() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
    raise TimeoutError(f"server not ready within 120 s; see {cwd / 'api.log'}")


def stop_server(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def request_rows(series: list[dict], cutoff: dt.date, n: int) -> list[dict]:
    dates = [cutoff + dt.timedelta(days=d) for d in range(1, 31)]
    return [
        {
            "estado": series[i % len(series)]["estado"],
            "ciudad": series[i % len(series)]["ciudad"],
            "tipo": series[i % len(series)]["tipo"],
            "canal": series[i % len(series)]["canal"],
            "fecha": str(dates[(i // len(series)) % len(dates)]),
        }
        for i in range(n)
    ]


def timed_ms(call, repeats: int, warmup: int = 3) -> np.ndarray:
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return np.array(times)


def http_post(client: httpx.Client, body: bytes):
    def call() -> None:
        response = client.post(
            "/predict", content=body, headers={"Content-Type": "application/json"}
        )
        if response.status_code != 200:
            raise RuntimeError(f"/predict answered {response.status_code}: {response.text[:300]}")

    return call


def have_wrk() -> str | None:
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("wrk missing: apt-get install -y wrk ...", flush=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-q", "wrk"], check=False, capture_output=True, timeout=300
        )
    return shutil.which("wrk")


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def load_with_wrk(wrk: str, url: str, body: bytes, tmp: Path) -> dict:
    script = tmp / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(body.decode())}\n"
    )
    out = subprocess.run(
        [wrk, "-t2", f"-c{CONNECTIONS}", f"-d{LOAD_SECONDS}s", "--latency", "-s", str(script),
         f"{url}/predict"],
        capture_output=True, text=True, check=True, timeout=LOAD_SECONDS + 60,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"wrk saw errors:\n{out}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, flags=re.MULTILINE))
    return {
        "tool": "wrk",
        "requests_per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "raw": out,
    }


def load_with_httpx(url: str, body: bytes) -> dict:
    def worker(deadline: float) -> list[float]:
        times = []
        with httpx.Client(base_url=url, timeout=10) as client:
            call = http_post(client, body)
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                call()
                times.append((time.perf_counter() - started) * 1000)
        return times

    deadline = time.perf_counter() + LOAD_SECONDS
    with ThreadPoolExecutor(CONNECTIONS) as pool:
        times = np.concatenate(list(pool.map(worker, [deadline] * CONNECTIONS)))
    return {
        "tool": f"httpx, {CONNECTIONS} threads (wrk unavailable)",
        "requests_per_s": len(times) / LOAD_SECONDS,
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
    }


def in_process(env: dict[str, str], rows_by_n: dict[int, list[dict]]) -> dict[int, float]:
    """p50 (ms) of ``Predictor.predict_keys`` in this process for the same rows."""
    os.environ.update({k: env[k] for k in ("MILKPRICE_DATA_ROOT", "MLFLOW_TRACKING_URI")})
    predictor = load_predictor(get_settings(), "local")
    out = {}
    for n, rows in rows_by_n.items():
        keys = [(r["estado"], r["ciudad"], r["tipo"], r["canal"]) for r in rows]
        dates = [pd.Timestamp(r["fecha"]) for r in rows]
        repeats = 2000 if n == 1 else 200 if n < 1000 else 20
        times = timed_ms(lambda k=keys, d=dates: predictor.predict_keys(k, d), repeats)
        out[n] = float(np.percentile(times, 50))
    return out


def verdict(name: str, value: float) -> str:
    limit, kind = TARGETS[name]
    ok = value <= limit if kind == "max" else value >= limit
    return f"{'<=' if kind == 'max' else '>='} {limit:g}  {'ok' if ok else 'MISSED'}"


def main() -> int:
    if not (data_root() / "monthly").is_dir():
        print(f"real data not found at {data_root()} (set MILKPRICE_REAL_DATA)")
        return 1
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    env = bench_env(tmp)
    print(f"training a champion on {data_root()} (validation month 2025-01) ...", flush=True)
    train_s = train_champion(env, tmp)
    process, url, startup_s = start_server(env, tmp)
    try:
        with httpx.Client(base_url=url, timeout=30) as client:
            model = client.get("/model").json()
            series = client.get("/series").json()["series"]
            cutoff = dt.date.fromisoformat(model["cutoff"])
            rows = {n: request_rows(series, cutoff, n) for n in (1, 216, 10_000)}
            bodies = {n: json.dumps({"rows": r}).encode() for n, r in rows.items()}
            single = timed_ms(http_post(client, bodies[1]), 2000, warmup=50)
            rows216 = timed_ms(http_post(client, bodies[216]), 200)
            rows10k = timed_ms(http_post(client, bodies[10_000]), 20)
        wrk = have_wrk()
        load = load_with_wrk(wrk, url, bodies[1], tmp) if wrk else load_with_httpx(url, bodies[1])
    finally:
        stop_server(process)
    baseline = in_process(env, rows)
    http = {
        1: float(np.percentile(single, 50)),
        216: float(np.percentile(rows216, 50)),
        10_000: float(np.percentile(rows10k, 50)),
    }
    figures = {
        "startup_to_ready_s": startup_s,
        "single_p50_ms": http[1],
        "single_p99_ms": float(np.percentile(single, 99)),
        "requests_per_s": load["requests_per_s"],
        "rows216_p50_ms": http[216],
        "rows10000_p50_ms": http[10_000],
    }
    print(
        f"\nmodel version {model['version']} (validation {model['validation_month']}), "
        f"cut-off {model['cutoff']}, {model['series']} series; training took {train_s:.1f} s"
    )
    print(f"{'figure':<24}{'value':>12}   target")
    for name, value in figures.items():
        print(f"{name:<24}{value:>12.2f}   {verdict(name, value)}")
    print(
        f"\nload: {load['tool']}, {CONNECTIONS} connections, {LOAD_SECONDS} s: "
        f"{load['requests_per_s']:.0f} req/s, p50 {load['p50_ms']:.2f} ms, "
        f"p99 {load['p99_ms']:.2f} ms"
    )
    print(f"\n{'rows':>6}{'HTTP p50 ms':>14}{'in-process p50 ms':>20}{'ratio':>9}")
    for n in (1, 216, 10_000):
        print(f"{n:>6}{http[n]:>14.3f}{baseline[n]:>20.3f}{http[n] / baseline[n]:>9.1f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "model": {k: model[k] for k in ("version", "validation_month", "cutoff", "series")},
                "training_s": train_s,
                "figures": figures,
                "targets": {k: {"limit": v[0], "kind": v[1]} for k, v in TARGETS.items()},
                "missed": [k for k, v in figures.items() if "MISSED" in verdict(k, v)],
                "load": {k: v for k, v in load.items() if k != "raw"},
                "http_p50_ms": http,
                "in_process_p50_ms": baseline,
                "ratio_http_to_in_process": {n: http[n] / baseline[n] for n in http},
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")
    shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How fast the forecast explorer loads with the real SNIIM series, against a plain /predict.

Run: ``.venv/bin/python benchmarks/bench_explorer.py``. Trains a champion on the real data
(``MILKPRICE_REAL_DATA``, default ``../shared/data/sniim``, read only; validation month 2025-01,
the product's fixed settings, an MLflow SQLite store in a temporary folder), builds the real
app (``create_app``) in this process and answers through Starlette's TestClient (no sockets):

- *start-up to ready*: the model loaded and the explorer's data prepared (before the swap);
- *cold*: the first page load after the model is served: ``/``, its script, style, icon and
  ``plotly.min.js``, ``/explorer/options`` and the first view (builds the explorer's data: six
  months of history with quality verdicts, the forecast of every series);
- *page*: a later page load showing a series not shown before (its view computed then);
- *nation* and *state*: a first view of the national and of a state's average (the aggregate
  interval simulated then), and the same answered again (cached);
- the baseline, in the same process: ``POST /predict`` of the rows a series view shows, and of
  every series at those dates (what the explorer forecasts once per model).

Prints each figure in ms with its ratio to the baseline and writes
``benchmarks/results/explorer.json``. Only timings are measured (nothing is scored). The
target: a page load under a second with the real data's series; exits 0 either way.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from milkprice.pipeline.training_run import run_training
from milkprice.serving.api import create_app
from milkprice.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "explorer.json"
VALIDATION_MONTH = (2025, 1)
PAGE_TARGET_MS = 1000.0
ASSETS = (
    "/",
    "/explorer/static/explorer.js",
    "/explorer/static/explorer.css",
    "/explorer/static/favicon.svg",
    "/explorer/static/plotly.min.js",
)
KEYS = ("estado", "ciudad", "tipo", "canal")


def data_root() -> Path:
    return Path(os.environ.get("MILKPRICE_REAL_DATA", REPO.parent / "shared" / "data" / "sniim"))


def ok(client: TestClient, path: str, **params: str) -> object:
    answer = client.get(path, params=params or None)
    if answer.status_code != 200:
        raise RuntimeError(f"{path} answered {answer.status_code}: {answer.text[:300]}")
    return answer.json() if "json" in answer.headers["content-type"] else answer.content


def page_load(client: TestClient, view: dict[str, str]) -> tuple[float, dict]:
    """ms to fetch what a browser fetches for the page showing ``view``."""
    started = time.perf_counter()
    for path in ASSETS:
        ok(client, path)
    ok(client, "/explorer/options")
    shown = ok(client, "/explorer/view", **view)
    return (time.perf_counter() - started) * 1000, shown  # type: ignore[return-value]


def timed_ms(call, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return float(np.median(times))


def series_view(series: dict) -> dict[str, str]:
    return {"scope": "series", **{k: series[k] for k in KEYS}}


def main() -> int:
    root = data_root()
    if not (root / "monthly").is_dir():
        print(f"real data not found at {root}: set MILKPRICE_REAL_DATA", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        settings = get_settings(
            data_root=str(root), mlflow_tracking_uri=f"sqlite:///{tmp}/mlflow.db", n_trials=0
        )
        started = time.perf_counter()
        result = run_training(settings, "local", *VALIDATION_MONTH)
        if not result.promoted:
            print(f"training did not promote: {result.reason}", file=sys.stderr)
            return 1
        print(f"trained a champion in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        with TestClient(create_app(settings, "local")) as client:
            while client.get("/readyz").status_code != 200:
                time.sleep(0.05)
            # Loading the model includes preparing the explorer's data (before the swap).
            ready_s = time.perf_counter() - started
            served = client.get("/series").json()["series"]
            cold_ms, first = page_load(client, series_view(served[0]))
            dates = [p["fecha"] for p in first["forecast"]]
            one_series = {"rows": [{**{k: served[1][k] for k in KEYS}, "fecha": d} for d in dates]}
            every = {
                "rows": [{**{k: s[k] for k in KEYS}, "fecha": d} for s in served for d in dates]
            }
            page_ms = page_load(client, series_view(served[1]))[0]
            page_again_ms = timed_ms(lambda: page_load(client, series_view(served[1])), 5)
            tipo, canal = served[0]["tipo"], served[0]["canal"]
            nation = {"scope": "nation", "tipo": tipo, "canal": canal}
            state = {"scope": "state", "estado": served[0]["estado"], "tipo": tipo, "canal": canal}
            nation_ms = timed_ms(lambda: ok(client, "/explorer/view", **nation), 1)
            state_ms = timed_ms(lambda: ok(client, "/explorer/view", **state), 1)
            cached_ms = timed_ms(lambda: ok(client, "/explorer/view", **nation), 20)
            predict_ms = timed_ms(lambda: client.post("/predict", json=one_series), 20)
            predict_all_ms = timed_ms(lambda: client.post("/predict", json=every), 5)
    figures = {
        "series": len(served),
        "forecast_dates": len(dates),
        "startup_to_ready_s": ready_s,
        "cold_page_ms": cold_ms,
        "page_new_series_ms": page_ms,
        "page_again_ms": page_again_ms,
        "nation_first_view_ms": nation_ms,
        "state_first_view_ms": state_ms,
        "view_cached_ms": cached_ms,
        "baseline_predict_one_series_ms": predict_ms,
        "baseline_predict_every_series_ms": predict_all_ms,
    }
    print(f"\n{len(served)} series x {len(dates)} dates; start-up to ready {ready_s:.2f} s")
    print("baseline: POST /predict (same process)")
    print(f"{'figure':34} {'ms':>9} {'x /predict 1 series':>20} {'x /predict all':>15}")
    for name, value in figures.items():
        if name.endswith("_ms"):
            print(
                f"{name:34} {value:9.1f} {value / predict_ms:20.1f} {value / predict_all_ms:15.2f}"
            )
    for name in ("cold_page_ms", "page_new_series_ms"):
        verdict = "met" if figures[name] < PAGE_TARGET_MS else "MISSED"
        print(f"target {name} < {PAGE_TARGET_MS:.0f} ms: {verdict}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(figures, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

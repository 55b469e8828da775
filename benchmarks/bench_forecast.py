"""Wall time of the batch forecast, and the share spent in Prefect.

Run: ``.venv/bin/python benchmarks/bench_forecast.py``. Copies the real SNIIM partitions into a
temporary lake (the forecast writes ``forecasts/`` and ``reports/`` beside them; the shared data
is never written), trains a champion on validation month 2025-01, starts a real ``prefect
server`` on a free loopback port, then alternates ``milkprice.pipeline.forecast_run.run_forecast``
(plain) and the flow ``forecast`` (each step a task run reported to the server), every series to
the end of the month after the cut-off, and reports the median times and their ratio. Writes
``benchmarks/results/forecast.json``.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench_flow_overhead import start_prefect_server, stop_prefect_server

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "forecast.json"
REPEATS = 5


def main() -> int:
    data = Path(os.environ.get("MILKPRICE_REAL_DATA", REPO.parent / "shared" / "data" / "sniim"))
    work = Path(tempfile.mkdtemp(prefix="milkprice-bench-forecast-"))
    shutil.copytree(data / "monthly", work / "lake" / "monthly")
    server, api_url = start_prefect_server(work)
    os.environ.update(
        PREFECT_API_URL=api_url,
        MILKPRICE_DATA_ROOT=str(work / "lake"),
        MLFLOW_TRACKING_URI=f"sqlite:///{work / 'mlflow.db'}",
        MILKPRICE_N_TRIALS="4",
        MLFLOW_DISABLE_TELEMETRY="true",
        DO_NOT_TRACK="true",
    )
    try:
        # Imported only now: Prefect reads PREFECT_API_URL from the environment.
        from milkprice.pipeline.forecast_run import run_forecast  # noqa: PLC0415
        from milkprice.pipeline.training_run import run_training  # noqa: PLC0415
        from milkprice.settings import get_settings  # noqa: PLC0415
        from orchestration.flows.forecast_flow import forecast as flow  # noqa: PLC0415

        trained = run_training(get_settings(), "local", 2025, 1)
        print(f"champion: version {trained.model_version}, promoted={trained.promoted}")
        first = run_forecast(get_settings(), "local")  # warm-up: imports, model cache
        flow(source="local")  # warm-up: flow registration
        plain, orchestrated = [], []
        for _ in range(REPEATS):
            started = time.perf_counter()
            run_forecast(get_settings(), "local")
            plain.append(time.perf_counter() - started)
            started = time.perf_counter()
            flow(source="local")
            orchestrated.append(time.perf_counter() - started)
    finally:
        stop_prefect_server(server)
    ratio = statistics.median(orchestrated) / statistics.median(plain)
    result = {
        "cutoff": first.cutoff,
        "rows": first.rows,
        "series_forecast": first.series_forecast,
        "series_skipped": first.series_skipped,
        "dates": f"{first.first_date}..{first.last_date}",
        "plain_seconds": plain,
        "flow_seconds": orchestrated,
        "median_plain_s": statistics.median(plain),
        "median_flow_s": statistics.median(orchestrated),
        "ratio_flow_to_plain": ratio,
        "prefect_share": 1 - 1 / ratio,
        "load_average": os.getloadavg(),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(
        f"cut-off {first.cutoff}: {first.rows} rows, {first.series_forecast} series forecast, "
        f"{first.series_skipped} skipped, dates {first.first_date}..{first.last_date}"
    )
    print(f"plain runs (s): {', '.join(f'{s:.2f}' for s in plain)}")
    print(f"flow runs  (s): {', '.join(f'{s:.2f}' for s in orchestrated)}")
    print(
        f"flow / plain (median): {ratio:.3f}; share spent in Prefect {result['prefect_share']:.0%}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

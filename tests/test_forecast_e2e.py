"""A promoted champion's forecast, end to end: a real Prefect server, `milkprice serve`, the event.

Training through the ``train-milk-model`` deployment promotes a first champion; the flow emits
``milkprice.champion.promoted`` and the ``daily-forecast`` trigger starts a forecast run at once
(not at 23:00), which writes the forecast parquet into the same lake.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from conftest import (
    http_json,
    start_background,
    stop_process_group,
    training_env,
    wait_deployment_polled,
    wait_flow_run_final,
)

from orchestration.names import TRAIN_DEPLOYMENT as TRAIN

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).parent / "prefect")
FORECAST = "milk-price-forecast/daily-forecast"


def _forecast_runs(api_url: str, deployment_id: str) -> list[dict]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    found = http_json(f"{api_url}/flow_runs/filter", body)
    assert isinstance(found, list)
    return found


def _wait_new_forecast_run(
    api_url: str, deployment_id: str, known: set[str], timeout_s: float = 180
) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # the scheduler's own runs (23:00, auto_scheduled) are not the trigger's
        fresh = [
            r
            for r in _forecast_runs(api_url, deployment_id)
            if r["id"] not in known and not r.get("auto_scheduled")
        ]
        if fresh:
            return fresh[0]
        time.sleep(1)
    raise TimeoutError(f"no {FORECAST} run was triggered within {timeout_s}s")


def test_promotion_triggers_a_forecast_run(prefect_server, tmp_path):
    env = training_env(tmp_path, prefect_server)
    since = time.time()
    log = tmp_path / "serve.log"
    process = start_background([sys.executable, "-m", "milkprice_cli", "serve"], env, tmp_path, log)
    try:
        wait_deployment_polled(prefect_server, TRAIN, since)
        deployment = wait_deployment_polled(prefect_server, FORECAST, since)
        assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 23 * * *"]
        assert sorted(deployment["tags"]) == ["forecast", "milk"]
        assert deployment["global_concurrency_limit"]["limit"] == 1
        assert deployment["entrypoint"] == "orchestration.flows.forecast_flow.forecast"
        assert f"serving {TRAIN}, " in log.read_text() and FORECAST in log.read_text()
        known = {r["id"] for r in _forecast_runs(prefect_server, deployment["id"])}

        started = subprocess.run(
            [PREFECT, "deployment", "run", TRAIN, "--param", "year=2025", "--param", "month=2"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert started.returncode == 0, started.stdout + started.stderr
        train_id = re.search(r"UUID: ([0-9a-f-]{36})", started.stdout).group(1)
        trained = wait_flow_run_final(prefect_server, train_id, timeout_s=600)
        assert trained["state"]["type"] == "COMPLETED", (trained["state"], log.read_text()[-3000:])

        triggered = _wait_new_forecast_run(prefect_server, deployment["id"], known)
        assert triggered["parameters"] == {"source": "local"}  # from the event's payload
        final = wait_flow_run_final(prefect_server, triggered["id"], timeout_s=300)
        assert final["state"]["type"] == "COMPLETED", (final["state"], log.read_text()[-3000:])
    finally:
        stop_process_group(process)

    parquet = Path(env["MILKPRICE_DATA_ROOT"]) / "forecasts/cutoff=2025-03-31/forecast.parquet"
    frame = pd.read_parquet(parquet)
    assert len(frame) > 0 and (frame["model_version"] == "1").all()

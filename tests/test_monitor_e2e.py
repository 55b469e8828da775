"""Monitoring that acts, end to end: a real Prefect server, `milkprice serve`, the events.

``milkprice data ingest`` emits ``milkprice.data.ingested``, whose trigger starts a
``monthly-monitor`` run for the month ingested; with MILKPRICE_RETRAIN_ON_ALERT=true in the
serving process, a ``milkprice.alert.accuracy`` event starts a ``train-milk-model`` run with
the source, year and month of its payload.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import (
    http_json,
    start_background,
    stop_process_group,
    training_env,
    wait_deployment_polled,
    wait_flow_run_final,
)
from sniim_workbook import small_frame, write_leche_workbook

from orchestration.names import TRAIN_DEPLOYMENT as TRAIN

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).parent / "prefect")
MONITOR = "milk-price-monitor/monthly-monitor"


def _wait_triggered_run(
    api_url: str, deployment_id: str, known: set[str], timeout_s: float = 90
) -> dict:
    """The first run of the deployment not in ``known`` that the scheduler did not make."""
    deadline = time.monotonic() + timeout_s
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    while time.monotonic() < deadline:
        runs = http_json(f"{api_url}/flow_runs/filter", body)
        fresh = [r for r in runs if r["id"] not in known and not r.get("auto_scheduled")]
        if fresh:
            return fresh[0]
        time.sleep(1)
    raise TimeoutError(f"no run of deployment {deployment_id} was triggered within {timeout_s}s")


def _run_ids(api_url: str, deployment_id: str) -> set[str]:
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    return {r["id"] for r in http_json(f"{api_url}/flow_runs/filter", body)}


def _ingest(env: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    workbook = write_leche_workbook(
        small_frame(["2025-04-02", "2025-04-04"]), tmp_path / "leche.xlsx"
    )
    return subprocess.run(
        [sys.executable, "-m", "milkprice_cli", "data", "ingest", str(workbook)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_ingest_without_prefect_api_still_ingests(tmp_path):
    env = training_env(tmp_path, None, first="2025-03", last="2025-03")
    done = _ingest(env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "PREFECT_API_URL is not set: event milkprice.data.ingested not sent" in done.stdout
    assert (Path(env["MILKPRICE_DATA_ROOT"]) / "monthly/2025/04/2025-04-data.parquet").exists()


def test_ingest_triggers_monitoring_and_an_alert_triggers_retraining(prefect_server, tmp_path):
    env = training_env(tmp_path, prefect_server, first="2025-01", last="2025-03")
    env["MILKPRICE_RETRAIN_ON_ALERT"] = "true"
    since = time.time()
    log = tmp_path / "serve.log"
    process = start_background([sys.executable, "-m", "milkprice_cli", "serve"], env, tmp_path, log)
    try:
        monitor = wait_deployment_polled(prefect_server, MONITOR, since)
        train = wait_deployment_polled(prefect_server, TRAIN, since)
        assert [s["schedule"]["cron"] for s in monitor["schedules"]] == ["0 7 3 * *"]
        assert monitor["global_concurrency_limit"]["limit"] == 1
        assert monitor["entrypoint"] == "orchestration.flows.monitor_flow.monitor"
        known_monitor = _run_ids(prefect_server, monitor["id"])
        known_train = _run_ids(prefect_server, train["id"])

        ingested = _ingest(env, tmp_path)
        assert ingested.returncode == 0, ingested.stdout + ingested.stderr
        assert "event milkprice.data.ingested sent (months 2025-04)" in ingested.stdout

        monitored = _wait_triggered_run(prefect_server, monitor["id"], known_monitor)
        assert monitored["parameters"] == {"source": "local", "year": 2025, "month": 4}
        final = wait_flow_run_final(prefect_server, monitored["id"], timeout_s=120)
        # no forecast stored in this lake: a message in the artifact, not a failure
        assert final["state"]["type"] == "COMPLETED", (final["state"], log.read_text()[-3000:])

        payload = {"source": "local", "year": 2025, "month": 2, "alerts": []}
        emitted = subprocess.run(
            [
                PREFECT,
                "event",
                "emit",
                "milkprice.alert.accuracy",
                "--resource-id",
                "milkprice.model.milk-price-model",
                "--payload",
                json.dumps(payload),
            ],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert emitted.returncode == 0, emitted.stdout + emitted.stderr
        retrain = _wait_triggered_run(prefect_server, train["id"], known_train)
        assert retrain["parameters"] == {"source": "local", "year": 2025, "month": 2}
    finally:
        stop_process_group(process)

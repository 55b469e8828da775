"""Backfills from the UI: the ``backfill-months`` deployment, run as an operator would.

A real ``milkprice serve`` on the session's Prefect server serves it beside ``train-milk-model``;
``prefect deployment run`` (what the UI's form does) starts it for two months of a demo lake.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
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
from mlflow import MlflowClient

from milkprice.pipeline.training_run import RUN_COMPLETE, RUN_STATUS_TAG
from orchestration.flows.backfill_flow import BACKFILL_ARTIFACT_KEY, TABLE_COLUMNS
from orchestration.names import TRAIN_DEPLOYMENT as TRAIN

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).parent / "prefect")
BACKFILL = "milk-price-backfill/backfill-months"


def _run_deployment(env: dict[str, str], cwd: Path, *params: str) -> subprocess.CompletedProcess:
    command = [PREFECT, "deployment", "run", BACKFILL]
    for param in params:
        command += ["--param", param]
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=180, check=False
    )


def _start_backfill(env: dict[str, str], cwd: Path, api_url: str, *params: str) -> dict:
    result = _run_deployment(env, cwd, *params)
    assert result.returncode == 0, result.stdout + result.stderr
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout).group(1)
    return wait_flow_run_final(api_url, flow_run_id, timeout_s=1500)


def _artifact_rows(api_url: str, flow_run_id: str) -> list[dict[str, str]]:
    """The flow run's table artifact, read through the REST API (as the UI does)."""
    (artifact,) = http_json(
        f"{api_url}/artifacts/filter",
        {
            "artifacts": {
                "key": {"any_": [BACKFILL_ARTIFACT_KEY]},
                "flow_run_id": {"any_": [flow_run_id]},
            }
        },
    )
    assert artifact["type"] == "table"
    data = artifact["data"]
    return json.loads(data) if isinstance(data, str) else data


def _month_runs(api_url: str, deployment_id: str, since: str) -> list[dict]:
    runs = http_json(
        f"{api_url}/flow_runs/filter",
        {"flow_runs": {"tags": {"all_": ["backfill"]}}, "limit": 200},
    )
    return [r for r in runs if r["deployment_id"] == deployment_id and r["created"] >= since]


def test_backfill_deployment_runs_each_month_on_train_milk_model(prefect_server, tmp_path):
    env = training_env(tmp_path, prefect_server)
    since = time.time()
    since_iso = datetime.fromtimestamp(since, UTC).isoformat().replace("+00:00", "Z")
    log = tmp_path / "serve.log"
    process = start_background([sys.executable, "-m", "milkprice_cli", "serve"], env, tmp_path, log)
    try:
        wait_deployment_polled(prefect_server, TRAIN, since)
        deployment = wait_deployment_polled(prefect_server, BACKFILL, since)
        assert deployment["entrypoint"] == "orchestration.flows.backfill_flow.backfill"
        assert deployment["schedules"] == []
        bad = _run_deployment(env, tmp_path, "start=2025-13", "end=2025-03")
        assert bad.returncode != 0  # the form refuses a month that is not YYYY-MM
        train_id = http_json(f"{prefect_server}/deployments/name/{TRAIN}")["id"]

        run = _start_backfill(env, tmp_path, prefect_server, "start=2025-02", "end=2025-03")
        assert run["state"]["type"] == "COMPLETED", (run["state"], log.read_text()[-3000:])
        months = _month_runs(prefect_server, train_id, since_iso)
        assert sorted((r["parameters"]["year"], r["parameters"]["month"]) for r in months) == [
            (2025, 2),
            (2025, 3),
        ]
        assert all(r["state"]["type"] == "COMPLETED" for r in months)
        assert sorted(r["name"] for r in months) == ["backfill-2025-02", "backfill-2025-03"]
        rows = _artifact_rows(prefect_server, run["id"])
        assert [row["month"] for row in rows] == ["2025-02", "2025-03"]
        assert [row["state"] for row in rows] == ["Completed", "Completed"]
        assert all(set(row) == set(TABLE_COLUMNS) and row["version"] for row in rows)
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        experiment = client.get_experiment_by_name("milk-price")
        complete = client.search_runs(
            [experiment.experiment_id], f"tags.{RUN_STATUS_TAG} = '{RUN_COMPLETE}'"
        )
        assert sorted(r.data.tags["validation_month"] for r in complete) == ["2025-02", "2025-03"]
        registered = client.search_model_versions("name = 'milk-price-model'")
        assert {row["version"] for row in rows} == {str(v.version) for v in registered}

        again = _start_backfill(env, tmp_path, prefect_server, "start=2025-02", "end=2025-03")
        assert again["state"]["type"] == "COMPLETED", again["state"]
        assert [row["state"] for row in _artifact_rows(prefect_server, again["id"])] == [
            "Skipped",
            "Skipped",
        ]
        assert len(_month_runs(prefect_server, train_id, since_iso)) == 2  # nothing ran again
    finally:
        stop_process_group(process)

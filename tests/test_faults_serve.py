"""Faults of the serving process, on the session's real Prefect server (``prefect_server``).

- Two runs of ``train-milk-model`` created at once: the deployment's ``concurrency_limit=1``
  (as ``milkprice serve`` serves it) makes the second wait for the first; shown by the runs'
  own states and timestamps from the API.
- ``milkprice serve`` killed (SIGKILL to its process group: the serving process and the
  flow-run subprocess it started) while a training run logs its model to MLflow: the run's
  heartbeats stop, the crash-detection automation (:mod:`orchestration.crash_detection`) marks
  it Crashed, a restarted ``milkprice serve`` completes a new run, and every registered version
  has a finished MLflow run and loadable model artifacts.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from datetime import datetime
from pathlib import Path

import mlflow
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

from orchestration.crash_detection import AUTOMATION_NAME
from orchestration.names import TRAIN_DEPLOYMENT as TRAIN

pytestmark = pytest.mark.e2e

MODEL = "milk-price-model"


def _serve(env: dict[str, str], cwd: Path, api_url: str, log: Path):
    since = time.time()
    process = start_background([sys.executable, "-m", "milkprice_cli", "serve"], env, cwd, log)
    try:
        wait_deployment_polled(api_url, TRAIN, since)
    except BaseException:
        stop_process_group(process)
        raise
    return process


def _create_run(api_url: str, year: int, month: int) -> dict:
    deployment = http_json(f"{api_url}/deployments/name/{TRAIN}")
    return http_json(
        f"{api_url}/deployments/{deployment['id']}/create_flow_run",
        {"parameters": {"source": "local", "year": year, "month": month}},
    )


def _states(api_url: str, flow_run_id: str) -> list[dict]:
    return http_json(f"{api_url}/flow_run_states/?flow_run_id={flow_run_id}")


def _when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _env(tmp_path: Path, api_url: str) -> dict[str, str]:
    env = training_env(tmp_path, api_url)
    env["MILKPRICE_N_TRIALS"] = "0"
    return env


# --- two runs of one deployment at once ----------------------------------------------------


def test_second_run_of_a_deployment_waits_for_the_first(prefect_server: str, tmp_path: Path):
    env = _env(tmp_path, prefect_server)
    process = _serve(env, tmp_path, prefect_server, tmp_path / "serve.log")
    try:
        created = [_create_run(prefect_server, 2025, 2), _create_run(prefect_server, 2025, 3)]
        runs = [wait_flow_run_final(prefect_server, run["id"]) for run in created]
    finally:
        stop_process_group(process)
    log = (tmp_path / "serve.log").read_text()
    assert [r["state"]["type"] for r in runs] == ["COMPLETED", "COMPLETED"], log[-3000:]
    first, second = sorted(runs, key=lambda r: _when(r["start_time"]))
    # The second started only once the first had ended ...
    assert _when(second["start_time"]) >= _when(first["end_time"]), (first, second)
    # ... because the server held it back, not because it happened to be picked up late.
    waited = [s["name"] for s in _states(prefect_server, second["id"])]
    assert "AwaitingConcurrencySlot" in waited, waited
    assert "AwaitingConcurrencySlot" not in [
        s["name"] for s in _states(prefect_server, first["id"])
    ]
    print(
        f"\nfirst ran {first['start_time']}..{first['end_time']}; second waited "
        f"{waited.count('AwaitingConcurrencySlot')} time(s), started {second['start_time']}"
    )


# --- the serving process killed during a run -----------------------------------------------


def _registry_is_whole(tracking_uri: str) -> list[str]:
    """Every version has a finished run and loadable model artifacts; the versions."""
    client = MlflowClient(tracking_uri)
    mlflow.set_tracking_uri(tracking_uri)
    numbers = []
    for version in client.search_model_versions(f"name = '{MODEL}'"):
        run = client.get_run(version.run_id)
        assert run.info.status == "FINISHED", (version.version, run.info.status)
        assert version.status == "READY", version
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version.version}")
        assert model.unwrap_python_model().forecaster_ is not None
        numbers.append(str(version.version))
    return numbers


def _live_members(group: int, timeout_s: float = 15) -> list[int]:
    """Processes of ``group`` still alive (zombies wait for a parent to reap them: dead)."""
    deadline = time.monotonic() + timeout_s
    while True:
        alive = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # gone meanwhile
            if int(fields[2]) == group and fields[0] != "Z":
                alive.append(int(stat.parent.name))
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.2)


def _wait_mlflow_run_opened(tracking_uri: str, flow_run_id: str, api_url: str) -> str:
    """Poll the store until the training run has opened its MLflow run; its status then."""
    client = MlflowClient(tracking_uri)
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        experiment = client.get_experiment_by_name("milk-price")
        if experiment is not None:
            runs = client.search_runs([experiment.experiment_id])
            if runs:
                return runs[0].info.status
        state = http_json(f"{api_url}/flow_runs/{flow_run_id}")["state"]["type"]
        assert state in {"SCHEDULED", "PENDING", "RUNNING"}, state
        time.sleep(0.05)
    raise TimeoutError("the training run never opened its MLflow run")


def test_killed_serve_leaves_a_crashed_run_and_a_whole_registry(
    prefect_server: str, tmp_path: Path
):
    env = _env(tmp_path, prefect_server)
    env.pop("PREFECT_FLOWS_HEARTBEAT_FREQUENCY", None)  # `milkprice serve` turns them on itself
    uri = env["MLFLOW_TRACKING_URI"]
    process = _serve(env, tmp_path, prefect_server, tmp_path / "serve-1.log")
    try:
        doomed = _create_run(prefect_server, 2025, 3)
        status_at_kill = _wait_mlflow_run_opened(uri, doomed["id"], prefect_server)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        killed_at = time.time()
    finally:
        stop_process_group(process)
    assert _live_members(process.pid) == []  # the flow-run subprocess died with its server

    # serve created the automation (by name, once, however often it starts: see below).
    automations = http_json(f"{prefect_server}/automations/filter", {})
    assert [a["name"] for a in automations].count(AUTOMATION_NAME) == 1
    crashed = wait_flow_run_final(prefect_server, doomed["id"], timeout_s=600)
    assert crashed["state"]["type"] == "CRASHED", crashed["state"]
    assert "heartbeat" in crashed["state"]["message"]
    noticed = _when(crashed["state"]["timestamp"]).timestamp() - killed_at
    versions_after_kill = _registry_is_whole(uri)

    process = _serve(env, tmp_path, prefect_server, tmp_path / "serve-2.log")
    try:
        fresh = wait_flow_run_final(prefect_server, _create_run(prefect_server, 2025, 3)["id"])
    finally:
        stop_process_group(process)
    log = (tmp_path / "serve-2.log").read_text()
    assert fresh["state"]["type"] == "COMPLETED", log[-3000:]
    versions = _registry_is_whole(uri)
    assert len(versions) == len(versions_after_kill) + 1
    automations = http_json(f"{prefect_server}/automations/filter", {})
    assert [a["name"] for a in automations].count(AUTOMATION_NAME) == 1  # not one per start
    print(
        f"\nkilled while the MLflow run was {status_at_kill}; versions left by the killed run: "
        f"{versions_after_kill}; marked Crashed {noticed:.0f} s after the kill"
    )

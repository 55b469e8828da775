"""`milkprice backfill --dask-address`: the months' training runs as tasks on a real Dask cluster.

Two months on the session's scheduler and two workers: both complete, each registers one model
version in the caller's MLflow store (the workers' environment names no store: the settings
travel with the tasks), the workers' own records show they ran the months, and a second
backfill skips both.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import http_json, training_env
from distributed import Client
from mlflow import MlflowClient

from milkprice.registry.promotion import CHAMPION_ALIAS
from orchestration.flows.backfill_dask_flow import FLOW_NAME

pytestmark = pytest.mark.e2e

MONTHS = ["2025-02", "2025-03"]
TASK_PREFIX = "trained_month-"  # dask names a task after the function prefect-dask wraps


def _executed_keys(address: str) -> dict[str, list[str]]:
    """Worker name -> keys of the tasks it executed (its recent transition log)."""

    def executed(dask_worker: object) -> tuple[str, list[str]]:
        log = dask_worker.state.log  # type: ignore[attr-defined]
        keys = [str(entry[0]) for entry in log if entry[1:3] == ("executing", "memory")]
        return str(dask_worker.name), keys  # type: ignore[attr-defined]

    with Client(address, timeout=60) as client:
        return dict(client.run(executed).values())


def _backfill(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "milkprice_cli", "backfill", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )


def _table_states(output: str) -> dict[str, str]:
    return dict(re.findall(r"│ (\d{4}-\d{2}) │ (\w+)", output))


def test_backfill_on_dask_trains_each_month_on_the_workers(
    prefect_server: str, dask_scheduler_address: str, tmp_path: Path
) -> None:
    env = training_env(tmp_path, prefect_server)
    args = ("--start", MONTHS[0], "--end", MONTHS[-1], "--dask-address", dask_scheduler_address)
    before = _executed_keys(dask_scheduler_address)

    result = _backfill(env, tmp_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"on the Dask cluster at {dask_scheduler_address}" in " ".join(result.stdout.split())
    assert _table_states(result.stdout) == dict.fromkeys(MONTHS, "Completed")

    after = _executed_keys(dask_scheduler_address)
    ran = {
        worker: [k for k in keys[len(before.get(worker, [])) :] if k.startswith(TASK_PREFIX)]
        for worker, keys in after.items()
    }
    assert sum(len(keys) for keys in ran.values()) == len(MONTHS), ran

    # The caller's store holds one complete run and one version per month, one champion.
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        "tags.run_status = 'complete'",
    )
    assert sorted(r.data.tags["validation_month"] for r in runs) == MONTHS
    assert all(r.data.params["n_trials"] == env["MILKPRICE_N_TRIALS"] for r in runs)
    versions = client.search_model_versions("name = 'milk-price-model'")
    assert sorted(v.tags["validation_month"] for v in versions) == MONTHS
    champion = client.get_model_version_by_alias("milk-price-model", CHAMPION_ALIAS)
    assert champion.version in {v.version for v in versions}

    # One parent flow run with a completed task run per month.
    task_runs = http_json(
        f"{prefect_server}/task_runs/filter",
        {"task_runs": {"name": {"any_": [f"backfill-{m}" for m in MONTHS]}}, "limit": 50},
    )
    parents = {r["flow_run_id"] for r in task_runs}
    flow_runs = [http_json(f"{prefect_server}/flow_runs/{fid}") for fid in parents]
    flow_id = http_json(f"{prefect_server}/flows/name/{FLOW_NAME}")["id"]
    mine = [f for f in flow_runs if f["flow_id"] == flow_id and "backfill" in f["tags"]]
    assert len(mine) == 1 and mine[0]["state"]["type"] == "COMPLETED", flow_runs
    done = [r for r in task_runs if r["flow_run_id"] == mine[0]["id"]]
    assert sorted(r["name"] for r in done) == [f"backfill-{m}" for m in MONTHS]
    assert all(r["state"]["type"] == "COMPLETED" for r in done)

    again = _backfill(env, tmp_path, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _table_states(again.stdout) == dict.fromkeys(MONTHS, "Skipped")
    assert len(client.search_model_versions("name = 'milk-price-model'")) == len(MONTHS)

"""The deployments on a work pool: `milkprice deploy --pool`, then a real process worker.

Against the session's Prefect server: the command creates the pool and registers the pool
deployments with the definitions `milkprice serve` uses; a ``prefect worker start --type
process`` started here (from a folder with no checkout in it) runs a training run on a demo
lake. The test removes its deployments and pool at the end, so later serving tests start clean.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    http_json,
    start_background,
    stop_process_group,
    training_env,
    wait_flow_run_final,
)

from orchestration.deployments import POOL_DEPLOYMENTS
from orchestration.names import INGEST_DEPLOYMENT
from orchestration.names import TRAIN_DEPLOYMENT as TRAIN

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).parent / "prefect")
# name: (entrypoint, cron schedules, the parameters the UI's form asks for)
EXPECTED = {
    TRAIN: (
        "orchestration.flows.main_flow.main",
        ["0 6 2 * *"],
        {"source", "year", "month", "force"},
    ),
    "milk-price-forecast/daily-forecast": (
        "orchestration.flows.forecast_flow.forecast",
        ["0 23 * * *"],
        {"source", "cutoff", "series"},
    ),
    "milk-price-monitor/monthly-monitor": (
        "orchestration.flows.monitor_flow.monitor",
        ["0 7 3 * *"],
        {"source", "year", "month"},
    ),
    "milk-price-backfill/backfill-months": (
        "orchestration.flows.backfill_flow.backfill",
        [],
        {"start", "end", "force"},
    ),
    INGEST_DEPLOYMENT: (
        "orchestration.flows.ingest_flow.ingest",
        ["0 14,16,18 * * 1,3,5"],
        {"source", "day"},
    ),
    "milk-price-lake-freshness/lake-freshness": (
        "orchestration.flows.freshness_flow.lake_freshness",
        ["0 9 * * *"],
        {"source"},
    ),
}


def _delete(url: str) -> None:
    with contextlib.suppress(OSError):
        urllib.request.urlopen(urllib.request.Request(url, method="DELETE"), timeout=10)


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


@pytest.fixture
def deployed_pool(prefect_server: str, tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`milkprice deploy --pool <new pool>`; yields the pool and the environment used."""
    pool = f"pool-{uuid.uuid4().hex[:8]}"
    env = training_env(tmp_path, prefect_server)
    try:
        result = _run(
            [sys.executable, "-m", "milkprice_cli", "deploy", "--pool", pool], env, tmp_path
        )
        assert result.returncode == 0, result.stdout + result.stderr
        for name in EXPECTED:
            assert f"deployed {name} to work pool {pool}" in result.stdout
        yield pool, env
    finally:
        for name in EXPECTED:
            with contextlib.suppress(OSError):
                found = http_json(f"{prefect_server}/deployments/name/{name}")
                if found.get("work_pool_name") == pool:
                    _delete(f"{prefect_server}/deployments/{found['id']}")
        _delete(f"{prefect_server}/work_pools/{pool}")


def test_deploy_creates_the_pool_and_its_deployments(prefect_server, deployed_pool):
    pool, _ = deployed_pool
    assert http_json(f"{prefect_server}/work_pools/{pool}")["type"] == "process"
    on_pool = http_json(
        f"{prefect_server}/deployments/filter",
        {"work_pools": {"name": {"any_": [pool]}}},
    )
    assert len(on_pool) == len(EXPECTED)
    built = {f"{d.flow_name}/{d.name}": d for d in (b(pooled=True) for b in POOL_DEPLOYMENTS)}
    assert set(built) == set(EXPECTED)
    for name, (entrypoint, crons, form) in EXPECTED.items():
        found = http_json(f"{prefect_server}/deployments/name/{name}")
        assert found["work_pool_name"] == pool
        assert found["entrypoint"] == entrypoint  # a module path: no clone, no storage
        assert not found["pull_steps"]  # none ([] or null when it took over a served one)
        assert [s["schedule"]["cron"] for s in found["schedules"]] == crons
        # Local time: MILKPRICE_TIMEZONE's default (training_env sets none).
        assert {s["schedule"]["timezone"] for s in found["schedules"]} <= {"America/Mexico_City"}
        assert found["parameters"] == built[name].parameters
        assert sorted(found["tags"]) == sorted(built[name].tags)
        assert set(found["parameter_openapi_schema"]["properties"]) == form
    train = http_json(f"{prefect_server}/deployments/name/{TRAIN}")
    assert train["global_concurrency_limit"] is None  # the pool's workers share its runs
    forecast = http_json(f"{prefect_server}/deployments/name/milk-price-forecast/daily-forecast")
    assert forecast["global_concurrency_limit"]["limit"] == 1
    # The event triggers came along: training on a closed month, forecast on a new champion,
    # monitor on ingested prices.
    for name in (
        TRAIN,
        "milk-price-forecast/daily-forecast",
        "milk-price-monitor/monthly-monitor",
    ):
        found = http_json(f"{prefect_server}/deployments/name/{name}")
        automations = http_json(
            f"{prefect_server}/automations/related-to/prefect.deployment.{found['id']}"
        )
        assert len(automations) == 1, (name, automations)


def test_a_process_worker_runs_a_training_run(prefect_server, deployed_pool, tmp_path):
    pool, env = deployed_pool
    worker_env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "2"}
    workdir = tmp_path / "worker"
    workdir.mkdir()
    log = tmp_path / "worker.log"
    worker = start_background(
        [PREFECT, "worker", "start", "--pool", pool, "--name", "worker-a", "--type", "process"],
        worker_env,
        workdir,
        log,
    )
    try:
        result = _run(
            [PREFECT, "deployment", "run", TRAIN, "--param", "year=2025", "--param", "month=3"],
            env,
            tmp_path,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        flow_run_id = result.stdout.split("UUID: ", 1)[1].split()[0]
        run = wait_flow_run_final(prefect_server, flow_run_id, timeout_s=1200)
        assert run["state"]["type"] == "COMPLETED", (run["state"], log.read_text()[-3000:])
        assert run["work_pool_name"] == pool
        assert flow_run_id in log.read_text()  # this worker submitted it
    finally:
        stop_process_group(worker)

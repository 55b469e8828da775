"""The backtest on a real Dask cluster (scheduler + 2 workers on loopback) through Prefect.

The flow's month tasks must run on the Dask workers (the workers' own record of the tasks they
executed says so) and give exactly the table and forecast rows of the sequential run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import free_port, http_json
from distributed import Client
from prefect.settings import PREFECT_API_URL, temporary_settings

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.pipeline.backtest import MODELS, backtest_keys, run_backtest
from milkprice.settings import get_settings

pytestmark = pytest.mark.e2e

MILKPRICE = str(Path(sys.executable).parent / "milkprice")
FIRST, LAST = Month(2025, 1), Month(2025, 3)
# dask names a task after its function: prefect-dask wraps the task's function.
TASK_PREFIX = "month_backtest-"


@pytest.fixture(scope="module")
def lake_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A seeded demo lake of 2024-01..2025-03 and an empty MLflow store, as variables."""
    root = tmp_path_factory.mktemp("backtest-dask")
    write_demo_lake(Lake(str(root / "lake")), Month(2024, 1), LAST, seed=3)
    return {
        "MILKPRICE_DATA_ROOT": str(root / "lake"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MILKPRICE_N_TRIALS": "0",
        "MILKPRICE_SEED": "0",
    }


def _executed_by_worker(address: str) -> dict[str, list[str]]:
    """Worker name -> keys of the tasks it executed (its recent transition log)."""

    def executed(dask_worker: object) -> tuple[str, list[str]]:
        log = dask_worker.state.log  # type: ignore[attr-defined]
        keys = [str(entry[0]) for entry in log if entry[1:3] == ("executing", "memory")]
        return str(dask_worker.name), keys  # type: ignore[attr-defined]

    with Client(address, timeout=60) as client:
        return dict(client.run(executed).values())


def test_backtest_on_dask_gives_the_sequential_numbers_from_the_workers(
    prefect_server: str,
    dask_scheduler_address: str,
    lake_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from orchestration.flows.backtest_flow import backtest_on_dask

    for key, value in lake_env.items():
        monkeypatch.setenv(key, value)
    settings = get_settings()
    lake = Lake.from_settings(settings, "local")
    sequential = run_backtest(
        lake, month_range(FIRST, LAST), seed=settings.seed, n_trials=settings.n_trials
    )
    before = _executed_by_worker(dask_scheduler_address)

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        published = backtest_on_dask(dask_scheduler_address, "local", FIRST, LAST, MODELS)

    pd.testing.assert_frame_equal(published.report.table(), sequential.table())
    pd.testing.assert_frame_equal(published.report.rows(), sequential.rows())
    assert list(published.report.table()["month"]) == [
        "2025-01", "2025-02", "2025-03", "mean", "worst",
    ]  # fmt: skip

    after = _executed_by_worker(dask_scheduler_address)
    ran = {
        worker: [k for k in keys[len(before.get(worker, [])) :] if k.startswith(TASK_PREFIX)]
        for worker, keys in after.items()
    }
    assert sum(len(keys) for keys in ran.values()) == 3, ran  # one task per month, on Dask
    assert all(ran.values()), f"both workers should have trained a month: {ran}"

    # One flow run holds one task run per month, named after it, all completed.
    runs = http_json(
        f"{prefect_server}/task_runs/filter",
        {"task_runs": {"name": {"like_": "backtest-2025-0"}}, "limit": 50},
    )
    by_flow_run: dict[str, list[dict]] = {}
    for run in runs:
        by_flow_run.setdefault(run["flow_run_id"], []).append(run)
    expected = [f"backtest-{m}" for m in month_range(FIRST, LAST)]
    assert any(
        sorted(r["name"] for r in group) == expected
        and all(r["state"]["type"] == "COMPLETED" for r in group)
        for group in by_flow_run.values()
    ), runs

    # Published like the sequential command: files in the lake, one MLflow run.
    keys = backtest_keys(FIRST, LAST)
    assert set(published.uris) == set(keys.values())
    stored = Lake(lake_env["MILKPRICE_DATA_ROOT"]).get_object(keys["table"])
    assert stored is not None and stored.startswith(b"month,")
    assert published.run_id


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MILKPRICE, "backtest", "--start", str(FIRST), "--end", str(FIRST), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _env(lake_env: dict[str, str], **extra: str) -> dict[str, str]:
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "MILKPRICE_", "MLFLOW_"))
    }
    return {**base, **lake_env, **extra}


def test_cli_runs_on_the_address_from_the_environment(
    prefect_server: str, dask_scheduler_address: str, lake_env: dict[str, str], tmp_path: Path
) -> None:
    env = _env(
        lake_env,
        PREFECT_API_URL=prefect_server,
        PREFECT_HOME=str(tmp_path / "prefect-home"),
        MILKPRICE_DASK_ADDRESS=dask_scheduler_address,
    )
    result = _cli(env)
    assert result.returncode == 0, result.stdout + result.stderr
    output = " ".join(result.stdout.split())
    assert f"on the Dask cluster at {dask_scheduler_address}" in output
    assert "2025-01" in output and "mean" in output and "table.csv" in output


def test_cli_names_a_scheduler_that_does_not_answer(
    prefect_server: str, lake_env: dict[str, str], tmp_path: Path
) -> None:
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    env = _env(lake_env, PREFECT_API_URL=prefect_server, PREFECT_HOME=str(tmp_path / "home"))
    result = _cli(env, "--dask-address", nowhere)
    assert result.returncode == 1, result.stdout + result.stderr
    message = " ".join(result.stderr.split())
    assert f"no Dask scheduler answers at {nowhere}" in message, message

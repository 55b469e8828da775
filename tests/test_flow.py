"""The training flow under Prefect: runs, registers, refuses bad parameters, S3 = local."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.data.sync import push_lake
from milkprice.months import Month
from orchestration.flows.main_flow import main

REPO_ROOT = Path(__file__).resolve().parents[1]
FIRST, LAST = Month(2024, 1), Month(2025, 3)
VALIDATION = Month(2025, 2)


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("lake") / "datalake"
    write_demo_lake(Lake(str(root)), FIRST, LAST, seed=11)
    return root


@pytest.fixture
def env(demo_root: Path, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "MILKPRICE_DATA_ROOT": str(demo_root),
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MILKPRICE_N_TRIALS": "2",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_flow_trains_logs_and_registers_a_version(env):
    result = main(source="local", year=VALIDATION.year, month=VALIDATION.month)

    assert result.validation_month == "2025-02"
    assert result.model_version == "1"
    assert result.missing_months == []
    for key in ("val_rmse", "val_mae", "naive_val_rmse", "naive_val_mae", "mean_val_rmse"):
        assert result.metrics[key] > 0
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    run = client.get_run(result.run_id)
    assert run.data.tags["validation_month"] == "2025-02"
    assert run.data.tags["source"] == "local"
    assert run.data.tags["data_fingerprint"] == result.data_fingerprint
    assert run.data.tags["code_version"] == result.code_version
    assert run.data.tags["run_status"] == "complete"
    assert run.data.metrics["naive_val_rmse"] == pytest.approx(result.metrics["naive_val_rmse"])
    artifacts = [a.path for a in client.list_artifacts(result.run_id, "figures")]
    assert artifacts == ["figures/forecast_vs_actual_2025-02.png"]
    version = client.get_model_version("milk-price-model", "1")
    assert version.tags["promotion"] == ("promoted" if result.promoted else "rejected")
    assert version.tags["promotion_reason"] == result.reason

    # The same month again, same data and code: nothing trained, nothing registered.
    again = main(source="local", year=VALIDATION.year, month=VALIDATION.month, return_state=True)
    assert (again.type.value, again.name) == ("COMPLETED", "Skipped")
    skipped = again.result()
    assert skipped.skipped and not skipped.promoted
    assert (skipped.run_id, skipped.model_version) == (result.run_id, "1")
    assert skipped.metrics["val_rmse"] == pytest.approx(result.metrics["val_rmse"])
    assert result.run_id in skipped.reason and "force" in skipped.reason
    assert [str(v.version) for v in client.search_model_versions("name = 'milk-price-model'")] == [
        "1"
    ]
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_flow_publishes_metrics_table_and_mlflow_link(env):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    state = main(source="local", year=VALIDATION.year, month=VALIDATION.month, return_state=True)
    result = state.result()
    flow_run_id = state.state_details.flow_run_id

    async def read(key: str):
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                )
            )

    import asyncio

    tables = asyncio.run(read("milk-price-metrics"))
    links = asyncio.run(read("milk-price-mlflow-run"))
    assert len(tables) == len(links) == 1
    table = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    assert [row["forecast"] for row in table] == [
        "model (median / mean)",
        "trusted last price",
        "naive (last price)",
        "series mean",
    ]
    assert table[0]["rmse"] == pytest.approx(result.metrics["val_rmse"], abs=1e-4)
    assert table[1]["mae"] == pytest.approx(result.metrics["trusted_val_mae"], abs=1e-4)
    assert table[2]["rmse_vs_naive"] == pytest.approx(1.0)
    assert result.run_id in str(links[0].data)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"month": 13, "year": 2025}, "month"),
        ({"month": -1, "year": 2025}, "month"),
        ({"source": "gcs", "year": 2025, "month": 1}, "source"),
        ({"year": 1999, "month": 1}, "year"),
        ({"year": 2025, "month": 0}, "month"),
        ({"year": 0, "month": 3}, "year"),
    ],
)
def test_invalid_parameters_are_refused_naming_them(env, params, named):
    with pytest.raises(Exception, match=named):
        main(**params)


def test_window_with_too_few_months_fails_naming_missing_partitions(env, tmp_path, monkeypatch):
    lake = Lake(str(tmp_path / "sparse"))
    write_demo_lake(lake, Month(2024, 9), Month(2025, 2), seed=2)
    monkeypatch.setenv("MILKPRICE_DATA_ROOT", lake.base_uri)
    with pytest.raises(FileNotFoundError, match=r"only 5 of the 12.*monthly/2024/02/2024-02"):
        main(source="local", year=2025, month=2)


def test_window_with_missing_months_proceeds(env, tmp_path, monkeypatch):
    lake = Lake(str(tmp_path / "gappy"))
    write_demo_lake(lake, Month(2024, 7), Month(2025, 2), seed=2)
    monkeypatch.setenv("MILKPRICE_DATA_ROOT", lake.base_uri)
    result = main(source="local", year=2025, month=2)
    assert result.missing_months == [str(Month(2024, m)) for m in range(2, 7)]
    assert result.model_version == "1"


def test_s3_source_gives_the_same_metrics_as_local(env, demo_root, s3_env):
    local = main(source="local", year=VALIDATION.year, month=VALIDATION.month)
    pushed = push_lake(
        Lake(str(demo_root)),
        Lake(f"s3://{s3_env['S3_BUCKET']}", {"endpoint_url": s3_env["AWS_ENDPOINT_URL"]}),
    )
    assert len(pushed) == len(range(15))
    # force: the same data (the fingerprint is of the bytes) would skip; this compares trainings.
    remote = main(source="s3", year=VALIDATION.year, month=VALIDATION.month, force=True)
    assert remote.source == "s3" and not remote.skipped
    assert remote.run_id != local.run_id
    assert remote.data_fingerprint == local.data_fingerprint
    assert remote.metrics == pytest.approx(local.metrics, rel=1e-9)
    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    assert MlflowClient().get_run(remote.run_id).data.tags["source"] == "s3"


def _script(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / "orchestration" / "flows" / "main_flow.py"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_script_runs_one_month_and_exits_with_its_status(env):
    done = _script("--year", "2025", "--month", "3", "--json", env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    result = json.loads(done.stdout[done.stdout.index("{") :])
    assert result["validation_month"] == "2025-03"
    assert result["model_version"] == "1"

    refused = _script("--year", "2025", "--month", "13", env=env)
    assert refused.returncode == 2  # refused by the script, before any flow run starts
    assert "argument --month: 13 is out of range" in refused.stderr

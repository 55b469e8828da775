"""Backfills: planning and the skip check (fast, real MLflow store), then real parallel runs.

The runs use the session's real Prefect server (``prefect_server``): in process through the
Typer app, and ``--via-deployment`` through a `milkprice serve` process, as a user would.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import mlflow
import pytest
from conftest import (
    http_json,
    start_background,
    stop_process_group,
    training_env,
    wait_deployment_polled,
)
from mlflow import MlflowClient

from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.pipeline.backfill import (
    BackfillRow,
    MonthPlan,
    backfill_months,
    idempotency_key,
    plan_backfill,
    scheduled_time_for,
)
from milkprice.pipeline.training_run import RUN_COMPLETE, RUN_STATUS_TAG
from milkprice.registry.promotion import CHAMPION_ALIAS
from milkprice.settings import get_settings
from orchestration.names import TRAIN_DEPLOYMENT as TRAIN

# --- code: ranges, keys, rows ------------------------------------------------------------------


def test_backfill_months_is_inclusive_and_refuses_bad_ranges():
    assert backfill_months(Month(2024, 11), Month(2025, 2)) == [
        Month(2024, 11),
        Month(2024, 12),
        Month(2025, 1),
        Month(2025, 2),
    ]
    with pytest.raises(ValueError, match=r"--end 2024-01 is before --start 2024-02"):
        backfill_months(Month(2024, 2), Month(2024, 1))
    with pytest.raises(ValueError, match="limited to"):
        backfill_months(Month(1990, 1), Month(2025, 1))


def test_idempotency_key_names_month_source_data_and_code():
    plan = MonthPlan(Month(2025, 2), "abc123", "0.1.0+deadbeef")
    key = idempotency_key(plan, "local")
    for part in ("2025-02", "local", "abc123", "0.1.0+deadbeef"):
        assert part in key
    assert idempotency_key(plan, "s3") != key
    assert idempotency_key(plan, "local", "force-1") != key
    # 06:00 on the 2nd where the schedule lives (MILKPRICE_TIMEZONE), as the deployment's cron.
    zone = ZoneInfo("America/Mexico_City")
    scheduled = scheduled_time_for(Month(2025, 12), zone)
    assert scheduled == datetime(2026, 1, 2, 6, tzinfo=zone)
    assert scheduled.astimezone(UTC) == datetime(2026, 1, 2, 12, tzinfo=UTC)


def test_row_cells_and_failure():
    row = BackfillRow(Month(2025, 1), "Completed", 0.41234, 0.5, "3", True)
    assert row.as_cells() == ["2025-01", "Completed", "0.4123", "0.5000", "3", "yes"]
    assert not row.failed
    assert BackfillRow(Month(2025, 1), "Crashed").failed


# --- the skip check against a real MLflow store (no training) ----------------------------------


@pytest.fixture
def small_setup(tmp_path, monkeypatch):
    env = training_env(tmp_path, None, "2024-01", "2025-02")
    for key in ("MILKPRICE_DATA_ROOT", "MLFLOW_TRACKING_URI"):
        monkeypatch.setenv(key, env[key])
    settings = get_settings()
    return settings, Lake.from_settings(settings, "local")


def _fake_complete_run(settings, month: str, fingerprint: str, version: str) -> str:
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    experiment = mlflow.set_experiment(settings.mlflow_experiment)
    client = MlflowClient(settings.mlflow_tracking_uri)
    run = client.create_run(
        experiment.experiment_id,
        tags={
            "validation_month": month,
            "data_fingerprint": fingerprint,
            "code_version": version,
            RUN_STATUS_TAG: RUN_COMPLETE,
            "promotion": "rejected",
        },
    )
    client.log_metric(run.info.run_id, "val_rmse", 0.4)
    client.log_metric(run.info.run_id, "naive_val_rmse", 0.5)
    client.set_terminated(run.info.run_id)
    return run.info.run_id


def test_plan_skips_only_months_complete_for_the_same_data_and_code(small_setup):
    settings, lake = small_setup
    months = [Month(2025, 1), Month(2025, 2)]
    first = plan_backfill(settings, lake, months, "v1")
    assert [p.skip for p in first] == [False, False]
    assert all(p.fingerprint for p in first)
    run_id = _fake_complete_run(settings, "2025-01", first[0].fingerprint, "v1")
    _fake_complete_run(settings, "2025-02", "another-fingerprint", "v1")

    plans = plan_backfill(settings, lake, months, "v1")
    assert [p.skip for p in plans] == [True, False]  # 2025-02: its data changed since
    assert plans[0].done.run_id == run_id
    assert BackfillRow.skipped(plans[0]).as_cells()[:4] == [
        "2025-01",
        "Skipped",
        "0.4000",
        "0.5000",
    ]
    assert not any(p.skip for p in plan_backfill(settings, lake, months, "v2"))  # new code
    assert not any(p.skip for p in plan_backfill(settings, lake, months, "v1", force=True))


def test_plan_of_a_corrupt_month_runs_it_so_the_run_names_the_partition(small_setup):
    settings, lake = small_setup
    Path(lake.path(Month(2025, 2))).write_bytes(b"not parquet")
    (plan,) = plan_backfill(settings, lake, [Month(2025, 2)], "v1")
    assert not plan.skip and plan.fingerprint is None
    assert "2025-02" in plan.read_error


# --- real runs: in process, parallel, then skip, then force with a failing month ---------------


def _store_summary(tracking_uri: str) -> tuple[dict[str, int], dict[str, dict], str | None]:
    """Complete runs per month, versions by number, and the champion's version."""
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("milk-price")
    runs = client.search_runs(
        [experiment.experiment_id], f"tags.{RUN_STATUS_TAG} = '{RUN_COMPLETE}'"
    )
    per_month: dict[str, int] = {}
    for run in runs:
        month = run.data.tags["validation_month"]
        per_month[month] = per_month.get(month, 0) + 1
    versions = {
        v.version: {**v.tags, "run_id": v.run_id}
        for v in client.search_model_versions("name = 'milk-price-model'")
    }
    try:
        champion = client.get_model_version_by_alias("milk-price-model", CHAMPION_ALIAS).version
    except mlflow.exceptions.MlflowException:
        champion = None
    return per_month, versions, champion


def _assert_gate_invariants(tracking_uri: str, versions: dict[str, dict], champion: str) -> None:
    """What the gate implies after any order of parallel runs (see milkprice.registry.promotion)."""
    client = MlflowClient(tracking_uri)
    promoted = {
        number: tags for number, tags in versions.items() if tags["promotion"] == "promoted"
    }
    assert champion in promoted
    # The champion's month never goes back, so it is the newest month ever promoted.
    assert versions[champion]["validation_month"] == max(
        tags["validation_month"] for tags in promoted.values()
    )
    for tags in promoted.values():  # nothing that lost to the naive forecast was promoted
        metrics = client.get_run(tags["run_id"]).data.metrics
        assert metrics["val_rmse"] < metrics["naive_val_rmse"]


def _table_states(output: str) -> dict[str, str]:
    """Month -> state, from the result table the CLI prints."""
    return dict(re.findall(r"│ (\d{4}-\d{2}) │ (\w+)", output))


def _backfill_flow_runs(api_url: str) -> list[dict]:
    return http_json(
        f"{api_url}/flow_runs/filter",
        {"flow_runs": {"tags": {"all_": ["backfill"]}}, "limit": 200},
    )


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "milkprice_cli", "backfill", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )


def test_in_process_backfill_runs_in_parallel_then_skips_then_forces(prefect_server, tmp_path):
    env = training_env(tmp_path, prefect_server)
    uri = env["MLFLOW_TRACKING_URI"]
    months = ["2024-12", "2025-01", "2025-02"]
    before = {r["id"] for r in _backfill_flow_runs(prefect_server)}
    args = ("--start", "2024-12", "--end", "2025-02", "--concurrency", "2")

    result = _cli(env, tmp_path, *args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _table_states(result.stdout) == dict.fromkeys(months, "Completed")
    per_month, versions, champion = _store_summary(uri)
    assert per_month == dict.fromkeys(months, 1)  # the store opens; one complete run a month
    assert sorted(v["validation_month"] for v in versions.values()) == months
    _assert_gate_invariants(uri, versions, champion)
    runs = [r for r in _backfill_flow_runs(prefect_server) if r["id"] not in before]
    assert sorted(r["name"] for r in runs) == [f"backfill-{m}" for m in months]
    assert all(r["state"]["type"] == "COMPLETED" for r in runs)
    spans = sorted((r["start_time"], r["end_time"]) for r in runs)
    assert spans[1][0] < spans[0][1], "two months should have run at the same time"

    again = _cli(env, tmp_path, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert _table_states(again.stdout) == dict.fromkeys(months, "Skipped")
    assert _store_summary(uri)[0] == per_month
    assert len(_backfill_flow_runs(prefect_server)) == len(before) + 3  # nothing ran again

    # A corrupt partition fails its month, named; --force reruns the month already done.
    lake = Lake(env["MILKPRICE_DATA_ROOT"])
    Path(lake.path(Month(2025, 3))).write_bytes(b"this is not parquet")
    forced = _cli(
        env, tmp_path, "--start", "2025-02", "--end", "2025-03", "--concurrency", "2", "--force"
    )
    assert forced.returncode == 1, forced.stdout + forced.stderr
    assert _table_states(forced.stdout) == {"2025-02": "Completed", "2025-03": "Failed"}
    message = " ".join(forced.stderr.split())
    assert "1 month(s) failed: 2025-03" in message and "2025-03-data.parquet" in message
    per_month, versions, champion = _store_summary(uri)
    assert per_month == {"2024-12": 1, "2025-01": 1, "2025-02": 2}
    assert len(versions) == 4
    _assert_gate_invariants(uri, versions, champion)


# --- via the deployment: runs created on train-milk-model, executed by `milkprice serve` -------


def test_backfill_via_deployment_is_run_by_the_serving_process(prefect_server, tmp_path):
    env = training_env(tmp_path, prefect_server)
    since = time.time()
    log = tmp_path / "serve.log"
    process = start_background([sys.executable, "-m", "milkprice_cli", "serve"], env, tmp_path, log)
    try:
        wait_deployment_polled(prefect_server, TRAIN, since)
        deployment_id = http_json(f"{prefect_server}/deployments/name/{TRAIN}")["id"]
        args = ("--start", "2024-12", "--end", "2025-02", "--concurrency", "2", "--via-deployment")

        result = _cli(env, tmp_path, *args)
        assert result.returncode == 0, result.stdout + result.stderr + log.read_text()[-3000:]
        months = ["2024-12", "2025-01", "2025-02"]
        assert _table_states(result.stdout) == dict.fromkeys(months, "Completed")
        runs = [
            r
            for r in _backfill_flow_runs(prefect_server)
            if r["deployment_id"] == deployment_id and r["created"] >= _iso(since)
        ]
        assert sorted(r["parameters"]["month"] for r in runs) == [1, 2, 12]
        assert all(r["state"]["type"] == "COMPLETED" for r in runs)
        assert "Finished in state Completed" in log.read_text()  # the serving process ran them
        per_month, _, _ = _store_summary(env["MLFLOW_TRACKING_URI"])
        assert per_month == {"2024-12": 1, "2025-01": 1, "2025-02": 1}

        again = _cli(env, tmp_path, *args)
        assert again.returncode == 0, again.stdout + again.stderr
        assert _table_states(again.stdout) == dict.fromkeys(months, "Skipped")
        after = [r for r in _backfill_flow_runs(prefect_server) if r["created"] >= _iso(since)]
        assert len(after) == len(runs)  # no new run was created
    finally:
        stop_process_group(process)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")

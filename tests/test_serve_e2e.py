"""Serving deployments into a real Prefect server, driven as a user would (subprocesses, CLI).

One ``prefect server start`` for the session (``prefect_server``); each serving process is
started from a temporary working directory and stopped (process group) by its test or fixture.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    REPO_ROOT,
    free_port,
    http_json,
    start_background,
    stop_process_group,
    training_env,
    wait_deployment_polled,
    wait_flow_run_final,
)

from orchestration.names import TRAIN_DEPLOYMENT as TRAIN
from orchestration.prefect_server import PrefectApiUnavailableError, check_prefect_api

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).parent / "prefect")
DAILY = "milk-price-training/daily-test"


def _no_server_env(tmp_path: Path, api_url: str | None) -> dict[str, str]:
    env = training_env(tmp_path, None, "2025-01", "2025-01")
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def _run(command: list[str], env: dict[str, str], cwd: Path, timeout: float = 120):
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False
    )


def _assert_train_deployment(deployment: dict) -> None:
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 6 2 * *"]
    assert all(s["active"] for s in deployment["schedules"])
    assert sorted(deployment["tags"]) == ["milk", "training"]
    assert deployment["global_concurrency_limit"]["limit"] == 1
    properties = deployment["parameter_openapi_schema"]["properties"]
    assert properties["source"]["enum"] == ["local", "s3"]
    assert (properties["month"]["minimum"], properties["month"]["maximum"]) == (0, 12)
    assert properties["year"]["minimum"] == 0
    assert deployment["parameters"] == {}  # defaults: local lake, the previous month
    assert deployment["entrypoint"] == "orchestration.flows.main_flow.main"


def _refuses_month_13(env: dict[str, str], cwd: Path) -> None:
    result = _run([PREFECT, "deployment", "run", TRAIN, "--param", "month=13"], env, cwd)
    assert result.returncode != 0
    message = " ".join((result.stdout + result.stderr).split())
    assert "month" in message and "12" in message, message


def _run_valid_month(env: dict[str, str], cwd: Path, api_url: str, year: int, month: int) -> dict:
    result = _run(
        [
            PREFECT,
            "deployment",
            "run",
            TRAIN,
            "--param",
            f"year={year}",
            "--param",
            f"month={month}",
        ],
        env,
        cwd,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", result.stdout).group(1)
    return wait_flow_run_final(api_url, flow_run_id)


# --- fail fast without a server ----------------------------------------------------------------


def test_check_prefect_api_refuses_unset_and_unreachable(prefect_server):
    with pytest.raises(PrefectApiUnavailableError, match=r"make up.*PREFECT_API_URL"):
        check_prefect_api(None)
    with pytest.raises(PrefectApiUnavailableError, match="no Prefect server answers"):
        check_prefect_api(f"http://127.0.0.1:{free_port()}/api")
    assert check_prefect_api(prefect_server) == prefect_server


def test_serve_without_prefect_api_url_fails_with_advice(tmp_path):
    env = _no_server_env(tmp_path, None)
    result = _run([sys.executable, "-m", "milkprice_cli", "serve"], env, tmp_path)
    assert result.returncode != 0
    assert "make up" in result.stderr and "PREFECT_API_URL" in result.stderr, result.stderr


def test_bare_script_with_unreachable_server_fails_with_advice(tmp_path):
    env = _no_server_env(tmp_path, f"http://127.0.0.1:{free_port()}/api")
    script = str(REPO_ROOT / "orchestration" / "flows" / "main_flow.py")
    result = _run([sys.executable, script], env, tmp_path)
    assert result.returncode != 0
    assert "make up" in result.stderr and "PREFECT_API_URL" in result.stderr, result.stderr


# --- the bare script serves train-milk-model ---------------------------------------------------


@pytest.fixture(scope="module")
def stack_env(prefect_server, tmp_path_factory) -> dict[str, str]:
    """A demo lake of 2024-01..2025-03 and an MLflow store shared by this module's servers."""
    return training_env(tmp_path_factory.mktemp("serve-stack"), prefect_server)


def test_bare_main_flow_script_serves_train_milk_model(prefect_server, stack_env, tmp_path):
    since = time.time()
    script = str(REPO_ROOT / "orchestration" / "flows" / "main_flow.py")
    log = tmp_path / "serve.log"
    process = start_background([sys.executable, script], stack_env, tmp_path, log)
    try:
        deployment = wait_deployment_polled(prefect_server, TRAIN, since)
        _assert_train_deployment(deployment)
        assert f"serving {TRAIN} into" in log.read_text()
        assert DAILY not in log.read_text()  # the script serves train-milk-model only
        _refuses_month_13(stack_env, tmp_path)
        run = _run_valid_month(stack_env, tmp_path, prefect_server, 2025, 3)
        assert run["state"]["type"] == "COMPLETED", (run["state"], log.read_text()[-3000:])
        assert process.poll() is None  # still serving after the run
    finally:
        stop_process_group(process)


# --- `milkprice serve` serves every deployment -------------------------------------------------


@pytest.fixture(scope="module")
def milkprice_serve(prefect_server, stack_env, tmp_path_factory) -> Iterator[Path]:
    """`milkprice serve` (python -m milkprice_cli serve) for this module; yields its log."""
    cwd = tmp_path_factory.mktemp("milkprice-serve")
    since = time.time()
    log = cwd / "serve.log"
    process = start_background(
        [sys.executable, "-m", "milkprice_cli", "serve"], stack_env, cwd, log
    )
    try:
        wait_deployment_polled(prefect_server, TRAIN, since)
        wait_deployment_polled(prefect_server, DAILY, since)
        yield log
    finally:
        stop_process_group(process)


def test_milkprice_serve_serves_both_deployments(prefect_server, milkprice_serve):
    _assert_train_deployment(http_json(f"{prefect_server}/deployments/name/{TRAIN}"))
    daily = http_json(f"{prefect_server}/deployments/name/{DAILY}")
    assert [s["schedule"]["cron"] for s in daily["schedules"]] == ["0 8 * * *"]
    assert daily["parameters"] == {"source": "local"}
    assert "milk" in daily["tags"]
    assert daily["parameter_openapi_schema"]["properties"]["month"]["maximum"] == 12


def test_milkprice_serve_refuses_month_13_and_runs_a_valid_month(
    prefect_server, stack_env, milkprice_serve, tmp_path
):
    _refuses_month_13(stack_env, tmp_path)
    run = _run_valid_month(stack_env, tmp_path, prefect_server, 2025, 2)
    assert run["state"]["type"] == "COMPLETED", (run["state"], milkprice_serve.read_text()[-3000:])

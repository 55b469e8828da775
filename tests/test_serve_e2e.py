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
from datetime import UTC, datetime
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

from orchestration.events import STALE_DATA_EVENT as STALE_EVENT
from orchestration.names import FRESHNESS_FLOW, LAKE_FRESHNESS
from orchestration.names import TRAIN_DEPLOYMENT as TRAIN
from orchestration.prefect_server import PrefectApiUnavailableError, check_prefect_api

pytestmark = pytest.mark.e2e

PREFECT = str(Path(sys.executable).parent / "prefect")
DAILY = "milk-price-training/daily-test"
ZONE = "America/Mexico_City"  # MILKPRICE_TIMEZONE's default: training_env sets none
FRESHNESS = f"{FRESHNESS_FLOW}/{LAKE_FRESHNESS}"


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
    assert [s["schedule"]["timezone"] for s in deployment["schedules"]] == [ZONE]
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
        for name in (TRAIN, DAILY, FRESHNESS):
            wait_deployment_polled(prefect_server, name, since)
        yield log
    finally:
        stop_process_group(process)


def test_milkprice_serve_serves_both_deployments(prefect_server, milkprice_serve):
    _assert_train_deployment(http_json(f"{prefect_server}/deployments/name/{TRAIN}"))
    daily = http_json(f"{prefect_server}/deployments/name/{DAILY}")
    assert [s["schedule"]["cron"] for s in daily["schedules"]] == ["0 8 * * *"]
    assert daily["parameters"] == {"source": "local", "force": True}  # a smoke test trains
    assert "milk" in daily["tags"]
    assert daily["parameter_openapi_schema"]["properties"]["month"]["maximum"] == 12


def test_milkprice_serve_refuses_month_13_and_runs_a_valid_month(
    prefect_server, stack_env, milkprice_serve, tmp_path
):
    _refuses_month_13(stack_env, tmp_path)
    run = _run_valid_month(stack_env, tmp_path, prefect_server, 2025, 2)
    assert run["state"]["type"] == "COMPLETED", (run["state"], milkprice_serve.read_text()[-3000:])


# --- local time, months closed by events, runs that skip (same `milkprice serve`) -------------


def _prefect_api(api_url: str):
    """Prefect's client settings pointed at the session's server, for this process."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: api_url})


def _new_runs(api_url: str, deployment_id: str, known: set[str]) -> list[dict]:
    """Runs of the deployment not in ``known`` that its schedule did not make."""
    body = {"flow_runs": {"deployment_id": {"any_": [deployment_id]}}}
    runs = http_json(f"{api_url}/flow_runs/filter", body)
    return [r for r in runs if r["id"] not in known and not r.get("auto_scheduled")]


def _wait_new_run(api_url: str, deployment_id: str, known: set[str], timeout_s=120) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if fresh := _new_runs(api_url, deployment_id, known):
            return fresh[0]
        time.sleep(1)
    raise TimeoutError(f"no run of deployment {deployment_id} started within {timeout_s}s")


def _scheduled_run(api_url: str, name: str, scheduled: datetime, **parameters) -> dict:
    """A run of ``name`` at ``scheduled``, as its schedule would create it; followed to its end."""
    from prefect.deployments import run_deployment

    with _prefect_api(api_url):
        run = run_deployment(name, parameters=parameters, scheduled_time=scheduled, timeout=0)
    return wait_flow_run_final(api_url, str(run.id), timeout_s=600)


def _emit(api_url: str, event: str, resource: str, payload: dict) -> None:
    """Send one event to the server, confirmed (as orchestration.events.emit_data_ingested)."""
    import asyncio

    from prefect.events import Event
    from prefect.events.clients import get_events_client

    async def send() -> None:
        async with get_events_client(reconnection_attempts=2) as client:
            await client.emit(
                Event(event=event, resource={"prefect.resource.id": resource}, payload=payload)
            )

    with _prefect_api(api_url):
        asyncio.run(send())


def _versions(tracking_uri: str) -> list[tuple[str, str]]:
    from mlflow import MlflowClient

    found = MlflowClient(tracking_uri).search_model_versions("name = 'milk-price-model'")
    return sorted((str(v.version), v.tags.get("validation_month", "")) for v in found)


def test_every_schedule_reads_the_local_zone_through_the_api(prefect_server, milkprice_serve):
    from prefect.client.orchestration import get_client

    from orchestration.deployments import DEPLOYMENTS

    names = [f"{d.flow_name}/{d.name}" for d in (build() for build in DEPLOYMENTS)]
    crons = {}
    with _prefect_api(prefect_server), get_client(sync_client=True) as client:
        for name in names:
            for schedule in client.read_deployment_by_name(name).schedules:
                assert schedule.schedule.timezone == ZONE, (name, schedule.schedule)
                assert schedule.active, name
                crons.setdefault(name, []).append(schedule.schedule.cron)
    assert crons[TRAIN] == ["0 6 2 * *"]  # 06:00 in Mexico City, no longer midnight
    assert crons[FRESHNESS] == ["0 9 * * *"]
    assert "milk-price-backfill/backfill-months" not in crons  # started by hand only


def test_a_closed_month_trains_once_and_its_scheduled_run_skips(
    prefect_server, stack_env, milkprice_serve
):
    from milkprice.months import Month
    from orchestration.events import MONTH_CLOSED_EVENT

    closed = Month(2025, 1)
    uri = stack_env["MLFLOW_TRACKING_URI"]
    deployment_id = http_json(f"{prefect_server}/deployments/name/{TRAIN}")["id"]
    known = {r["id"] for r in _new_runs(prefect_server, deployment_id, set())}
    versions_before = _versions(uri)
    assert str(closed) not in {month for _, month in versions_before}

    # The first publication of February reached the lake: January is closed.
    payload = {"source": "local", "year": closed.year, "month": closed.month}
    _emit(prefect_server, MONTH_CLOSED_EVENT, "milkprice.lake.local", payload)
    triggered = _wait_new_run(prefect_server, deployment_id, known)
    assert triggered["parameters"] == payload  # the month of the event's payload
    trained = wait_flow_run_final(prefect_server, triggered["id"], timeout_s=600)
    log = milkprice_serve.read_text()
    assert trained["state"]["name"] == "Completed", (trained["state"], log[-3000:])
    assert len(_new_runs(prefect_server, deployment_id, known)) == 1  # one event, one run
    versions = _versions(uri)
    new = [v for v in versions if v not in versions_before]
    assert [month for _, month in new] == [str(closed)]

    # The monthly cron's run, late: 03:00 UTC on 1 March is 21:00 on 28 February in Mexico
    # City, so year=0, month=0 is January there (February in UTC): already trained, skipped.
    cron_run = _scheduled_run(prefect_server, TRAIN, datetime(2025, 3, 1, 3, 0, tzinfo=UTC))
    state = cron_run["state"]
    assert (state["type"], state["name"]) == ("COMPLETED", "Skipped"), (state, log[-3000:])
    assert cron_run["parameters"] == {}  # the deployment's defaults: 0/0, the local lake
    assert "already complete for 2025-01" in state["message"], state["message"]
    assert f"model version {new[0][0]}" in state["message"]
    assert _versions(uri) == versions  # nothing registered
    assert len(_new_runs(prefect_server, deployment_id, known)) == 2


def _stale_events(api_url: str, since: datetime) -> list[dict]:
    body = {
        "filter": {"occurred": {"since": since.isoformat()}, "event": {"name": [STALE_EVENT]}},
        "limit": 50,
    }
    return http_json(f"{api_url}/events/filter", body)["events"]


def test_lake_freshness_alerts_only_when_the_newest_publication_is_too_old(
    prefect_server, milkprice_serve
):
    since = datetime.now(UTC)
    # The demo lake's newest publication is Monday 2025-03-31.
    fresh = _scheduled_run(prefect_server, FRESHNESS, datetime(2025, 4, 7, 15, 0, tzinfo=UTC))
    assert fresh["state"]["type"] == "COMPLETED", fresh["state"]
    stale = _scheduled_run(prefect_server, FRESHNESS, datetime(2025, 4, 8, 15, 0, tzinfo=UTC))
    assert stale["state"]["type"] == "COMPLETED", stale["state"]  # an alert is not a failure
    deadline = time.monotonic() + 60
    while not (events := _stale_events(prefect_server, since)) and time.monotonic() < deadline:
        time.sleep(1)  # the server stores events a moment after it receives them
    assert len(events) == 1, events  # 7 days old is fresh, 8 days alerts
    (alert,) = events[0]["payload"]["alerts"]
    assert (alert["kind"], alert["value"], alert["threshold"]) == ("stale-data", 8.0, 7.0)
    assert "2025-03-31" in alert["message"] and "2025-04-08" in alert["message"]

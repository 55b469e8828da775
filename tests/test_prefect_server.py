"""One-off runs use the `make up` server named in stack.json when it answers, else a temporary one.

The stack is stood in for by the session's real `prefect server start` (the prefect_server
fixture) and a handwritten stack.json in a temporary STATE_DIR, as `make up` writes it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port, http_json, training_env

MAIN_FLOW = REPO_ROOT / "orchestration" / "flows" / "main_flow.py"
MILKPRICE = Path(sys.executable).parent / "milkprice"
SAYS_SO = "Using the running Prefect server at"

# Prefect is imported before the call, as in main_flow.py: the switch must still take effect.
_PROBE = """
import json
import prefect
from prefect.settings import get_current_settings
from orchestration.prefect_server import use_running_server

returned = use_running_server()
print(json.dumps({"returned": returned, "settings": get_current_settings().api.url}))
"""


def _stack_file(folder: Path, api_url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    state = {
        "stack": "local",
        "prefect_api_url": api_url,
        "mlflow_tracking_uri": "sqlite:///mlflow.db",
        "mlflow_url": "http://127.0.0.1:5000",
    }
    path = folder / "stack.json"
    path.write_text(json.dumps(state))
    return path


def _probe(env: dict[str, str], cwd: Path) -> tuple[dict, str]:
    done = subprocess.run(
        [sys.executable, "-c", _PROBE],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def _base_env(root: Path) -> dict[str, str]:
    # training_env drops every PREFECT_* variable: nothing names a server unless a case does.
    env = training_env(root, None, "2025-01", "2025-01")
    env.pop("STATE_DIR", None)
    return env


def test_healthy_stack_is_used_and_said_in_one_line(tmp_path: Path, prefect_server: str):
    env = _base_env(tmp_path)
    _stack_file(tmp_path / "state", prefect_server)
    env["STATE_DIR"] = str(tmp_path / "state")
    found, stderr = _probe(env, tmp_path)
    assert found == {"returned": prefect_server, "settings": prefect_server}
    [line] = [line for line in stderr.splitlines() if SAYS_SO in line]
    assert prefect_server in line


def test_default_state_dir_is_dot_state_in_the_working_directory(
    tmp_path: Path, prefect_server: str
):
    env = _base_env(tmp_path)
    _stack_file(tmp_path / ".state", prefect_server)
    found, _ = _probe(env, tmp_path)
    assert found["returned"] == prefect_server


@pytest.mark.parametrize("case", ["dead-port", "no-file", "not-json", "no-url"])
def test_without_a_live_stack_nothing_changes(tmp_path: Path, case: str):
    env = _base_env(tmp_path)
    state = tmp_path / "state"
    env["STATE_DIR"] = str(state)
    if case == "dead-port":
        _stack_file(state, f"http://127.0.0.1:{free_port()}/api")
    elif case == "not-json":
        state.mkdir()
        (state / "stack.json").write_text("{not json")
    elif case == "no-url":
        state.mkdir()
        (state / "stack.json").write_text(json.dumps({"stack": "local"}))
    found, stderr = _probe(env, tmp_path)
    assert found == {"returned": None, "settings": None}
    assert SAYS_SO not in stderr


def test_an_explicit_api_url_wins_over_the_stack(tmp_path: Path, prefect_server: str):
    env = _base_env(tmp_path)
    _stack_file(tmp_path / "state", prefect_server)
    env["STATE_DIR"] = str(tmp_path / "state")
    elsewhere = f"http://127.0.0.1:{free_port()}/api"
    env["PREFECT_API_URL"] = elsewhere
    found, stderr = _probe(env, tmp_path)
    assert found == {"returned": None, "settings": elsewhere}
    assert SAYS_SO not in stderr


# --- the entry points, as whole processes -----------------------------------------------------


def _training_runs_since(api_url: str, since: datetime) -> list[dict]:
    body = {
        "flows": {"name": {"any_": ["milk-price-training"]}},
        # One-off runs have no deployment: the scheduler's runs of deployments other tests
        # served on the session's server (future ones included) are not theirs.
        "flow_runs": {
            "expected_start_time": {"after_": since.isoformat()},
            "deployment_id": {"is_null_": True},
        },
    }
    found = http_json(f"{api_url}/flow_runs/filter", body)
    assert isinstance(found, list)
    return found


def _run(command: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, env=env, cwd=cwd, capture_output=True, text=True, timeout=900, check=False
    )


@pytest.mark.e2e
def test_one_off_training_run_lands_on_the_running_server(tmp_path: Path, prefect_server: str):
    env = training_env(tmp_path, None, "2024-01", "2025-02")
    _stack_file(tmp_path / ".state", prefect_server)
    since = datetime.now(UTC)
    done = _run([sys.executable, str(MAIN_FLOW), "--year", "2025", "--month", "2"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{SAYS_SO} {prefect_server}" in done.stderr
    runs = _training_runs_since(prefect_server, since)
    assert [(r["parameters"]["year"], r["parameters"]["month"]) for r in runs] == [(2025, 2)]
    assert runs[0]["state"]["type"] == "COMPLETED"


@pytest.mark.e2e
def test_backfill_lands_on_the_running_server(tmp_path: Path, prefect_server: str):
    env = training_env(tmp_path, None, "2024-01", "2025-01")
    env["STATE_DIR"] = str(tmp_path / "stack-state")
    _stack_file(tmp_path / "stack-state", prefect_server)
    since = datetime.now(UTC)
    command = [str(MILKPRICE), "backfill", "--start", "2025-01", "--end", "2025-01"]
    done = _run(command, env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{SAYS_SO} {prefect_server}" in done.stderr
    runs = _training_runs_since(prefect_server, since)
    assert [r["name"] for r in runs] == ["backfill-2025-01"]
    assert runs[0]["state"]["type"] == "COMPLETED"


@pytest.mark.e2e
def test_dead_stack_falls_back_to_a_temporary_server(tmp_path: Path, prefect_server: str):
    env = training_env(tmp_path, None, "2024-01", "2025-02")
    # Prefect gives its temporary server 20 s to start: not enough on a loaded machine.
    env["PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"] = "180"
    _stack_file(tmp_path / ".state", f"http://127.0.0.1:{free_port()}/api")
    since = datetime.now(UTC)
    done = _run([sys.executable, str(MAIN_FLOW), "--year", "2025", "--month", "2"], env, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert SAYS_SO not in done.stdout + done.stderr
    assert "Validation month 2025-02" in done.stdout
    # Nothing reached the session's server: the run had a temporary server of its own.
    assert _training_runs_since(prefect_server, since) == []

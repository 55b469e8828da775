"""`make up` / `make down` on a fresh state folder: everything answers, then nothing is left."""

from __future__ import annotations

import json
import socket
import subprocess
import urllib.request
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port, http_json, training_env

from milkprice.data.lake import Lake

pytestmark = pytest.mark.e2e


def _alive_in_group(pgid: int) -> list[int]:
    """Pids of processes (zombies aside) still in process group ``pgid``."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            alive.append(int(stat.parent.name))
    return alive


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _make(target: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    # -o: never reinstall the virtualenv from a test, whatever the stamp's age.
    return subprocess.run(
        ["make", "--no-print-directory", "-o", ".venv/.installed", target],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="checks processes in /proc")
def test_make_up_then_down_on_a_fresh_state_folder(tmp_path):
    env = training_env(tmp_path, None)
    lake_root = tmp_path / "empty-lake"  # `make up` fills an empty lake with the demo
    state = tmp_path / "state"
    prefect_port, mlflow_port = free_port(), free_port()
    env.update(
        MILKPRICE_DATA_ROOT=str(lake_root),
        STATE_DIR=str(state),
        PREFECT_PORT=str(prefect_port),
        MLFLOW_PORT=str(mlflow_port),
    )
    try:
        up = _make("up", env)
        assert up.returncode == 0, up.stdout + up.stderr
        records = {p.stem: json.loads(p.read_text()) for p in (state / "pids").glob("*.json")}
        assert set(records) == {"prefect", "mlflow", "serve"}
        assert all((state / "logs" / f"{name}.log").exists() for name in records)
        assert f"http://127.0.0.1:{prefect_port}" in up.stdout
        assert f"http://127.0.0.1:{mlflow_port}" in up.stdout
        api = f"http://127.0.0.1:{prefect_port}/api"
        assert http_json(f"{api}/health") is True
        deployment = http_json(f"{api}/deployments/name/milk-price-training/train-milk-model")
        assert deployment["status"] == "READY"
        # The UI calls the port the server runs on (PREFECT_SERVER_API_PORT), not 4200.
        settings = http_json(f"http://127.0.0.1:{prefect_port}/ui-settings")
        assert str(prefect_port) in settings["api_url"]
        with urllib.request.urlopen(
            f"http://127.0.0.1:{mlflow_port}/health", timeout=10
        ) as response:
            assert response.status == 200
        assert (state / "prefect").is_dir()  # PREFECT_HOME (the server's SQLite) lives here
        assert Lake(str(lake_root)).list_months()  # the demo lake was created
    finally:
        down = _make("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    for name, record in records.items():
        assert _alive_in_group(record["pgid"]) == [], f"{name} left processes behind"
    assert not _port_open(prefect_port) and not _port_open(mlflow_port)
    assert list((state / "pids").glob("*.json")) == []

"""`make up` / `make status` / `make down` on a fresh state folder (the local stack).

Everything answers while it is up; afterwards no process supervisord reported (nor a child of
one) is alive and the ports are free.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import psutil
import pytest
from conftest import REPO_ROOT, free_port, http_json, training_env, wait_flow_run_final

from milkprice.data.demo import publication_dates
from milkprice.data.lake import Lake
from milkprice.months import Month

_PROGRAMS = {"prefect", "mlflow", "serve", "api", "publisher"}


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


def _first_run(
    api_url: str, deployment: str, timeout_s: float = 300, *, parameter: str | None = None
) -> dict:
    """The first flow run of ``deployment`` (a deployment name) that is not a future cron run.

    ``parameter``: only a run given that parameter (an event's run; cron runs take defaults).
    """
    body = {
        "deployments": {"name": {"any_": [deployment]}},
        "flow_runs": {"state": {"type": {"not_any_": ["SCHEDULED"]}}},
        "sort": "START_TIME_ASC",
    }
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = http_json(f"{api_url}/flow_runs/filter", body)
        runs = [run for run in runs if parameter is None or parameter in run["parameters"]]
        if runs:
            return runs[0]
        time.sleep(2)
    raise TimeoutError(f"no run of {deployment} within {timeout_s}s")


def _supervisorctl(conf: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(REPO_ROOT / ".venv" / "bin" / "supervisorctl"), "-c", str(conf), *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_generated_config_reads_back_through_supervisords_own_parser(tmp_path):
    from supervisor.options import ServerOptions

    from stack.supervisor import Program, Supervisor, SupervisorError

    supervisor = Supervisor(tmp_path, "local")
    program = Program(
        "web",
        ["/bin/echo", "100%", "two words"],
        {"URL": "http://127.0.0.1:1/?q=1%2C2", "LIST": "a,b"},
        priority=5,
        stopsignal="INT",
    )
    options = ServerOptions()
    options.realize(args=["-c", str(supervisor.write_config([program], tmp_path))])
    parsed = options.process_group_configs[0].process_configs[0]
    assert shlex.split(parsed.command) == program.command  # `%` and spaces survive
    assert parsed.environment == program.env
    assert (parsed.priority, parsed.autostart, parsed.stopasgroup) == (5, False, True)
    assert parsed.stdout_logfile == str(tmp_path / "logs" / "web.log")
    assert options.serverurl == f"unix://{supervisor.socket}"
    with pytest.raises(SupervisorError, match="QUOTED"):
        supervisor.write_config([Program("bad", ["/bin/true"], {"QUOTED": 'say "hi"'})], tmp_path)


@pytest.mark.e2e
def test_make_up_status_then_down_on_a_fresh_state_folder(tmp_path):
    env = training_env(tmp_path, None)
    lake_root = tmp_path / "empty-lake"  # `make up` fills an empty lake with the demo
    state = tmp_path / "state"
    prefect_port, mlflow_port, api_port = free_port(), free_port(), free_port()
    publisher_port = free_port()
    env.update(
        API_PORT=str(api_port),
        PUBLISHER_PORT=str(publisher_port),
        MILKPRICE_DATA_ROOT=str(lake_root),
        STATE_DIR=str(state),
        PREFECT_PORT=str(prefect_port),
        MLFLOW_PORT=str(mlflow_port),
    )
    processes: list[psutil.Process] = []
    try:
        up = _make("up", env)
        assert up.returncode == 0, up.stdout + up.stderr
        info = json.loads((state / "stack.json").read_text())
        assert info["stack"] == "local"
        assert set(info["processes"]) == _PROGRAMS
        for pid in info["processes"].values():  # the pids supervisord reported, and children
            parent = psutil.Process(pid)
            processes += [parent, *parent.children(recursive=True)]
        assert info["prefect_api_url"] == f"http://127.0.0.1:{prefect_port}/api"
        assert info["mlflow_url"] == f"http://127.0.0.1:{mlflow_port}"
        assert f"export PREFECT_API_URL=http://127.0.0.1:{prefect_port}/api" in up.stdout
        assert all((state / "logs" / f"{name}.log").exists() for name in info["processes"])

        # supervisord's own tools work on the generated config.
        conf = Path(info["supervisord_conf"])
        status = _supervisorctl(conf, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        lines = {line.split()[0]: line.split()[1] for line in status.stdout.splitlines()}
        assert set(lines.values()) == {"RUNNING"}
        assert set(lines) == _PROGRAMS
        assert "serving" in _supervisorctl(conf, "tail", "serve").stdout
        made_status = _make("status", env)
        assert made_status.returncode == 0, made_status.stdout + made_status.stderr
        assert "serve" in made_status.stdout

        api = info["prefect_api_url"]
        assert http_json(f"{api}/health") is True
        deployment = http_json(f"{api}/deployments/name/milk-price-training/train-milk-model")
        assert deployment["status"] == "READY"
        # The UI calls the port the server runs on (PREFECT_SERVER_API_PORT), not 4200.
        settings = http_json(f"http://127.0.0.1:{prefect_port}/ui-settings")
        assert str(prefect_port) in settings["api_url"]
        with urllib.request.urlopen(f"{info['mlflow_url']}/health", timeout=10) as response:
            assert response.status == 200
        # The API is a stack service: up prints the explorer's address, which serves the page.
        assert info["explorer_url"] == f"http://127.0.0.1:{api_port}/"
        assert f"http://127.0.0.1:{api_port}/" in up.stdout
        with urllib.request.urlopen(info["explorer_url"], timeout=10) as response:
            assert response.status == 200
            assert response.headers["content-type"].startswith("text/html")
        assert (state / "prefect").is_dir()  # PREFECT_HOME (the server's SQLite) lives here
        lake = Lake(str(lake_root))
        demo_months = lake.list_months()
        assert demo_months  # the demo lake was created

        # The loop closes by itself: `up` started one ingest-sniim run, which fetched what the
        # demo publisher has of this month (the demo lake ends with the previous one); the
        # month's first publication closed the previous month, whose training it started.
        ingest = wait_flow_run_final(api, _first_run(api, "ingest-sniim")["id"], 300)
        assert ingest["state"]["type"] == "COMPLETED", ingest["state"]
        today = datetime.now(ZoneInfo("America/Mexico_City")).date()
        this_month = Month.of(today)
        published = [
            d.date() for d in publication_dates(this_month, this_month) if d.date() <= today
        ]
        if not published:  # the first days of a month may have no publication yet
            assert lake.list_months() == demo_months
            assert ingest["state"]["name"] == "NotPublished", ingest["state"]
        else:
            assert lake.list_months() == [*demo_months, this_month]
            dates = set(lake.read_month(this_month)[0]["Fecha"].dt.date)
            assert dates == set(published)
            closed = this_month.shift(-1)
            training = _first_run(api, "train-milk-model", parameter="year")
            assert (training["parameters"]["year"], training["parameters"]["month"]) in {
                (closed.year, closed.month),
                (str(closed.year), str(closed.month)),
            }, training["parameters"]
            training = wait_flow_run_final(api, training["id"], 600)
            assert training["state"]["type"] == "COMPLETED", training["state"]
    finally:
        down = _make("down", env)
    assert down.returncode == 0, down.stdout + down.stderr
    assert processes, "no process was recorded"
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == [], f"left behind: {alive}"
    assert not _port_open(prefect_port)
    assert not _port_open(mlflow_port)
    assert not _port_open(api_port)
    assert not _port_open(publisher_port)
    assert not (state / "stack.json").exists()
    after = _make("status", env)
    assert after.returncode != 0
    assert "no stack runs" in after.stdout


class _FakeSupervisor:
    """The two calls wait_until makes of a supervisor: a program's state and its log file."""

    def __init__(self, tmp_path: Path, states: dict[str, str]) -> None:
        self.states = states
        self.tmp_path = tmp_path

    def state(self, name: str) -> str:
        return self.states.get(name, "RUNNING")

    def log_file(self, name: str) -> Path:
        path = self.tmp_path / f"{name}.log"
        path.write_text(f"last words of {name}\n")
        return path


def test_wait_until_returns_once_every_check_passes(tmp_path):
    from stack.supervisor import wait_until

    calls = {"n": 0}

    def ready_on_third_call() -> bool:
        calls["n"] += 1
        return calls["n"] >= 3

    wait_until(_FakeSupervisor(tmp_path, {}), {"web": ready_on_third_call}, 30, poll_s=0.01)
    assert calls["n"] == 3


def test_wait_until_names_the_program_that_died_or_never_became_ready(tmp_path):
    from stack.supervisor import SupervisorError, wait_until

    dead = _FakeSupervisor(tmp_path, {"db": "FATAL"})
    with pytest.raises(SupervisorError, match=r"(?s)db is FATAL during start-up.*last words of db"):
        wait_until(dead, {"web": lambda: False}, 30, watch=["db"], poll_s=0.01)
    with pytest.raises(
        SupervisorError, match=r"(?s)web did not become ready within 0s.*last words of web"
    ):
        wait_until(_FakeSupervisor(tmp_path, {}), {"web": lambda: False}, 0.05, poll_s=0.01)

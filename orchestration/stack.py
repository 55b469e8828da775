"""``make up`` / ``make down``: a local Prefect server, the MLflow UI and ``milkprice serve``.

``python -m orchestration.stack up`` starts the three on 127.0.0.1 in the background, each in a
process group of its own, with its log and pid file under one state folder (default
``.state/``), waits until each answers and prints their addresses. ``down`` stops exactly the
process groups its pid files name, and only if each pid still belongs to the process ``up``
started (its start time is recorded), never anything found by name or port.

Options come from the command line or the environment: ``STATE_DIR``, ``PREFECT_PORT``
(4200), ``MLFLOW_PORT`` (5000). The Prefect server gets ``PREFECT_SERVER_API_HOST/PORT``, so its
UI calls the port it runs on, and ``PREFECT_HOME`` under the state folder, so its SQLite
database lives there.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

__all__ = ["Component", "StackConfig", "main", "stack_down", "stack_up"]

_BIN = Path(sys.executable).parent
_START_TIMEOUT_S = 180.0
_STOP_TIMEOUT_S = 20.0
_SERVE_DEPLOYMENT = "milk-price-training/train-milk-model"


class StackError(RuntimeError):
    """A component could not start; the message names it and its log."""


@dataclass(frozen=True)
class StackConfig:
    """Where the stack keeps its state and which loopback ports it uses."""

    state_dir: Path
    prefect_port: int = 4200
    mlflow_port: int = 5000
    host: str = "127.0.0.1"

    @property
    def prefect_api_url(self) -> str:
        """``PREFECT_API_URL`` of the stack's server."""
        return f"http://{self.host}:{self.prefect_port}/api"

    @property
    def mlflow_url(self) -> str:
        """Address of the MLflow UI."""
        return f"http://{self.host}:{self.mlflow_port}"

    def pid_file(self, name: str) -> Path:
        """Pid file of a component."""
        return self.state_dir / "pids" / f"{name}.json"

    def log_file(self, name: str) -> Path:
        """Log of a component."""
        return self.state_dir / "logs" / f"{name}.log"


@dataclass(frozen=True)
class Component:
    """One background process of the stack and how to tell it is ready."""

    name: str
    command: list[str]
    env: dict[str, str]
    port: int | None
    ready: Callable[[float], bool]  # called with the start time (epoch seconds)
    url: str


# --- processes: start time as identity, process groups ------------------------------------------


def _start_token(pid: int) -> str | None:
    """Start time of ``pid`` (identifies it across pid reuse), or ``None`` if it is gone."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self/stat").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return None if fields[0] == "Z" else fields[19]  # state, starttime (field 22)
    result = subprocess.run(
        ["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True, check=False
    )
    return result.stdout.strip() or None


def _group_alive(pgid: int) -> bool:
    """Whether any process (zombies aside) is left in process group ``pgid``."""
    proc = Path("/proc")
    if not (proc / "self" / "stat").exists():
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    for stat in proc.glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # pgrp is field 5
            return True
    return False


def _read_pid_file(path: Path) -> dict[str, Any] | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def _running(path: Path) -> dict[str, Any] | None:
    """The pid file's record if its process is still the one that was started."""
    record = _read_pid_file(path)
    if record is None:
        return None
    pid = int(record["pid"])
    return record if _start_token(pid) == record.get("start") else None


def _stop_group(pgid: int) -> None:
    """SIGTERM the process group, then SIGKILL what is left after a grace period."""
    for sig, grace in ((signal.SIGTERM, _STOP_TIMEOUT_S), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if not _group_alive(pgid):
                return
            time.sleep(0.2)


# --- readiness ---------------------------------------------------------------------------------


def _get_json(url: str) -> object | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:  # loopback only
            return json.loads(response.read() or b"null")
    except (OSError, ValueError):
        return None


def _answers(url: str) -> Callable[[float], bool]:
    def ready(_started: float) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=3) as response:
                return response.status == 200
        except (OSError, ValueError):
            return False

    return ready


def _deployment_polled(api_url: str, name: str) -> Callable[[float], bool]:
    """Ready when the deployment's runner has polled the server since the process started."""

    def ready(started: float) -> bool:
        found = _get_json(f"{api_url}/deployments/name/{name}")
        if not isinstance(found, dict) or not found.get("last_polled"):
            return False
        polled = datetime.fromisoformat(str(found["last_polled"]).replace("Z", "+00:00"))
        return polled.timestamp() >= started and found.get("status") == "READY"

    return ready


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((host, port)) != 0


# --- the stack ---------------------------------------------------------------------------------


def _components(config: StackConfig, environ: Mapping[str, str]) -> list[Component]:
    base = {**environ, "PYTHONUNBUFFERED": "1"}
    prefect_env = {
        **base,
        "PREFECT_HOME": str((config.state_dir / "prefect").resolve()),
        "PREFECT_SERVER_API_HOST": config.host,
        "PREFECT_SERVER_API_PORT": str(config.prefect_port),
        "PREFECT_API_URL": config.prefect_api_url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    tracking_uri = environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    serve_env = {
        **base,
        "PREFECT_API_URL": config.prefect_api_url,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MILKPRICE_MLFLOW_UI_URL": environ.get("MILKPRICE_MLFLOW_UI_URL", config.mlflow_url),
    }
    components = [
        Component(
            "prefect",
            [str(_BIN / "prefect"), "server", "start"],
            prefect_env,
            config.prefect_port,
            _answers(f"{config.prefect_api_url}/health"),
            f"http://{config.host}:{config.prefect_port}",
        )
    ]
    if not tracking_uri.startswith(("http://", "https://")):  # else a tracking server exists
        components.append(
            Component(
                "mlflow",
                [
                    *(str(_BIN / "mlflow"), "server", "--backend-store-uri", tracking_uri),
                    *("--host", config.host, "--port", str(config.mlflow_port)),
                    *("--workers", "1"),
                ],
                # MLflow's background job runner (a handful of huey workers) is not used here.
                {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **base},
                config.mlflow_port,
                _answers(f"{config.mlflow_url}/health"),
                config.mlflow_url,
            )
        )
    components.append(
        Component(
            "serve",
            [sys.executable, "-m", "orchestration.cli", "serve"],
            serve_env,
            None,
            _deployment_polled(config.prefect_api_url, _SERVE_DEPLOYMENT),
            f"http://{config.host}:{config.prefect_port}/deployments",
        )
    )
    return components


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _start(config: StackConfig, component: Component) -> dict[str, Any]:
    if component.port is not None and not _port_free(config.host, component.port):
        raise StackError(
            f"{component.name}: port {component.port} on {config.host} is already in use; stop "
            f"what uses it or choose another port ({component.name.upper()}_PORT=...)"
        )
    log = config.log_file(component.name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        process = subprocess.Popen(
            component.command,
            env=component.env,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: `down` stops it and its children
        )
    record: dict[str, Any] = {
        "pid": process.pid,
        "pgid": process.pid,
        "start": _start_token(process.pid),
        "command": component.command,
        "port": component.port,
        "url": component.url,
        "log": str(log),
    }
    pid_file = config.pid_file(component.name)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(json.dumps(record, indent=2))
    return record


def _wait_ready(component: Component, process_pid: int, started: float, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if component.ready(started):
            return
        if _start_token(process_pid) is None:
            raise StackError(f"{component.name} exited during start-up; log {log}:\n{_tail(log)}")
        time.sleep(0.5)
    raise StackError(
        f"{component.name} did not answer within {_START_TIMEOUT_S:.0f}s; log {log}:\n{_tail(log)}"
    )


def _fill_demo_lake(config: StackConfig, environ: Mapping[str, str]) -> None:
    """``milkprice data demo --if-empty``: the served flow needs data to train on."""
    log = config.log_file("demo")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as sink:
        result = subprocess.run(
            [sys.executable, "-m", "orchestration.cli", "data", "demo", "--if-empty"],
            env=dict(environ),
            stdout=sink,
            stderr=subprocess.STDOUT,
            check=False,
        )
    if result.returncode != 0:
        raise StackError(f"`milkprice data demo --if-empty` failed; log {log}:\n{_tail(log)}")
    print(f"demo lake: {' '.join(_tail(log, 2).split())}")


def stack_up(config: StackConfig, environ: Mapping[str, str] | None = None) -> list[Component]:
    """Start what is not running yet, wait until everything answers; stop it all on failure.

    The servers boot while the demo lake is written; ``serve`` starts once they answer.
    """
    environ = dict(os.environ if environ is None else environ)
    components = _components(config, environ)
    started_now: list[str] = []
    pending: list[tuple[Component, dict[str, Any], float]] = []

    def launch(component: Component) -> None:
        if (record := _running(config.pid_file(component.name))) is not None:
            print(f"{component.name}: already running (pid {record['pid']})")
            return
        started = time.time()
        record = _start(config, component)
        started_now.append(component.name)
        pending.append((component, record, started))

    def wait_all() -> None:
        while pending:
            component, record, started = pending.pop(0)
            _wait_ready(component, int(record["pid"]), started, config.log_file(component.name))
            print(f"{component.name}: up (pid {record['pid']}, log {record['log']})")

    try:
        for component in components[:-1]:
            launch(component)
        _fill_demo_lake(config, environ)
        wait_all()
        launch(components[-1])  # serve: needs the server up and the lake filled
        wait_all()
    except BaseException:
        stack_down(config, names=started_now)
        raise
    return components


def stack_down(config: StackConfig, names: list[str] | None = None) -> list[str]:
    """Stop the process groups of the stack's pid files (``names``: only those); return them."""
    pid_dir = config.state_dir / "pids"
    chosen = names if names is not None else ["serve", "mlflow", "prefect"]
    stopped = []
    for name in chosen:
        path = pid_dir / f"{name}.json"
        if not path.exists():
            continue
        record = _running(path)
        if record is None:
            print(f"{name}: not running (stale pid file removed)")
        else:
            _stop_group(int(record["pgid"]))
            stopped.append(name)
            print(f"{name}: stopped (pid {record['pid']})")
        path.unlink(missing_ok=True)
    return stopped


def _config(args: argparse.Namespace) -> StackConfig:
    return StackConfig(Path(args.state_dir), int(args.prefect_port), int(args.mlflow_port))


def main(argv: list[str] | None = None) -> int:
    """``python -m orchestration.stack up|down``; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m orchestration.stack")
    parser.add_argument("action", choices=["up", "down"])
    parser.add_argument("--state-dir", default=os.environ.get("STATE_DIR") or ".state")
    parser.add_argument("--prefect-port", default=os.environ.get("PREFECT_PORT") or 4200)
    parser.add_argument("--mlflow-port", default=os.environ.get("MLFLOW_PORT") or 5000)
    args = parser.parse_args(argv)
    config = _config(args)
    if args.action == "down":
        if not stack_down(config):
            print(f"nothing of the stack was running (state folder {config.state_dir})")
        return 0
    try:
        components = stack_up(config)
    except StackError as exc:
        print(f"error: make up: {exc}", file=sys.stderr)
        return 1
    print("\nThe stack is up:")
    for component in components:
        print(f"  {component.name:8} {component.url}")
    print(
        f"\nexport PREFECT_API_URL={config.prefect_api_url}   # for prefect/milkprice commands\n"
        f"logs and pid files: {config.state_dir}/  -  stop everything with `make down`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make up`` / ``make down``: the background stacks, run by supervisord.

``milkprice stack up`` (``python -m stack up``, ``make up``) starts the local
stack: a Prefect server (SQLite under ``<state>/prefect``), the MLflow UI, ``milkprice
serve`` and the prediction API with its forecast explorer (``milkprice api``), on 127.0.0.1
ports ``PREFECT_PORT`` (4200), ``MLFLOW_PORT`` (5000) and ``API_PORT`` (8000), and fills an
empty lake with the demo data. ``up --cluster`` (``make up STACK=cluster``) starts the cluster
stack of :mod:`stack.cluster` (PostgreSQL, S3, Prefect and MLflow servers, a Dask
cluster and two Prefect workers on a work pool) on free ports.

Each stack is one supervisord (:mod:`stack.supervisor`) with its generated config
``<state>/supervisord-<stack>.conf``, its socket and pid file in the state folder (``STATE_DIR``,
default ``.state``) and every log under ``<state>/logs/``. supervisord starts, stops and
restarts the processes; milkprice keeps only its own readiness checks
(:mod:`stack.ready`) and the order of the steps. Look at a running stack with
``milkprice stack status`` or supervisord's own tools::

    supervisorctl -c .state/supervisord-local.conf status
    supervisorctl -c .state/supervisord-cluster.conf tail -f prefect-worker-1

``up`` writes ``<state>/stack.json`` (URLs, the environment a user needs, the pids supervisord
reported) and prints ``export`` lines; ``down`` shuts supervisord down, checks that no process it
ran (nor any of their children) is left, and removes ``stack.json``.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import typer

from milkprice.settings import STACK_FILE
from stack.local import StackError, local_up
from stack.supervisor import Supervisor, SupervisorError

__all__ = [
    "STACKS",
    "StackError",
    "main",
    "read_stack_file",
    "stack_app",
    "stack_down",
    "stack_status",
    "stack_up",
]

STACKS = ("local", "cluster")


def read_stack_file(state_dir: Path) -> dict[str, object] | None:
    """``<state>/stack.json`` of the running stack, or ``None``."""
    try:
        found = json.loads((state_dir / STACK_FILE).read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def _write_stack_file(state_dir: Path, info: Mapping[str, object]) -> Path:
    path = state_dir / STACK_FILE
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(info, indent=2) + "\n")
    temporary.replace(path)
    return path


# --- the local stack ---------------------------------------------------------------------------


# --- up / down / status ------------------------------------------------------------------------


def stack_up(
    state_dir: Path,
    *,
    cluster: bool = False,
    prefect_port: int = 4200,
    mlflow_port: int = 5000,
    api_port: int = 8000,
    publisher_port: int = 8010,
    demo: bool = True,
    environ: Mapping[str, str] | None = None,
) -> dict[str, object]:
    """Start a stack (nothing if it already runs); return what ``stack.json`` records.

    On any failure the stack's supervisord is shut down: nothing half-started is left.

    Raises:
        StackError: the other stack runs in this state folder, a port is taken, or a program
            did not become ready (the message has the tail of its log).
    """
    state_dir = state_dir.resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    kind, other = ("cluster", "local") if cluster else ("local", "cluster")
    if Supervisor(state_dir, other).running():
        raise StackError(
            f"the {other} stack runs in {state_dir}: stop it first (`make down`) or use another "
            "STATE_DIR"
        )
    supervisor = Supervisor(state_dir, kind)
    if supervisor.running():
        print(f"the {kind} stack already runs (supervisorctl -c {supervisor.conf} status)")
        return read_stack_file(state_dir) or {"stack": kind}
    environ = dict(os.environ if environ is None else environ)
    try:
        if cluster:
            from stack.cluster import cluster_up  # noqa: PLC0415

            info = cluster_up(supervisor, environ, demo=demo)
        else:
            info = local_up(
                supervisor,
                environ,
                prefect_port,
                mlflow_port,
                api_port=api_port,
                publisher_port=publisher_port,
                demo=demo,
            )
        info["supervisord_conf"] = str(supervisor.conf)
        info["logs"] = str(supervisor.log_dir)
        info["processes"] = {p["name"]: int(p["pid"]) for p in supervisor.processes()}
        _write_stack_file(state_dir, info)
    except BaseException as exc:
        if supervisor.running():
            supervisor.shutdown()
        if isinstance(exc, (SupervisorError, RuntimeError, TimeoutError)):
            raise StackError(str(exc)) from exc
        raise
    return info


def stack_down(state_dir: Path) -> list[str]:
    """Shut down every stack running in ``state_dir``; return the programs that were stopped."""
    state_dir = state_dir.resolve()
    stopped = []
    for kind in STACKS:
        supervisor = Supervisor(state_dir, kind)
        if not supervisor.running():
            continue
        names = [str(p["name"]) for p in supervisor.processes() if int(p["pid"]) > 0]
        left = supervisor.shutdown()
        for name in names:
            print(f"{kind}: {name} stopped")
        if left:
            print(f"{kind}: killed what outlived supervisord: {', '.join(left)}")
        stopped += names
    (state_dir / STACK_FILE).unlink(missing_ok=True)
    return stopped


def stack_status(state_dir: Path) -> int:
    """Print every program of the running stack; 0 if all run, 1 if not, 3 if none is up."""
    state_dir = state_dir.resolve()
    for kind in STACKS:
        supervisor = Supervisor(state_dir, kind)
        if not supervisor.running():
            continue
        processes = supervisor.processes()
        print(f"{kind} stack (supervisorctl -c {supervisor.conf} status):")
        for info in processes:
            print(f"  {info['name']:18} {info['statename']:9} {info['description']}")
        print(_summary(read_stack_file(state_dir) or {}))
        return 0 if all(p["statename"] == "RUNNING" for p in processes) else 1
    print(f"no stack runs in {state_dir} (start one with `make up`)")
    return 3


def _summary(info: Mapping[str, object]) -> str:
    urls = {key: value for key, value in info.items() if key.endswith(("_url", "_uri", "address"))}
    lines = [f"  {key:22} {value}" for key, value in urls.items()]
    env = info.get("env")
    if isinstance(env, dict):
        lines += ["", "# the stack's environment, for milkprice and prefect commands:"]
        lines += [f"export {key}={value}" for key, value in env.items()]
    return "\n".join(lines)


# --- command line ------------------------------------------------------------------------------

stack_app = typer.Typer(
    name="stack",
    help="Start, inspect and stop the background stack (supervisord; `make up` / `make down`).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
StateDirOption = Annotated[
    Path, typer.Option("--state-dir", envvar="STATE_DIR", help="State folder (logs, config).")
]


@stack_app.command("up")
def up_command(
    state_dir: StateDirOption = Path(".state"),
    *,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="PostgreSQL, S3, Prefect and MLflow servers, Dask and two Prefect workers.",
        ),
    ] = False,
    prefect_port: Annotated[
        int, typer.Option(envvar="PREFECT_PORT", help="Local stack: Prefect server port.")
    ] = 4200,
    mlflow_port: Annotated[
        int, typer.Option(envvar="MLFLOW_PORT", help="Local stack: MLflow UI port.")
    ] = 5000,
    api_port: Annotated[
        int, typer.Option(envvar="API_PORT", help="Local stack: prediction API and explorer port.")
    ] = 8000,
    publisher_port: Annotated[
        int,
        typer.Option(envvar="PUBLISHER_PORT", help="Local stack: the demo publisher's port."),
    ] = 8010,
    demo: Annotated[
        bool, typer.Option("--demo/--no-demo", help="Fill an empty lake with the demo data.")
    ] = True,
) -> None:
    """Start the stack in the background and wait until every program answers."""
    try:
        info = stack_up(
            state_dir,
            cluster=cluster,
            prefect_port=prefect_port,
            mlflow_port=mlflow_port,
            api_port=api_port,
            publisher_port=publisher_port,
            demo=demo,
        )
    except StackError as exc:
        print(f"error: stack up: {exc}", file=sys.stderr)
        raise typer.Exit(1) from None
    print(f"\nThe {info['stack']} stack is up:\n{_summary(info)}")
    print(
        f"\nlogs: {state_dir}/logs/  -  `milkprice stack status`, "
        f"`supervisorctl -c {info.get('supervisord_conf')} status`  -  stop with `make down`"
    )


@stack_app.command("down")
def down_command(state_dir: StateDirOption = Path(".state")) -> None:
    """Stop exactly what `up` started (supervisord and every program it runs)."""
    if not stack_down(state_dir):
        print(f"nothing of the stack was running (state folder {state_dir})")


@stack_app.command("status")
def status_command(state_dir: StateDirOption = Path(".state")) -> None:
    """Show each program's state and the stack's URLs (exit 3 when no stack runs)."""
    raise typer.Exit(stack_status(state_dir))


def main(argv: list[str] | None = None) -> int:
    """``python -m stack up|down|status [--cluster]``; returns the exit status."""
    try:
        stack_app(args=argv)
    except SystemExit as exc:  # click always ends with it in standalone mode
        return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The local stack of ``make up``: Prefect server, MLflow UI, ``milkprice serve`` and the API.

With the demo (the default) it also runs the demo publisher (``milkprice data publish-demo``,
``PUBLISHER_PORT``) and points the served flows' ``MILKPRICE_SNIIM_URL_TEMPLATE`` at it, then
starts one ``ingest-sniim`` run: the demo lake ends with the previous month, the publisher has
this month's publications, so the loop runs by itself on a fresh machine (fetch, month closed,
training, forecast). Everything on 127.0.0.1; :mod:`stack.control` starts it under one
supervisord and records what :func:`local_up` returns in ``stack.json``.
"""

from __future__ import annotations

import socket
import sys
import urllib.parse
from collections.abc import Mapping
from pathlib import Path

from milkprice.settings import SNIIM_LECHE_URL_TEMPLATE
from stack.ready import deployment_polled, http_ok
from stack.supervisor import Program, Supervisor, run_step, wait_until

__all__ = ["StackError", "local_up"]

_HOST = "127.0.0.1"
_BIN = Path(sys.executable).parent
_START_TIMEOUT_S = 240.0
# orchestration.names.TRAIN_DEPLOYMENT (stack/ cannot import it; tests/test_layout.py holds the two equal)
_SERVE_DEPLOYMENT = "milk-price-training/train-milk-model"
# orchestration.names.INGEST_DEPLOYMENT (held equal by tests/test_layout.py as well)
_INGEST_DEPLOYMENT = "milk-price-ingest/ingest-sniim"


class StackError(RuntimeError):
    """A stack could not start; the message names the program and its log."""


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex((_HOST, port)) != 0


def local_up(
    supervisor: Supervisor,
    environ: Mapping[str, str],
    prefect_port: int,
    mlflow_port: int,
    *,
    api_port: int,
    publisher_port: int,
    demo: bool,
) -> dict[str, object]:
    """Prefect server + MLflow UI (+ demo lake and publisher), then ``serve`` and the API."""
    api_url = f"http://{_HOST}:{prefect_port}/api"
    predict_url = f"http://{_HOST}:{api_port}"
    mlflow_url = f"http://{_HOST}:{mlflow_port}"
    tracking_uri = environ.get("MLFLOW_TRACKING_URI", "sqlite:///mlflow.db")
    with_mlflow = not tracking_uri.startswith(("http://", "https://"))  # else a server exists
    publisher_url = f"http://{_HOST}:{publisher_port}"
    ports = (
        ("PREFECT_PORT", prefect_port, True),
        ("MLFLOW_PORT", mlflow_port, with_mlflow),
        ("API_PORT", api_port, True),
        ("PUBLISHER_PORT", publisher_port, demo),
    )
    for name, port, used in ports:
        if used and not _port_free(port):
            raise StackError(
                f"port {port} on {_HOST} is already in use; stop what uses it or choose "
                f"another port ({name}=...)"
            )
    serve_env = {
        "PREFECT_API_URL": api_url,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MILKPRICE_MLFLOW_UI_URL": environ.get("MILKPRICE_MLFLOW_UI_URL", mlflow_url),
    }
    if demo:  # the demo publisher's files, under SNIIM's own paths
        path = urllib.parse.urlsplit(SNIIM_LECHE_URL_TEMPLATE).path
        serve_env["MILKPRICE_SNIIM_URL_TEMPLATE"] = f"{publisher_url}{path}"
    programs = [
        Program(
            "prefect",
            [str(_BIN / "prefect"), "server", "start"],
            {
                "PREFECT_HOME": str(supervisor.state_dir / "prefect"),
                "PREFECT_SERVER_API_HOST": _HOST,
                "PREFECT_SERVER_API_PORT": str(prefect_port),
                "PREFECT_API_URL": api_url,
            },
            priority=10,
        ),
        Program(
            "serve",
            [sys.executable, "-m", "milkprice_cli", "serve"],
            serve_env,
            priority=30,
        ),
        # Loopback only: the API refuses a wider bind without MILKPRICE_API_ADMIN_TOKEN. It
        # answers /livez at once and serves the champion as soon as the registry has one.
        Program(
            "api",
            [
                sys.executable,
                "-m",
                "milkprice_cli",
                "api",
                "--host",
                _HOST,
                "--port",
                str(api_port),
            ],
            {"MLFLOW_TRACKING_URI": tracking_uri},
            priority=30,
        ),
    ]
    checks = {"prefect": http_ok(f"{api_url}/health")}
    if with_mlflow:
        programs.append(
            Program(
                "mlflow",
                [
                    *(str(_BIN / "mlflow"), "server", "--backend-store-uri", tracking_uri),
                    *("--host", _HOST, "--port", str(mlflow_port), "--workers", "1"),
                ],
                # MLflow's background job runner (a handful of huey workers) is not used here.
                {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
                priority=10,
            )
        )
        checks["mlflow"] = http_ok(f"{mlflow_url}/health")
    if demo:
        publish = ["data", "publish-demo", "--host", _HOST, "--port", str(publisher_port)]
        programs.append(
            Program("publisher", [sys.executable, "-m", "milkprice_cli", *publish], {}, priority=20)
        )
        checks["publisher"] = http_ok(f"{publisher_url}/")
    supervisor.write_config(programs, Path.cwd())
    supervisor.start_daemon({**environ, "PYTHONUNBUFFERED": "1"})
    supervisor.start(*checks)
    if demo:  # the served flow needs data to train on
        command = [sys.executable, "-m", "milkprice_cli", "data", "demo", "--if-empty"]
        print(f"demo lake: {' '.join(run_step(supervisor, 'demo', command, environ).split())}")
    wait_until(supervisor, checks, _START_TIMEOUT_S)
    supervisor.start("serve", "api")
    since = float(supervisor.rpc().supervisor.getProcessInfo("serve")["start"])
    wait_until(
        supervisor,
        {
            "serve": deployment_polled(api_url, _SERVE_DEPLOYMENT, since),
            "api": http_ok(f"{predict_url}/livez"),
        },
        _START_TIMEOUT_S,
    )
    if demo:  # fetch what the publisher has now rather than at the next scheduled time
        kick = [str(_BIN / "prefect"), "deployment", "run", _INGEST_DEPLOYMENT]
        run_step(supervisor, "ingest-kick", kick, {**environ, "PREFECT_API_URL": api_url})
    info: dict[str, object] = {
        "stack": "local",
        "prefect_api_url": api_url,
        "prefect_ui_url": f"http://{_HOST}:{prefect_port}",
        "mlflow_tracking_uri": tracking_uri,
        "mlflow_url": mlflow_url if with_mlflow else tracking_uri,
        "serve_deployments_url": f"http://{_HOST}:{prefect_port}/deployments",
        "api_url": predict_url,
        "explorer_url": f"{predict_url}/",
        "env": {"PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": tracking_uri},
    }
    if demo:
        info["publisher_url"] = f"{publisher_url}/"
    return info

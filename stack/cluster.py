"""The cluster stack (``milkprice stack up --cluster``, ``make up STACK=cluster``) on loopback.

Programs under supervisord, each on a free 127.0.0.1 port chosen at ``up``:

- ``postgres``: a private PostgreSQL cluster (``initdb`` in ``<state>/cluster/postgres``, run as
  the ``postgres`` OS user when we are root) with the databases ``prefect`` and ``mlflow``;
- ``s3``: a moto S3 server with the lake bucket (``S3_BUCKET``) and ``milkprice-artifacts``;
- ``prefect-server`` on PostgreSQL (``PREFECT_SERVER_DATABASE_CONNECTION_URL``, asyncpg);
- ``mlflow``: tracking and registry on PostgreSQL (``mlflow db upgrade`` first), artifacts in
  ``s3://milkprice-artifacts/mlflow`` through the server (``--artifacts-destination``): clients
  upload to and download from the MLflow server, so only the server needs the S3 endpoint and
  keys, and a worker on another machine needs nothing but ``MLFLOW_TRACKING_URI``;
- ``dask-scheduler`` and ``dask-worker-1/2`` (one process, one thread each);
- ``prefect-worker-1/2``: ``prefect worker start --type process`` on the work pool
  (``MILKPRICE_WORK_POOL``, default ``milkprice-pool``) after ``milkprice deploy --pool``. Each
  takes one flow run at a time (``--limit 1``), so runs spread over both workers.

moto keeps its buckets in memory: the lake and the artifacts live as long as the stack, so every
``up`` starts from fresh stores (the PostgreSQL folder is made anew) to keep the registry and the
artifacts consistent. With ``demo`` the lake is filled with the demo data.
"""

from __future__ import annotations

import shutil
import socket
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from milkprice.settings import get_settings
from stack.ready import (
    dask_workers,
    http_ok,
    pool_workers_online,
    postgres_ready,
)
from stack.supervisor import Program, Supervisor, run_step, wait_until

__all__ = ["ARTIFACTS_BUCKET", "PREFECT_WORKERS", "ClusterPorts", "cluster_up"]

ARTIFACTS_BUCKET = "milkprice-artifacts"
PREFECT_WORKERS = ("worker-1", "worker-2")
DASK_WORKERS = 2
_HOST = "127.0.0.1"
_BIN = Path(sys.executable).parent
_READY_TIMEOUT_S = 240.0
# moto accepts any keys; these are the documented test values, never real credentials.
_DUMMY_KEYS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind((_HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ClusterPorts:
    """The loopback ports of one cluster stack."""

    postgres: int
    s3: int
    prefect: int
    mlflow: int
    dask: int
    dask_http: int  # /health; the dashboard pages too when bokeh is installed

    @classmethod
    def choose(cls) -> ClusterPorts:
        """Free ports, distinct from each other."""
        ports: list[int] = []
        while len(ports) < len(cls.__dataclass_fields__):
            if (port := _free_port()) not in ports:
                ports.append(port)
        return cls(*ports)


def _mlflow_db(ports: ClusterPorts) -> str:
    """MLflow's store URL, with the psycopg2 driver named.

    SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3, which is not installed.
    """
    from stack.postgres import url  # noqa: PLC0415

    return url(ports.postgres, "mlflow", "postgresql+psycopg2")


def client_env(ports: ClusterPorts, bucket: str, pool: str) -> dict[str, str]:
    """What a program or user needs to use the cluster (workers, ``milkprice`` commands)."""
    s3 = f"http://{_HOST}:{ports.s3}"
    mlflow = f"http://{_HOST}:{ports.mlflow}"
    return {
        "PREFECT_API_URL": f"http://{_HOST}:{ports.prefect}/api",
        "MLFLOW_TRACKING_URI": mlflow,
        "MILKPRICE_MLFLOW_UI_URL": mlflow,
        "MLFLOW_S3_ENDPOINT_URL": s3,
        "AWS_ENDPOINT_URL": s3,
        **_DUMMY_KEYS,
        "MILKPRICE_SOURCE": "s3",
        "S3_BUCKET": bucket,
        "MILKPRICE_DASK_ADDRESS": f"tcp://{_HOST}:{ports.dask}",
        "MILKPRICE_WORK_POOL": pool,
    }


def _programs(
    supervisor: Supervisor, ports: ClusterPorts, env: Mapping[str, str], pg_dirs: tuple[Path, Path]
) -> list[Program]:
    from stack import postgres  # noqa: PLC0415 - psycopg2, the [cluster] extra

    data_dir, socket_dir = pg_dirs
    home = supervisor.state_dir / "cluster"
    prefect, dask = str(_BIN / "prefect"), str(_BIN / "dask")
    scheduler = env["MILKPRICE_DASK_ADDRESS"]
    programs = [
        Program(
            "postgres",
            postgres.server_command(data_dir, ports.postgres, socket_dir),
            priority=10,
            user=postgres.pg_os_user(),
            stopsignal="INT",  # "fast" shutdown; TERM waits for every client to disconnect
            stopwaitsecs=60,
            directory=data_dir.parent,
        ),
        Program(
            "s3",
            [str(_BIN / "moto_server"), "-H", _HOST, "-p", str(ports.s3)],
            _DUMMY_KEYS,
            priority=10,
        ),
        Program(
            "prefect-server",
            [prefect, "server", "start"],
            {
                "PREFECT_HOME": str(home / "prefect-server"),
                "PREFECT_SERVER_API_HOST": _HOST,
                "PREFECT_SERVER_API_PORT": str(ports.prefect),
                "PREFECT_API_URL": env["PREFECT_API_URL"],
                "PREFECT_SERVER_DATABASE_CONNECTION_URL": postgres.url(
                    ports.postgres, "prefect", "postgresql+asyncpg"
                ),
            },
            priority=20,
        ),
        Program(
            "mlflow",
            [
                *(str(_BIN / "mlflow"), "server", "--host", _HOST, "--port", str(ports.mlflow)),
                *("--backend-store-uri", _mlflow_db(ports)),
                *("--artifacts-destination", f"s3://{ARTIFACTS_BUCKET}/mlflow"),
                *("--workers", "1"),
            ],
            {
                "MLFLOW_S3_ENDPOINT_URL": env["MLFLOW_S3_ENDPOINT_URL"],
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
                **_DUMMY_KEYS,
            },
            priority=20,
        ),
        Program(
            "dask-scheduler",
            [
                *(dask, "scheduler", "--host", _HOST, "--port", str(ports.dask)),
                *("--dashboard-address", f"{_HOST}:{ports.dask_http}"),
            ],
            priority=20,
        ),
    ]
    for index in range(1, DASK_WORKERS + 1):
        space = home / f"dask-worker-{index}"
        space.mkdir(parents=True, exist_ok=True)
        programs.append(
            Program(
                f"dask-worker-{index}",
                [
                    *(dask, "worker", scheduler, "--nworkers", "1", "--nthreads", "1"),
                    *("--host", _HOST, "--no-dashboard", "--name", f"dask-worker-{index}"),
                    *("--local-directory", str(space)),
                ],
                env,  # tasks read the lake on S3 and log to MLflow like a flow run
                priority=30,
            )
        )
    for name in PREFECT_WORKERS:
        programs.append(
            Program(
                f"prefect-{name}",
                [
                    *(prefect, "worker", "start", "--pool", env["MILKPRICE_WORK_POOL"]),
                    *("--name", name, "--type", "process", "--limit", "1"),
                ],
                {**env, "PREFECT_HOME": str(home / f"prefect-{name}")},
                priority=40,
            )
        )
    return programs


def _create_buckets(env: Mapping[str, str]) -> None:
    import boto3  # noqa: PLC0415 - a dependency of s3fs/moto

    client = boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    )
    existing = {bucket["Name"] for bucket in client.list_buckets().get("Buckets", [])}
    for bucket in (env["S3_BUCKET"], ARTIFACTS_BUCKET):
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)


def cluster_up(
    supervisor: Supervisor, environ: Mapping[str, str], *, demo: bool = True
) -> dict[str, object]:
    """Start the cluster stack in order, each step once the ones it needs are ready.

    Returns the stack's description for ``stack.json``: URLs, ports and the environment a user
    (or another machine's worker) needs. The caller shuts supervisord down on failure.
    """
    from stack import postgres  # noqa: PLC0415

    settings = get_settings()
    ports = ClusterPorts.choose()
    env = client_env(ports, settings.s3_bucket, settings.work_pool)
    base = supervisor.state_dir / "cluster"
    shutil.rmtree(base, ignore_errors=True)  # fresh stores: moto's buckets start empty too
    base.mkdir(parents=True)
    postgres.ensure_postgresql()
    pg_root = postgres.owned_dir(base / "postgres")
    data_dir, socket_dir = pg_root / "data", postgres.owned_dir(pg_root / "socket")
    postgres.init_cluster(data_dir)
    programs = _programs(supervisor, ports, env, (data_dir, socket_dir))
    supervisor.write_config(programs, Path.cwd())
    supervisor.start_daemon({**environ, "PYTHONUNBUFFERED": "1"})
    step_env = {**environ, **env}

    supervisor.start("postgres", "s3", "dask-scheduler")
    wait_until(
        supervisor,
        {
            "postgres": postgres_ready(ports.postgres),
            "s3": http_ok(env["AWS_ENDPOINT_URL"]),
            "dask-scheduler": http_ok(f"http://{_HOST}:{ports.dask_http}/health"),
        },
        _READY_TIMEOUT_S,
    )
    for database in ("prefect", "mlflow"):
        postgres.create_database(ports.postgres, database)
    supervisor.start("prefect-server", *(f"dask-worker-{i}" for i in range(1, DASK_WORKERS + 1)))
    _create_buckets(env)
    mlflow_db = _mlflow_db(ports)
    run_step(
        supervisor, "mlflow-db-upgrade", [str(_BIN / "mlflow"), "db", "upgrade", mlflow_db], environ
    )
    supervisor.start("mlflow")
    if demo:
        command = [sys.executable, "-m", "milkprice_cli", "data", "demo", "--if-empty"]
        print(f"demo lake: {' '.join(run_step(supervisor, 'demo', command, step_env).split())}")
    wait_until(
        supervisor,
        {
            "prefect-server": http_ok(f"{env['PREFECT_API_URL']}/health"),
            "mlflow": http_ok(f"{env['MLFLOW_TRACKING_URI']}/health"),
            "dask-worker-1": dask_workers(env["MILKPRICE_DASK_ADDRESS"], DASK_WORKERS),
        },
        _READY_TIMEOUT_S,
        watch=[f"dask-worker-{i}" for i in range(1, DASK_WORKERS + 1)],
    )
    pool = env["MILKPRICE_WORK_POOL"]
    deploy = [sys.executable, "-m", "milkprice_cli", "deploy", "--pool", pool]
    run_step(supervisor, "deploy", deploy, step_env)
    workers = [f"prefect-{name}" for name in PREFECT_WORKERS]
    supervisor.start(*workers)
    wait_until(
        supervisor,
        {workers[0]: pool_workers_online(env["PREFECT_API_URL"], pool, set(PREFECT_WORKERS))},
        _READY_TIMEOUT_S,
        watch=workers,
    )
    return {
        "stack": "cluster",
        "prefect_api_url": env["PREFECT_API_URL"],
        "prefect_ui_url": f"http://{_HOST}:{ports.prefect}",
        "mlflow_tracking_uri": env["MLFLOW_TRACKING_URI"],
        "mlflow_url": env["MLFLOW_TRACKING_URI"],
        "s3_endpoint_url": env["AWS_ENDPOINT_URL"],
        "lake_uri": f"s3://{settings.s3_bucket}",
        "artifacts_uri": f"s3://{ARTIFACTS_BUCKET}/mlflow",
        "postgres_url": f"postgresql://postgres@{_HOST}:{ports.postgres}/postgres",
        "dask_address": env["MILKPRICE_DASK_ADDRESS"],
        "dask_http_url": f"http://{_HOST}:{ports.dask_http}",
        "work_pool": pool,
        "workers": list(PREFECT_WORKERS),
        "ports": asdict(ports),
        "env": env,
    }

"""Shared fixtures: a real S3 endpoint on loopback (moto server mode), lakes, real data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    retry_if_result,
    stop_after_delay,
    wait_fixed,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Fixture modules of their own (tests/fixtures_*.py): PostgreSQL, Dask, browser, real data.
pytest_plugins = ["fixtures_postgres", "fixtures_dask", "fixtures_browser", "fixtures_realdata"]

# Nothing but loopback: no usage telemetry from Prefect or MLflow in tests or their children.
for _key, _value in {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # As the Makefile: on a loaded machine Prefect's temporary server needs more than its 20 s.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}.items():
    os.environ.setdefault(_key, _value)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_http(url: str, timeout_s: float = 30.0) -> None:
    """Poll ``url`` until it answers (any HTTP status) or fail after ``timeout_s``."""

    def answer() -> None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                pass
        except urllib.error.HTTPError:
            return  # an error status is an answer: the server is up

    # Refused or reset connections (OSError) are asked again until the timeout.
    answering = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.2),
        retry=retry_if_exception_type(OSError),
    )
    try:
        answering(answer)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise TimeoutError(f"{url} did not answer within {timeout_s}s: {last}") from None


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server (server mode, a real HTTP endpoint) on a free loopback port."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(url)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Environment pointing milkprice at the moto endpoint, with a fresh empty bucket."""
    import boto3

    bucket = f"milk-{time.time_ns()}"
    values = {
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_BUCKET": bucket,
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(
        Bucket=bucket
    )
    return values


@pytest.fixture
def s3_lake(s3_env: dict[str, str]):
    """A lake on the moto S3 endpoint, built from settings exactly as users' code does."""
    from milkprice.data.lake import Lake
    from milkprice.settings import get_settings

    return Lake.from_settings(get_settings(), "s3")


@pytest.fixture
def local_lake(tmp_path: Path):
    """An empty local lake in a temporary folder."""
    from milkprice.data.lake import Lake

    return Lake(str(tmp_path / "datalake"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real SNIIM data (``MILKPRICE_REAL_DATA``, default ``../shared/data/sniim``).

    Missing data skips the real-data tests with one line saying where to put it, except under
    CI (``CI`` truthy) or with ``MILKPRICE_REQUIRE_REAL_DATA=1``, where it is a failure.
    """
    path = Path(
        os.environ.get("MILKPRICE_REAL_DATA", REPO_ROOT.parent / "shared" / "data" / "sniim")
    )
    if not (path / "monthly").is_dir():
        message = (
            f"real SNIIM data not found at {path}: put the real lake (its monthly/ folder) "
            "there, or set MILKPRICE_REAL_DATA to the folder that holds monthly/"
        )
        required = [
            name
            for name in ("CI", "MILKPRICE_REQUIRE_REAL_DATA")
            if os.environ.get(name, "").strip().lower() not in {"", "0", "false", "no", "off"}
        ]
        if required:
            given = ", ".join(f"{name}={os.environ[name]}" for name in required)
            pytest.fail(f"{message} (required: {given})")
        pytest.skip(message)
    return path


@pytest.fixture(scope="session")
def mlflow_db_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty MLflow SQLite store, migrated once (alembic takes ~8 s per new database)."""
    from mlflow import MlflowClient

    path = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def mlflow_uri(mlflow_db_template: Path, tmp_path: Path) -> str:
    """A fresh, empty MLflow tracking store (SQLite) for one test, copied from the template."""
    import shutil

    path = tmp_path / "mlflow.db"
    shutil.copyfile(mlflow_db_template, path)
    return f"sqlite:///{path}"


def stop_process_group(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    """SIGTERM the process group of ``process`` (started with start_new_session), then SIGKILL."""
    import contextlib
    import signal

    for sig, grace in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=grace)
            break
        except subprocess.TimeoutExpired:
            continue
    # Children of the group outlive their leader for a moment; make sure none is left.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One real ``prefect server start`` (SQLite in a tmp PREFECT_HOME) on a free loopback port.

    Yields its ``PREFECT_API_URL``. Shared by the serve, backfill and deployment tests: a
    server takes a while to boot, so the session starts one; its process group is stopped at
    the end.
    """
    port = free_port()
    home = tmp_path_factory.mktemp("prefect-home")
    url = f"http://127.0.0.1:{port}/api"
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_API_HOST": "127.0.0.1",
        "PREFECT_SERVER_API_PORT": str(port),
        "PREFECT_API_URL": url,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        # A run waiting for a deployment's concurrency slot retries after this (default 30 s,
        # seen as ~75 s here); the tests that wait on the limit need not idle that long.
        "PREFECT_SERVER_DEPLOYMENTS_CONCURRENCY_SLOT_WAIT_SECONDS": "5",
    }
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "prefect"), "server", "start"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_http(f"{url}/health", timeout_s=240)
        _SESSION_PREFECT_API.append(url)
        yield url
    finally:
        _SESSION_PREFECT_API.clear()
        stop_process_group(process)
        log.close()


_SESSION_PREFECT_API: list[str] = []  # the session server's URL once it runs


@pytest.fixture(scope="module", autouse=True)
def _clean_prefect_server_after_module() -> Iterator[None]:
    """Leave the session's Prefect server as a new module expects it: no deployments, no runs
    waiting.

    A module's served deployments outlive its `milkprice serve`: their schedules keep adding
    runs and their event triggers keep creating forecast runs, which the next module's serve
    would pick up all at once beside its own. Deleting the deployments removes their schedules,
    triggers and scheduled runs; runs still waiting are deleted too.
    """
    yield
    if not _SESSION_PREFECT_API:
        return
    import urllib3

    api = _SESSION_PREFECT_API[0]
    for deployment in http_json(f"{api}/deployments/filter", {}):  # type: ignore[union-attr]
        urllib3.request("DELETE", f"{api}/deployments/{deployment['id']}", timeout=30)
    waiting = {"flow_runs": {"state": {"type": {"any_": ["SCHEDULED", "PENDING"]}}}}
    for run in http_json(f"{api}/flow_runs/filter", waiting):  # type: ignore[union-attr]
        urllib3.request("DELETE", f"{api}/flow_runs/{run['id']}", timeout=30)


class HTTPStatusError(OSError):
    """An HTTP answer with an error status (an OSError, like urllib's HTTPError)."""

    def __init__(self, url: str, status: int, body: bytes) -> None:
        super().__init__(f"{url} answered {status}: {body[:500]!r}")
        self.status = status


def http_json(url: str, body: object | None = None) -> object:
    """GET ``url`` (POST ``body`` as JSON when given) and decode the JSON answer.

    A loaded 2-core machine makes the Prefect server answer 503 now and then (its SQLite
    database busy): urllib3's Retry repeats those requests, with backoff, before giving up;
    any other error status raises :class:`HTTPStatusError` at once.
    """
    import json

    import urllib3

    retries = urllib3.Retry(
        total=6, status_forcelist=[502, 503, 504], allowed_methods=None, backoff_factor=0.5
    )
    response = urllib3.request(
        "GET" if body is None else "POST",
        url,
        body=None if body is None else json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        timeout=10,
        retries=retries,
    )
    if response.status >= 400:
        raise HTTPStatusError(url, response.status, response.data)
    return json.loads(response.data)


_FINAL_STATES = frozenset({"COMPLETED", "FAILED", "CRASHED", "CANCELLED"})


def _is_none(value: object) -> bool:
    return value is None


def wait_deployment_polled(api_url: str, name: str, since: float, timeout_s: float = 240) -> dict:
    """Wait until a serving process has polled deployment ``name`` after ``since`` (epoch s)."""
    from datetime import datetime

    def polled_deployment() -> dict | None:
        """The deployment once it is READY and polled after ``since``; else None."""
        try:
            found = http_json(f"{api_url}/deployments/name/{name}")
        except OSError:
            return None  # not created yet (404) or the server is busy: ask again
        if isinstance(found, dict) and found.get("last_polled"):
            polled = datetime.fromisoformat(found["last_polled"].replace("Z", "+00:00"))
            if polled.timestamp() >= since and found.get("status") == "READY":
                return found
        return None

    waiting = Retrying(
        stop=stop_after_delay(timeout_s), wait=wait_fixed(1), retry=retry_if_result(_is_none)
    )
    try:
        return waiting(polled_deployment)
    except RetryError:
        raise TimeoutError(f"deployment {name} was not served within {timeout_s}s") from None


def wait_flow_run_final(api_url: str, flow_run_id: str, timeout_s: float = 900) -> dict:
    """Poll a flow run until its state is final; return the flow run."""

    def final_run() -> dict | None:
        """The flow run once its state is final; else None (an HTTP error ends the wait)."""
        run = http_json(f"{api_url}/flow_runs/{flow_run_id}")
        state = run.get("state") or {}
        return run if state.get("type") in _FINAL_STATES else None

    waiting = Retrying(
        stop=stop_after_delay(timeout_s), wait=wait_fixed(2), retry=retry_if_result(_is_none)
    )
    try:
        return waiting(final_run)
    except RetryError:
        raise TimeoutError(f"flow run {flow_run_id} did not finish within {timeout_s}s") from None


def training_env(
    root: Path, api_url: str | None, first: str = "2024-01", last: str = "2025-03"
) -> dict[str, str]:
    """Environment of a tiny training setup under ``root``: a seeded demo lake of
    ``first..last`` (15 months by default), an SQLite MLflow store, the
    forecaster's fixed settings (the product default; tuning has tests of its own)."""
    from milkprice.data.demo import write_demo_lake
    from milkprice.data.lake import Lake
    from milkprice.months import Month

    lake = root / "lake"
    write_demo_lake(Lake(str(lake)), Month.parse(first), Month.parse(last), 0)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MILKPRICE_", "MLFLOW_"))
    }
    env.update(
        {
            "MILKPRICE_DATA_ROOT": str(lake),
            "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
            "MILKPRICE_N_TRIALS": "0",
            "PREFECT_HOME": str(root / "prefect-home"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            # A serving process looks for runs to start every 10 s by default; tests wait less.
            "PREFECT_RUNNER_POLL_FREQUENCY": "2",
        }
    )
    if api_url:
        env["PREFECT_API_URL"] = api_url
    return env


def start_background(
    command: list[str], env: dict[str, str], cwd: Path, log: Path
) -> subprocess.Popen:
    """Start ``command`` in its own process group, output to ``log`` (stop_process_group ends it)."""
    with log.open("wb") as sink:
        return subprocess.Popen(
            command, env=env, cwd=cwd, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )


def flow_run_artifacts(flow_run_id: object, key: str) -> list:
    """The artifacts with ``key`` that one flow run created (read through the Prefect client)."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    key=ArtifactFilterKey(any_=[key]),
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                )
            )

    return asyncio.run(read())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with the most end-to-end tests first, each module's tests in their own order.

    pytest-xdist (``--dist loadfile``) hands whole modules to workers in collection order: the
    long end-to-end modules start at once instead of being left for the end, when one worker
    would run them while the others idle. A plain run only changes the order of modules.
    """
    weight: dict[str, int] = {}
    for item in items:
        heavy = item.get_closest_marker("e2e") is not None
        weight[item.nodeid.split("::")[0]] = weight.get(item.nodeid.split("::")[0], 0) + heavy
    items.sort(key=lambda item: -weight[item.nodeid.split("::")[0]])

"""Fault: the S3 endpoint stops in the middle of a ``source="s3"`` training run.

The test starts its own moto server (not the session's ``s3_endpoint``: this one gets killed)
with moto's request recorder on, seeds a bucket with a demo lake, and runs the training flow
in this process against the session's real Prefect server. A hook on ``Lake.read_bytes`` stops
the endpoint right after the first partition of the window has been read: the bucket probe and
one GET have succeeded, every read after that meets a dead endpoint. That is deterministic (no
sleeps) and it is the worst moment for a reader: part of the window is in memory.

moto keeps its state in memory, so the endpoint is brought back on the same port and moto's own
recorder replays every request it received (the seeding PUTs, and anything the failed run might
have written): if the failed run had written an object, the restored bucket would show it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config
from conftest import free_port, stop_process_group, wait_for_http
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.months import Month

pytestmark = pytest.mark.e2e

BUCKET = "milk-faults"
FIRST, LAST, VALIDATION = Month(2024, 2), Month(2025, 3), Month(2025, 3)
MODEL = "milk-price-model"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}


class MotoServer:
    """A moto S3 server on a fixed loopback port that records every request it receives."""

    def __init__(self, port: int, recording: Path, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.recording = recording
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        env = {
            **os.environ,
            **CREDENTIALS,
            "MOTO_ENABLE_RECORDING": "true",
            "MOTO_RECORDER_FILEPATH": str(self.recording),
        }
        with self.log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                env=env,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_for_http(self.url, timeout_s=60)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            stop_process_group(self.process)
        self.process = None
        # Stopped means stopped: nothing accepts connections on the port any more.
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", self.port)) != 0

    def replay(self) -> None:
        """Rebuild the in-memory state from the recording (moto's own persistence)."""
        request = f"{self.url}/moto-api/recorder/replay-recording"
        import urllib.request

        with urllib.request.urlopen(urllib.request.Request(request, method="POST"), timeout=120):
            pass


@pytest.fixture
def moto(tmp_path: Path) -> Iterator[MotoServer]:
    server = MotoServer(free_port(), tmp_path / "moto-recording.jsonl", tmp_path / "moto.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _s3(url: str):
    # No retries: a snapshot must see the endpoint as it is.
    config = Config(retries={"total_max_attempts": 1}, connect_timeout=5)
    return boto3.client("s3", endpoint_url=url, region_name="us-east-1", config=config)


def lake_snapshot(url: str) -> dict[str, str]:
    """Every object of the bucket: key -> sha256 of its bytes."""
    client = _s3(url)
    found = client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
    return {
        item["Key"]: hashlib.sha256(
            client.get_object(Bucket=BUCKET, Key=item["Key"])["Body"].read()
        ).hexdigest()
        for item in found
    }


def registry_snapshot(tracking_uri: str) -> dict[str, object]:
    """Experiments, runs (status and tags), versions (tags) and the champion of the store."""
    client = MlflowClient(tracking_uri)
    experiments = client.search_experiments()
    runs = client.search_runs([e.experiment_id for e in experiments]) if experiments else []
    versions = client.search_model_versions(f"name = '{MODEL}'")
    try:
        champion = client.get_model_version_by_alias(MODEL, "champion").version
    except MlflowException:
        champion = None
    return {
        "experiments": sorted(e.name for e in experiments),
        "runs": sorted((r.info.run_id, r.info.status, sorted(r.data.tags.items())) for r in runs),
        "versions": sorted((str(v.version), v.run_id, sorted(v.tags.items())) for v in versions),
        "champion": champion,
    }


@pytest.fixture
def s3_training(moto: MotoServer, mlflow_uri: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The flow's settings point at the moto bucket, seeded with 14 demo months."""
    values = {
        **CREDENTIALS,
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_BUCKET": BUCKET,
        "MLFLOW_TRACKING_URI": mlflow_uri,
        "MILKPRICE_N_TRIALS": "0",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MILKPRICE_S3_PREFIX", raising=False)
    _s3(moto.url).create_bucket(Bucket=BUCKET)
    write_demo_lake(Lake(f"s3://{BUCKET}", {"endpoint_url": moto.url}), FIRST, LAST, seed=3)
    return mlflow_uri


class RetryLog(logging.Handler):
    """Collects what botocore's standard retry handler says (it logs every retry decision)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, prefix: str) -> int:
        return sum(message.startswith(prefix) for message in self.messages)


def _flow_run(api_url: str, flow_run_id: object) -> dict:
    from conftest import http_json

    return http_json(f"{api_url}/flow_runs/{flow_run_id}")


def _task_runs(api_url: str, flow_run_id: object) -> list[dict]:
    from conftest import http_json

    return http_json(
        f"{api_url}/task_runs/filter",
        {"task_runs": {"flow_run_id": {"any_": [str(flow_run_id)]}}, "limit": 50},
    )


def test_s3_endpoint_stopping_mid_run_fails_the_run_cleanly_and_a_rerun_succeeds(
    prefect_server: str,
    moto: MotoServer,
    s3_training: str,
    monkeypatch: pytest.MonkeyPatch,
):
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from orchestration.flows.main_flow import main

    lake_before = lake_snapshot(moto.url)
    assert len(lake_before) == 14
    registry_before = registry_snapshot(s3_training)

    # The hook: the first partition read succeeds, then the endpoint stops.
    stopped_after: list[Month] = []
    original_read = Lake.read_bytes

    def read_then_stop(self: Lake, month: Month) -> bytes | None:
        data = original_read(self, month)
        if not stopped_after and not self.is_local:
            assert data is not None  # the endpoint answered this read
            stopped_after.append(month)
            moto.stop()
        return data

    monkeypatch.setattr(Lake, "read_bytes", read_then_stop)
    retries = RetryLog()
    retry_logger = logging.getLogger("botocore.retries.standard")
    retry_logger.addHandler(retries)
    monkeypatch.setattr(retry_logger, "level", logging.DEBUG)
    try:
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            state = main(
                source="s3", year=VALIDATION.year, month=VALIDATION.month, return_state=True
            )
    finally:
        retry_logger.removeHandler(retries)

    # The endpoint stopped after the first month of the window had been read.
    assert stopped_after == [VALIDATION.shift(-12)]
    assert state.is_failed(), state
    run = _flow_run(prefect_server, state.state_details.flow_run_id)
    assert run["state"]["type"] == "FAILED"
    message = run["state"]["message"]
    assert "S3 endpoint" in message and moto.url in message, message
    assert f"s3://{BUCKET}" in message, message
    # Reads retried: botocore's standard retry mode per request, then the task's own retries.
    # (3 attempts of the failing request, in each of the task's 3 tries)
    assert retries.count("Retry needed") == 6, retries.messages
    assert retries.count("Max attempts of 3 reached") == 3, retries.messages
    tasks = _task_runs(prefect_server, run["id"])
    assert [t["name"].rsplit("-", 1)[0] for t in tasks] == ["training-window"]  # nothing after
    assert tasks[0]["state"]["type"] == "FAILED"
    assert tasks[0]["run_count"] == 3  # the first try and the task's 2 retries
    assert registry_snapshot(s3_training) == registry_before

    # The endpoint comes back on the same port with the same objects (replayed by moto).
    monkeypatch.setattr(Lake, "read_bytes", original_read)
    moto.start()
    moto.replay()
    assert lake_snapshot(moto.url) == lake_before  # the failed run wrote nothing to the lake

    with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
        try:
            result = main(source="s3", year=VALIDATION.year, month=VALIDATION.month)
        finally:
            # The runs' logs and events go to the server now, while it answers.
            APILogWorker.drain_all(timeout=10)
            EventsWorker.drain_all(timeout=10)
    assert result.validation_month == str(VALIDATION)
    assert result.source == "s3"
    after = registry_snapshot(s3_training)
    assert [v[0] for v in after["versions"]] == [result.model_version] == ["1"]
    assert lake_snapshot(moto.url) == lake_before  # training reads the lake, never writes it

"""Secrets stay secret: AWS keys and the alert webhook never reach logs, MLflow, Prefect or the lake.

Recognisable values are set for AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (the moto endpoint
accepts any) and MILKPRICE_ALERT_WEBHOOK (a loopback receiver whose path carries a token, and
which answers 500 so that the failure path, retries and warnings, runs too). Then, on the S3
lake, against the real Prefect server, with MLflow on SQLite: a training run, a forecast, a
monitoring run whose alert thresholds make it alert, and a training run that fails (its
on_failure hook alerts). Everything they wrote is read back and searched: the processes' output,
the MLflow store (database bytes and every artifact), the Prefect flow runs, task runs, logs,
artifacts and events through the API, the runs' PREFECT_HOME, and every object of the bucket.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest
from conftest import REPO_ROOT, http_json, training_env
from webhook_receiver import Receiver, webhook_receiver

pytestmark = pytest.mark.e2e

ACCESS_KEY = "AKIAMILKPRICE7LEAKCHECK"
SECRET_KEY = "milkprice-secret-Zq81XvT4pL0wKs9dNe2RbY"
TOKEN = "milkprice-hook-token-9f8e7d6c5b4a"
MILKPRICE = Path(sys.executable).parent / "milkprice"
MAIN_FLOW = REPO_ROOT / "orchestration" / "flows" / "main_flow.py"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver(status=500) as made:
        yield made


@pytest.fixture
def runs(
    tmp_path: Path,
    prefect_server: str,
    s3_endpoint: str,
    mlflow_db_template: Path,
    receiver: Receiver,
) -> dict:
    """The four runs, one process each, with the secrets set; their outputs and where they wrote."""
    bucket = f"secrets-{datetime.now(UTC):%H%M%S%f}"
    webhook = receiver.url.rsplit("/", 1)[0] + f"/{TOKEN}"
    env = training_env(tmp_path, prefect_server, "2024-01", "2025-03")
    shutil.copyfile(mlflow_db_template, tmp_path / "mlflow.db")
    env.update(
        AWS_ACCESS_KEY_ID=ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=SECRET_KEY,
        AWS_DEFAULT_REGION="us-east-1",
        AWS_ENDPOINT_URL=s3_endpoint,
        S3_BUCKET=bucket,
        MILKPRICE_SOURCE="s3",
        MILKPRICE_ALERT_WEBHOOK=webhook,
        MILKPRICE_ALERT_RMSE_RATIO="0.01",  # every month alerts: the webhook is called
        MILKPRICE_ALERT_MIN_SCORED_ROWS="1",
    )
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    )
    client.create_bucket(Bucket=bucket)
    push = subprocess.run(
        [str(MILKPRICE), "data", "push"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert push.returncode == 0, push.stdout + push.stderr
    since = datetime.now(UTC)
    commands = {
        "train": [sys.executable, str(MAIN_FLOW), "--year", "2025", "--month", "2"],
        "forecast": [str(MILKPRICE), "forecast", "--cutoff", "2025-02-28"],
        "monitor": [str(MILKPRICE), "monitor", "--year", "2025", "--month", "3"],
        "failing-train": [sys.executable, str(MAIN_FLOW), "--year", "2023", "--month", "5"],
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    codes = {}
    for name, command in commands.items():
        done = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=900, check=False
        )
        (logs / f"{name}.log").write_text(done.stdout + done.stderr)
        codes[name] = done.returncode
    return {
        "root": tmp_path,
        "api": prefect_server,
        "since": since,
        "bucket": bucket,
        "client": client,
        "codes": codes,
        "logs": logs,
        "webhook": webhook,
    }


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _prefect_records(api: str, since: datetime) -> dict[str, object]:
    """Flow runs (parameters, states), task runs, logs, artifacts and events since ``since``."""
    after = {"after_": since.isoformat()}
    flow_runs = http_json(f"{api}/flow_runs/filter", {"flow_runs": {"start_time": after}})
    assert isinstance(flow_runs, list)
    ids = [run["id"] for run in flow_runs]
    by_run = {"flow_runs": {"id": {"any_": ids}}}
    records: dict[str, object] = {"flow_runs": flow_runs}
    records["task_runs"] = http_json(f"{api}/task_runs/filter", by_run)
    records["logs"] = http_json(f"{api}/logs/filter", {"logs": {"flow_run_id": {"any_": ids}}})
    records["artifacts"] = http_json(f"{api}/artifacts/filter", by_run)
    page = http_json(
        f"{api}/events/filter",
        {"filter": {"occurred": {"since": since.isoformat()}}, "limit": 50},
    )
    events: list = []
    while isinstance(page, dict):
        events.extend(page["events"])
        page = http_json(page["next_page"]) if page.get("next_page") else None
    records["events"] = events
    return records


def _bucket_objects(client, bucket: str) -> dict[str, bytes]:
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", []):
            found[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return found


def test_secrets_never_reach_logs_mlflow_prefect_or_the_lake(runs: dict, receiver: Receiver):
    # The runs did what they should, and the webhook was really called (with its token).
    assert runs["codes"] == {"train": 0, "forecast": 0, "monitor": 0, "failing-train": 1}
    assert receiver.paths and all(path.endswith(TOKEN) for path in receiver.paths)
    kinds = {body["alerts"][0]["kind"] for body in receiver.bodies}
    assert "failure" in kinds and len(kinds) >= 2  # monitoring alerts and the failed run

    root: Path = runs["root"]
    places: dict[str, bytes] = {}
    places.update(_files(runs["logs"]))
    places.update(_files(root / "mlruns"))
    places[str(root / "mlflow.db")] = (root / "mlflow.db").read_bytes()
    places.update(_files(root / "prefect-home"))
    records = _prefect_records(runs["api"], runs["since"])
    for kind, found in records.items():
        places[f"prefect:{kind}"] = json.dumps(found).encode()
    for key, data in _bucket_objects(runs["client"], runs["bucket"]).items():
        places[f"s3://{runs['bucket']}/{key}"] = data

    # The scan reads what the runs wrote (else finding nothing would prove nothing).
    # Deployments other tests served on the session's server have schedules: the scheduler's
    # runs ("auto-scheduled", future ones included: the filter falls back on the expected
    # start) are scanned too, but they are not the ones these runs made.
    names = {
        run["name"]
        for run in records["flow_runs"]  # type: ignore[union-attr]
        if "auto-scheduled" not in run["tags"]
    }
    assert len(names) == 4, names
    assert records["logs"] and records["artifacts"] and records["task_runs"]
    assert any(key.startswith(f"s3://{runs['bucket']}/forecasts/") for key in places)
    assert any("/artifacts/" in key for key in places)  # the MLflow model's files
    assert any(b"milkprice.alert" in data for key, data in places.items() if "events" in key)
    assert b"train-2025-02" in places[str(root / "mlflow.db")]

    secrets = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "MILKPRICE_ALERT_WEBHOOK": runs["webhook"],
        "the webhook's token": TOKEN,
    }
    leaks = [
        f"{what} in {place}"
        for place, data in places.items()
        for what, value in secrets.items()
        if value.encode() in data
    ]
    assert not leaks, leaks

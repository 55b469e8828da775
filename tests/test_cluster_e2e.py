"""The cluster stack on loopback, driven as a team would: ``milkprice stack up --cluster``.

One bring-up for the module (PostgreSQL, moto S3, Prefect and MLflow servers on PostgreSQL, a
Dask scheduler with two workers, two Prefect workers on the work pool), a demo lake seeded into
its S3, then:

(a) a 4-month backfill through the pool's ``train-milk-model`` deployment completes, its runs
    executed by both workers (the ``prefect.worker.name`` label each worker puts on the flow
    runs it takes), every version in the PostgreSQL MLflow with its artifacts in the S3 bucket,
    one champion, one version per training run;
(b) two training runs of one month started at once land on the two workers: one version each,
    and the alias ends on the better of the two by out-of-sample gate score (when one beat the
    earlier champion), never on a worse or older model;
(c) ``stack down`` leaves no process supervisord reported (nor a child of one) and frees the
    ports.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from conftest import REPO_ROOT, http_json, wait_flow_run_final

from orchestration.names import TRAIN_DEPLOYMENT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FIRST, LAST = "2024-01", "2025-06"  # the seeded lake: 12 training months before 2025-01
BACKFILL = ("2025-01", "2025-04")
RACE_MONTH = (2025, 6)  # newer than every backfilled month: it may take the alias

WORKERS = {"worker-1", "worker-2"}


def _stack(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "stack", *args],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def cluster() -> Iterator[dict]:
    """The running cluster stack's ``stack.json``, the test process pointed at it."""
    # Under /tmp and traversable: the `postgres` OS user must reach the cluster's folder.
    state = Path(tempfile.mkdtemp(prefix="milkprice-cluster-", dir="/tmp"))
    state.chmod(0o755)
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PREFECT_", "MILKPRICE_", "MLFLOW_", "AWS_", "S3_"))
    }
    env.update(
        STATE_DIR=str(state),
        S3_BUCKET=f"milk-lake-{time.time_ns()}",
        PREFECT_HOME=str(state / "prefect-client"),
        PREFECT_WORKER_QUERY_SECONDS="2",  # workers look for runs every 2 s (default 10)
        MILKPRICE_N_TRIALS="0",
    )
    up = _stack("up", "--cluster", "--no-demo", env=env)
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        info = json.loads((state / "stack.json").read_text())
        info["_state"], info["_env"], info["_up_stdout"] = state, env, up.stdout
        with pytest.MonkeyPatch.context() as patch:
            for key, value in info["env"].items():
                patch.setenv(key, value)
            _seed_lake()
            yield info
    finally:
        _stack("down", env=env)
        shutil.rmtree(state, ignore_errors=True)


def _seed_lake() -> None:
    from milkprice.data.demo import write_demo_lake
    from milkprice.data.lake import Lake
    from milkprice.months import Month
    from milkprice.settings import get_settings

    lake = Lake.from_settings(get_settings(), "s3")
    write_demo_lake(lake, Month.parse(FIRST), Month.parse(LAST), 0)


def _prefect(info: dict):
    """Prefect settings of this process pointed at the stack's server."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    return temporary_settings(updates={PREFECT_API_URL: info["prefect_api_url"]})


def _flow_runs(info: dict, **flow_run_filter: object) -> list[dict]:
    return http_json(f"{info['prefect_api_url']}/flow_runs/filter", {"flow_runs": flow_run_filter})


def _worker(run: dict) -> str | None:
    return (run.get("labels") or {}).get("prefect.worker.name")


def _wait_pool_idle(info: dict, timeout_s: float = 600) -> None:
    """Wait until no flow run is due, pending or running (the forecasts each promotion
    triggers also run on the pool's workers)."""
    from datetime import UTC, datetime

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        busy = _flow_runs(
            info,
            state={"type": {"any_": ["SCHEDULED", "PENDING", "RUNNING"]}},
            expected_start_time={"before_": datetime.now(UTC).isoformat()},
        )
        if not busy:
            return
        time.sleep(2)
    raise TimeoutError(f"the pool's workers were still busy after {timeout_s}s: {busy}")


def _mlflow(info: dict):
    from mlflow import MlflowClient

    return MlflowClient(tracking_uri=info["mlflow_tracking_uri"])


def _model_name() -> str:
    from milkprice.settings import get_settings

    return get_settings().registered_model


def _versions(info: dict) -> list:
    """Every version of the model, read one by one (search results omit aliases and ids)."""
    client, name = _mlflow(info), _model_name()
    found = client.search_model_versions(f"name='{name}'")
    return [client.get_model_version(name, v.version) for v in found]


def _champion(info: dict) -> str:
    return str(_mlflow(info).get_model_version_by_alias(_model_name(), "champion").version)


def _completed_training_runs(info: dict) -> list[dict]:
    deployment = http_json(f"{info['prefect_api_url']}/deployments/name/{TRAIN_DEPLOYMENT}")
    runs = _flow_runs(info, deployment_id={"any_": [deployment["id"]]})
    return [run for run in runs if run["state"]["type"] == "COMPLETED"]


def _artifact_keys() -> list[str]:
    import boto3

    from stack.cluster import ARTIFACTS_BUCKET

    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    keys = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=ARTIFACTS_BUCKET):
        keys += [item["Key"] for item in page.get("Contents", [])]
    return keys


def test_stack_json_names_every_service(cluster):
    assert cluster["stack"] == "cluster"
    assert http_json(f"{cluster['prefect_api_url']}/health") is True
    assert cluster["mlflow_tracking_uri"].startswith("http://127.0.0.1:")
    assert cluster["env"]["MILKPRICE_SOURCE"] == "s3"
    assert f"export PREFECT_API_URL={cluster['prefect_api_url']}" in cluster["_up_stdout"]
    # The Prefect server stores its runs in PostgreSQL, not in an SQLite file.
    assert not list(Path(cluster["_state"]).rglob("prefect.db"))
    workers = http_json(
        f"{cluster['prefect_api_url']}/work_pools/{cluster['work_pool']}/workers/filter", {}
    )
    assert {w["name"] for w in workers if w["status"] == "ONLINE"} == WORKERS


def test_backfill_via_the_pool_runs_on_both_workers_and_keeps_every_version(cluster):
    from milkprice.months import Month, month_range
    from milkprice.settings import get_settings
    from orchestration.backfill import run_backfill

    months = month_range(Month.parse(BACKFILL[0]), Month.parse(BACKFILL[1]))
    with _prefect(cluster):
        report = run_backfill(get_settings(), months, "s3", concurrency=4, via_deployment=True)
    assert [row.state for row in report.rows] == ["Completed"] * 4, report.rows

    runs = _flow_runs(cluster, tags={"all_": ["backfill"]})
    assert len(runs) == 4
    assert {_worker(run) for run in runs} == WORKERS  # both workers executed backfill runs

    versions = _versions(cluster)
    training_runs = _completed_training_runs(cluster)
    assert len(versions) == len(training_runs) == 4  # one version per run, none lost
    keys = _artifact_keys()
    for version in versions:  # each model's files are in the S3 artifacts bucket
        model_id = version.source.removeprefix("models:/")  # MLflow 3: a logged model's id
        assert any(key.endswith(f"/models/{model_id}/artifacts/MLmodel") for key in keys), (
            version.version,
            version.source,
        )
    champions = [v for v in versions if "champion" in v.aliases]
    assert [v.version for v in champions] == [_champion(cluster)]  # exactly one champion


def test_two_runs_of_one_month_at_once_leave_the_alias_where_the_gate_decided(cluster):
    from prefect.deployments import run_deployment

    _wait_pool_idle(cluster)  # both workers free: each takes one of the two runs
    before = {v.version for v in _versions(cluster)}
    previous = _champion(cluster)
    year, month = RACE_MONTH
    with _prefect(cluster):
        started = [
            run_deployment(
                TRAIN_DEPLOYMENT,
                # force: both must train even if one ends before the other looks for it.
                parameters={"source": "s3", "year": year, "month": month, "force": True},
                # Different seeds: two different models of the same month.
                job_variables={"env": {"MILKPRICE_SEED": str(seed)}},
                flow_run_name=f"race-seed-{seed}",
                timeout=0,
            )
            for seed in (1, 2)
        ]
    api = cluster["prefect_api_url"]
    runs = [wait_flow_run_final(api, str(run.id), timeout_s=600) for run in started]
    assert [run["state"]["type"] for run in runs] == ["COMPLETED"] * 2
    assert {_worker(run) for run in runs} == WORKERS  # one on each worker, at the same time

    new = [v for v in _versions(cluster) if v.version not in before]
    assert len(new) == 2  # one version each
    assert {v.tags.get("validation_month") for v in new} == {f"{year}-{month:02d}"}
    assert len(_completed_training_runs(cluster)) == len(_versions(cluster))
    champion = _champion(cluster)
    promoted = [v for v in new if v.tags.get("promotion") == "promoted"]
    if not promoted:  # neither passed the gate: the champion from before stays
        assert champion == previous
        return
    # A model of this month won: the alias is on one of them (never an older model), and on
    # the one the gate chose last. When both passed the gate, the decisions were serialized:
    # the holder was compared with the other one, not both with the champion from before.
    holder = next(v for v in new if v.version == champion)
    assert holder.tags["promotion"] == "promoted"
    # The better of the two by their out-of-sample gate scores (the same-month rule compares
    # recorded scores, never a re-score of a model refit on that month): never the worse one.
    scores = {v.version: float(v.tags["gate_score"]) for v in new}
    assert scores[holder.version] == min(scores.values()), (scores, holder.version)
    if len(promoted) == 2:
        other = next(v for v in new if v is not holder)
        assert f"champion version {other.version} " in holder.tags["promotion_reason"]


def test_down_leaves_no_process_and_frees_the_ports(cluster):
    processes = []
    for pid in cluster["processes"].values():  # the pids supervisord reported, and children
        try:
            parent = psutil.Process(pid)
            processes += [parent, *parent.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
    assert len(processes) >= len(cluster["processes"])
    down = _stack("down", env=cluster["_env"])
    assert down.returncode == 0, down.stdout + down.stderr
    _, alive = psutil.wait_procs(processes, timeout=10)
    assert alive == [], f"left behind: {alive}"
    for name, port in cluster["ports"].items():
        assert not _port_open(port), f"{name} port {port} still open"
    assert not (Path(cluster["_state"]) / "stack.json").exists()
    status = _stack("status", env=cluster["_env"])
    assert status.returncode == 3, status.stdout

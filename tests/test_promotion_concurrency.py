"""The registry locks, then promotion under concurrency against a real PostgreSQL-backed MLflow.

The lease (the lock for HTTP tracking servers) is checked on an SQLite store first: it needs
only MLflow's API. Then several processes (as workers on several hosts would) log, register and run the gate at the
same moment, released together by a barrier; the champion's re-scoring sleeps, as a real one
takes time, which is the window a lost update needs. Two ways to reach the store: the
PostgreSQL database itself (``postgresql://``, advisory lock) and an ``mlflow server`` on it
(``http://``, the lease in the registry), which is all a pool worker knows.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import free_port, stop_process_group, wait_for_http
from mlflow import MlflowClient

from milkprice.months import Month
from milkprice.registry.locks import LOCK_SUFFIX, lease_lock, mlflow_lock, store_kind
from milkprice.registry.promotion import CHAMPION_ALIAS
from stack.postgres import create_database, url

MODEL = "milk-price-model"
EXPERIMENT = "milk-price-concurrency"
RESCORE_S = 1.0
# (validation month, gate score on any month). Whatever the order the gate sees them in one at
# a time, the champion ends on the newest month's best: 2025-03 at 0.40.
CANDIDATES = [("2025-03", 0.60), ("2025-02", 0.55), ("2025-03", 0.40), ("2025-03", 0.50)]


@pytest.mark.parametrize(
    ("uri", "kind"),
    [
        ("sqlite:///mlflow.db", "local"),
        ("file:///tmp/mlruns", "local"),
        ("mlruns", "local"),
        ("postgresql://postgres@127.0.0.1:5432/mlflow", "postgresql"),
        ("postgresql+psycopg2://postgres@db/mlflow", "postgresql"),
        ("http://127.0.0.1:5000", "server"),
        ("https://mlflow.example.org", "server"),
        ("mysql+pymysql://u@db/mlflow", "server"),
    ],
)
def test_store_kind_picks_the_lock(uri, kind):
    assert store_kind(uri) == kind
    # Writes are serialized only for local stores; servers take concurrent writers.
    assert isinstance(mlflow_lock(uri), contextlib.nullcontext) == (kind != "local")


def _lock_entries(uri: str, model: str) -> list:
    return MlflowClient(uri).search_registered_models(f"name = '{model}{LOCK_SUFFIX}'")


def test_lease_excludes_a_second_owner_until_released(mlflow_uri):
    with lease_lock(mlflow_uri, "m", timeout_s=5):
        assert len(_lock_entries(mlflow_uri, "m")) == 1
        second = lease_lock(mlflow_uri, "m", timeout_s=1)
        with pytest.raises(TimeoutError, match=r"'m\.promotion-lock' is held by .*:\d+:"):
            second.__enter__()
        with lease_lock(mlflow_uri, "other-model", timeout_s=1):  # one lease per model
            pass
    assert _lock_entries(mlflow_uri, "m") == []
    with lease_lock(mlflow_uri, "m", timeout_s=1):  # free again
        pass


def test_an_expired_lease_is_taken_over(mlflow_uri, caplog):
    caplog.set_level(logging.WARNING, logger="milkprice.registry.locks")
    with contextlib.ExitStack() as crashed:
        crashed.enter_context(lease_lock(mlflow_uri, "m", timeout_s=1, lease_s=-1))
        with lease_lock(mlflow_uri, "m", timeout_s=5):
            assert "taking over m.promotion-lock" in caplog.text
    # The first owner finds its lease gone at release: it says so and deletes nothing.
    assert "lost the lease" in caplog.text
    assert _lock_entries(mlflow_uri, "m") == []


def test_alias_moved_during_the_decision_makes_the_gate_decide_again(mlflow_uri, tmp_path):
    """Compare-and-set: the alias is set only if it still names the champion decided against."""
    from milkprice.registry.promotion import promote_if_better

    client = MlflowClient(mlflow_uri)
    client.create_registered_model(MODEL)
    scores = {}
    for month, score in (("2025-02", 0.80), ("2025-02", 0.55), ("2025-03", 0.60)):
        version = client.create_model_version(
            MODEL, str(tmp_path), tags={"validation_month": month}
        ).version
        scores[str(version)] = score
    client.set_registered_model_alias(MODEL, CHAMPION_ALIAS, "1")
    rescored = []

    def rescore(champion) -> float:
        rescored.append(champion.version)
        if champion.version == "1":  # someone moves the alias while version 1 is re-scored
            client.set_registered_model_alias(MODEL, CHAMPION_ALIAS, "2")
        return scores[champion.version]

    decision = promote_if_better(
        tracking_uri=mlflow_uri,
        model_name=MODEL,
        candidate_version="3",
        candidate_month=Month(2025, 3),
        candidate_metrics=_metrics(scores["3"]),
        rescore_champion=rescore,
    )
    assert rescored == ["1", "2"]  # beat version 1 (0.80), then lost to version 2 (0.55)
    assert not decision.promoted
    assert decision.previous_champion == "2"
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version) == "2"


def _metrics(score: float) -> dict[str, float]:
    return {"val_rmse": score, "naive_val_rmse": 1.0, "val_mae": score, "naive_val_mae": 1.0}


def _promote(uri: str, month: str, score: float, barrier: Any, workdir: str) -> dict:
    """One worker: log a run, register it, run the gate (in a process of its own)."""
    from milkprice.data.demo import generate_demo_frame
    from milkprice.model.forecast import MilkForecaster
    from milkprice.registry.promotion import (
        Champion,
        promote_if_better,
        register_version,
    )
    from milkprice.registry.tracking import configure_mlflow, log_training_run

    os.chdir(workdir)  # a postgresql:// store keeps artifacts in ./mlruns
    frame = generate_demo_frame(Month(2024, 1), Month(2024, 3), seed=3)
    frame = frame.assign(Precio=frame["Precio"].where(frame["Precio"] > 0))
    model = MilkForecaster(params={"num_boost_round": 3}, seed=0).fit(frame, [Month(2024, 1).end])
    client = MlflowClient(tracking_uri=uri)

    def rescore(champion: Champion) -> float:
        time.sleep(RESCORE_S)
        return float(client.get_model_version(MODEL, champion.version).tags["score"])

    barrier.wait()
    experiment = configure_mlflow(uri, EXPERIMENT)
    logged = log_training_run(
        tracking_uri=uri,
        experiment_id=experiment,
        run_name=f"train-{month}",
        forecaster=model,
        history=frame,
        params={"seed": 0},
        metrics=_metrics(score),
        tags={"validation_month": month},
    )
    tags = {"validation_month": month, "score": str(score)}
    version = register_version(uri, MODEL, logged, tags)
    barrier.wait()
    decision = promote_if_better(
        tracking_uri=uri,
        model_name=MODEL,
        candidate_version=version,
        candidate_month=Month.parse(month),
        candidate_metrics=_metrics(score),
        rescore_champion=rescore,
    )
    return {**decision.to_dict(), "run_id": logged.run_id, "month": month, "score": score}


def _migrated(uri: str) -> str:
    """Create MLflow's tables once, before several processes open the store together."""
    MlflowClient(tracking_uri=uri).search_experiments()
    return uri


@pytest.fixture(params=["database", "server"])
def tracking_uri(request, postgres_port: int, tmp_path: Path) -> Iterator[str]:
    """A fresh PostgreSQL-backed store, reached directly or through an ``mlflow server``."""
    database = f"mlflow_{uuid.uuid4().hex[:8]}"
    create_database(postgres_port, database)
    store = _migrated(url(postgres_port, database))
    if request.param == "database":
        yield store
        return
    port = free_port()
    log = (tmp_path / "mlflow-server.log").open("wb")
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--backend-store-uri",
            store,
            "--artifacts-destination",
            str(tmp_path / "artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "2",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        start_new_session=True,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", timeout_s=180)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(server)
        log.close()


@pytest.mark.e2e
def test_concurrent_promotions_end_on_the_best_and_register_each_version_once(
    tracking_uri: str, tmp_path: Path
):
    context = multiprocessing.get_context("spawn")
    with (
        context.Manager() as manager,
        ProcessPoolExecutor(len(CANDIDATES), mp_context=context) as pool,
    ):
        barrier = manager.Barrier(len(CANDIDATES), timeout=600)
        futures = [
            pool.submit(_promote, tracking_uri, month, score, barrier, str(tmp_path))
            for month, score in CANDIDATES
        ]
        results = [future.result(timeout=900) for future in futures]

    client = MlflowClient(tracking_uri=tracking_uri)
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    # Each run registered exactly one version, numbered without gaps or duplicates.
    assert sorted(versions, key=int) == [str(n) for n in range(1, len(CANDIDATES) + 1)]
    assert {v.run_id for v in versions.values()} == {r["run_id"] for r in results}
    assert sorted(r["candidate_version"] for r in results) == sorted(versions)

    by_version = {r["candidate_version"]: r for r in results}
    best = next(r for r in results if (r["month"], r["score"]) == ("2025-03", 0.40))
    champion = str(client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version)
    assert champion == best["candidate_version"]

    # The promotions form one chain, each decided against the one before it: two decisions
    # against the same champion would be the lost update the lock prevents.
    promoted = [r for r in results if r["promoted"]]
    previous = [r["previous_champion"] for r in promoted]
    assert len(set(previous)) == len(previous), previous
    assert previous.count(None) == 1
    for record in promoted:
        before = by_version.get(record["previous_champion"])
        if before is not None:
            assert before["promoted"]
            assert Month.parse(before["month"]) <= Month.parse(record["month"])
            assert record["score"] <= before["score"]
    assert {r["candidate_version"] for r in promoted} - set(previous) == {champion}
    for version, record in by_version.items():
        expected = "promoted" if record["promoted"] else "rejected"
        assert versions[version].tags["promotion"] == expected
    # The lease (HTTP store) is gone once every promotion is done.
    lock_entries = client.search_registered_models(f"name = '{MODEL}{LOCK_SUFFIX}'")
    assert lock_entries == []

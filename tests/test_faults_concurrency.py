"""Fault: four training runs at once on one SQLite MLflow store.

Four processes run the training flow script (``python orchestration/flows/main_flow.py``)
against the session's Prefect server and one SQLite tracking store, for 2025-01, 2025-02 and
twice 2025-03, started together. Each must complete or fail with its one-line message (never
"database is locked"), every run that completed must have exactly one registered version, and
the ``champion`` alias must only ever move forward: to a version validated on the same or a
newer month whose score was not worse than the champion it replaced on that month.

The alias moves are read twice: from the decisions each version records (tags ``promotion`` and
``promotion_reason``, which name the champion a promoted version replaced), and by a thread
that polls the alias while the runs go on.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from conftest import REPO_ROOT, training_env
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

pytestmark = pytest.mark.e2e

MODEL = "milk-price-model"
MONTHS = [(2025, 1), (2025, 2), (2025, 3), (2025, 3)]
_REPLACED = re.compile(
    r"score (?P<score>[\d.]+) beats naive \(1\.0\) and champion version (?P<previous>\d+) "
    r"\((?:re-scored|recorded out-of-sample) (?P<previous_score>[\d.]+)\) on "
    r"(?P<month>\d{4}-\d{2})"
)


class AliasWatcher(threading.Thread):
    """Polls the champion alias and keeps the sequence of versions it pointed at."""

    def __init__(self, tracking_uri: str) -> None:
        super().__init__(daemon=True)
        self.client = MlflowClient(tracking_uri)
        self.seen: list[str] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            try:
                version = str(self.client.get_model_version_by_alias(MODEL, "champion").version)
            except MlflowException:
                version = None
            if version and (not self.seen or self.seen[-1] != version):
                self.seen.append(version)
            self.done.wait(0.25)


def _result(stdout: str) -> dict:
    """The JSON result the script prints last (``--json``)."""
    start = stdout.rindex("\n{") + 1 if not stdout.startswith("{") else 0
    return json.loads(stdout[start:])


def test_four_runs_at_once_on_sqlite_register_once_and_never_demote(
    prefect_server: str, tmp_path: Path
):
    env = training_env(tmp_path, prefect_server)
    env["MILKPRICE_N_TRIALS"] = "0"
    uri = env["MLFLOW_TRACKING_URI"]
    script = str(REPO_ROOT / "orchestration" / "flows" / "main_flow.py")
    watcher = AliasWatcher(uri)
    watcher.start()
    processes = [
        subprocess.Popen(
            # --force: two runs of 2025-03 are meant to train both (not skip the later one).
            [sys.executable, script, "--year", str(y), "--month", str(m), "--json", "--force"],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for y, m in MONTHS
    ]
    try:
        outputs = [p.communicate(timeout=1200) for p in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
        watcher.done.set()
        watcher.join(timeout=10)

    results = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert "database is locked" not in stdout + stderr
        assert process.returncode in {0, 1}, stderr[-3000:]
        if process.returncode == 1:  # a clean failure says why in one line
            assert "milk-price-training failed:" in stderr, stderr[-3000:]
        else:
            results.append(_result(stdout))
    assert results, "no run completed"
    failed = [o[1][-2000:] for p, o in zip(processes, outputs, strict=True) if p.returncode]
    # None is expected to fail here: the lake holds every month they read.
    assert failed == [], failed

    client = MlflowClient(uri)
    versions = {str(v.version): v for v in client.search_model_versions(f"name = '{MODEL}'")}
    # Every completed run registered exactly one version, and every version belongs to a run.
    assert sorted(r["model_version"] for r in results) == sorted(versions)
    assert {r["run_id"] for r in results} == {v.run_id for v in versions.values()}
    for result in results:
        version = versions[result["model_version"]]
        assert version.run_id == result["run_id"]
        assert version.tags["validation_month"] == result["validation_month"]
        assert version.tags["promotion"] == ("promoted" if result["promoted"] else "rejected")
        run = client.get_run(result["run_id"])
        assert (run.info.status, run.data.tags["run_status"]) == ("FINISHED", "complete")

    chain = _champion_chain(versions)
    champion = str(client.get_model_version_by_alias(MODEL, "champion").version)
    assert chain[-1] == champion
    # What the watcher saw is the same chain, in order (it may miss a quick move).
    assert watcher.seen == [v for v in chain if v in watcher.seen], (watcher.seen, chain)
    print(f"\nchampion moves: {' -> '.join(chain)}; polled: {' -> '.join(watcher.seen)}")


def _champion_chain(versions: dict) -> list[str]:
    """The versions that held the alias, in order, checked to move only forward."""
    promoted = {n: v for n, v in versions.items() if v.tags["promotion"] == "promoted"}
    first = [n for n, v in promoted.items() if v.tags["promotion_reason"].startswith("first")]
    assert len(first) == 1, {n: v.tags["promotion_reason"] for n, v in promoted.items()}
    successor: dict[str, str] = {}
    for number, version in promoted.items():
        if number in first:
            continue
        found = _REPLACED.search(version.tags["promotion_reason"])
        assert found, version.tags["promotion_reason"]
        previous = found["previous"]
        assert previous in promoted and previous not in successor, (number, previous)
        successor[previous] = number
        # never an older model ...
        assert found["month"] == version.tags["validation_month"]
        assert version.tags["validation_month"] >= promoted[previous].tags["validation_month"]
        # ... nor a worse one on the month it was validated on
        assert float(found["score"]) <= float(found["previous_score"])
    chain = first
    while chain[-1] in successor:
        chain.append(successor[chain[-1]])
    assert sorted(chain) == sorted(promoted)  # one line of succession, nothing left out
    for number, version in versions.items():
        if number not in promoted:  # a rejected version says why
            reason = version.tags["promotion_reason"]
            assert (
                "older than the champion" in reason
                or "worse than" in reason
                or ("does not beat the naive" in reason)
            ), reason
    return chain

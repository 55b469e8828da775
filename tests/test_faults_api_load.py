"""Fault: the prediction API under a loopback load while the champion changes.

The real ``milkprice api`` (uvicorn) runs on a free port with two registered versions that
give different forecasts: version 1 (validation month 2025-02) holds the ``champion`` alias,
version 2 (2025-03) is registered beside it. Eight clients post ``/predict`` without pause for
20 s; at 6 s the alias moves to version 2 (as an operator or a training run would), the API's
reload interval (1 s) picks it up, and at 12 s ``POST /admin/reload`` forces one more swap
under load.

Load generator: ``httpx.AsyncClient`` with 8 worker coroutines on one connection pool limited
to 8 connections, so exactly 8 requests are in flight and every answer stays paired with the
request that got it. A load tool (locust, wrk) measures throughput but does not hand each
answer's body back to the test, which is what is checked here: no 5xx, and every answer names
the version that produced it (its prices equal that version's reference answer).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import free_port, start_background, stop_process_group, training_env, wait_for_http

pytestmark = pytest.mark.e2e

MILKPRICE = Path(sys.executable).parent / "milkprice"
LOAD_SECONDS = 20.0
CLIENTS = 8
MOVE_ALIAS_AT, ADMIN_RELOAD_AT = 6.0, 12.0
FIELDS = ("estado", "ciudad", "tipo", "canal")

# Two versions with different forecasts; the alias is left on the first one.
_TRAIN_TWO = """
from mlflow import MlflowClient
from milkprice.pipeline.training_run import run_training
from milkprice.settings import get_settings
settings = get_settings()
first = run_training(settings, "local", 2025, 2)
second = run_training(settings, "local", 2025, 3)
client = MlflowClient(settings.mlflow_tracking_uri)
client.set_registered_model_alias(settings.registered_model, "champion", first.model_version)
print(first.model_version, second.model_version)
"""


@dataclass(frozen=True)
class Answer:
    """One request of the load and what came back."""

    client: int
    started: float
    ended: float
    status: int
    version: str | None
    prices: tuple[float, ...] | None


@pytest.fixture(scope="module")
def two_versions(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> tuple:
    root = tmp_path_factory.mktemp("api-load")
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")
    env = training_env(root, None)
    env["MILKPRICE_N_TRIALS"] = "0"
    env["MILKPRICE_API_RELOAD_SECONDS"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN_TWO],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first, second = done.stdout.split()[-2:]
    return env, root, first, second


def _move_alias(env: dict[str, str], version: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    client.set_registered_model_alias("milk-price-model", "champion", version)


async def _load(url: str, body: dict, env: dict[str, str], new_version: str) -> tuple:
    answers: list[Answer] = []
    errors: list[str] = []
    marks: dict[str, float] = {}
    limits = httpx.Limits(max_connections=CLIENTS, max_keepalive_connections=CLIENTS)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        begin = time.monotonic()
        stop_at = begin + LOAD_SECONDS

        async def worker(number: int) -> None:
            while time.monotonic() < stop_at:
                started = time.monotonic() - begin
                try:
                    response = await client.post("/predict", json=body)
                except httpx.HTTPError as exc:  # a dropped connection is a failure too
                    errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                ended = time.monotonic() - begin
                payload = response.json() if response.status_code == 200 else {}
                prices = tuple(p["price"] for p in payload.get("predictions", [])) or None
                answers.append(
                    Answer(
                        number,
                        started,
                        ended,
                        response.status_code,
                        payload.get("model_version"),
                        prices,
                    )
                )

        async def operator() -> None:
            await asyncio.sleep(MOVE_ALIAS_AT)
            await asyncio.to_thread(_move_alias, env, new_version)
            marks["alias_moved"] = time.monotonic() - begin
            await asyncio.sleep(ADMIN_RELOAD_AT - MOVE_ALIAS_AT)
            marks["admin_reload_sent"] = time.monotonic() - begin
            reload = await client.post("/admin/reload")
            marks["admin_reload_status"] = reload.status_code

        await asyncio.gather(operator(), *(worker(n) for n in range(CLIENTS)))
    return answers, errors, marks


def test_api_under_load_while_the_champion_changes(two_versions: tuple, tmp_path: Path):
    env, root, old, new = two_versions
    url = f"http://127.0.0.1:{free_port()}"
    log = tmp_path / "api.log"
    server = start_background(
        [str(MILKPRICE), "api", "--port", url.rsplit(":", 1)[1]], env, root, log
    )
    try:
        wait_for_http(f"{url}/livez", timeout_s=60)
        with httpx.Client(base_url=url, timeout=30) as client:
            deadline = time.monotonic() + 120
            while client.get("/readyz").status_code != 200:
                assert time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.5)
            model = client.get("/model").json()
            assert model["version"] == old
            series = client.get("/series").json()["series"]
            first_day = model["cutoff"]
            dates = _dates_after(first_day, 40)
            rows = [
                {**{k: s[k] for k in FIELDS}, "fecha": dates[i % len(dates)]}
                for i, s in enumerate(series[:64])
            ]
            body = {"rows": rows}
            reference = {old: _prices(client.post("/predict", json=body))}

            answers, errors, marks = asyncio.run(_load(url, body, env, new))

            reference[new] = _prices(client.post("/predict", json=body))
            assert client.get("/model").json()["version"] == new
        # The two versions answer differently, so a price list tells which one produced it.
        assert reference[old] != reference[new]

        assert errors == [], errors[:5]
        statuses = {a.status for a in answers}
        assert statuses == {200}, statuses
        assert marks["admin_reload_status"] == 200
        assert {a.version for a in answers} == {old, new}
        for answer in answers:
            assert answer.prices == reference[answer.version], answer
        # Once any answer came from the new version, no later request gets the old one.
        first_new = min(a.ended for a in answers if a.version == new)
        assert all(a.version == new for a in answers if a.started > first_new)
        assert all(a.version == old for a in answers if a.ended < marks["alias_moved"])
        assert server.poll() is None
        assert "Traceback" not in log.read_text()

        latencies = sorted(a.ended - a.started for a in answers)
        print(
            f"\n{len(answers)} answers in {LOAD_SECONDS:.0f} s with {CLIENTS} clients "
            f"({len(answers) / LOAD_SECONDS:.0f}/s); latency p50 "
            f"{latencies[len(latencies) // 2] * 1000:.0f} ms, p99 "
            f"{latencies[int(len(latencies) * 0.99)] * 1000:.0f} ms; version {new} first "
            f"answered {first_new - marks['alias_moved']:.1f} s after the alias moved"
        )
    finally:
        stop_process_group(server)


def _dates_after(cutoff: str, days: int) -> list[str]:
    import datetime as dt

    start = dt.date.fromisoformat(cutoff)
    return [str(start + dt.timedelta(days=n)) for n in range(1, days + 1)]


def _prices(response: httpx.Response) -> tuple[float, ...]:
    assert response.status_code == 200, response.text
    return tuple(p["price"] for p in response.json()["predictions"])

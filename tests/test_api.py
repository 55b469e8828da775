"""The prediction API end to end: the real `milkprice api` server on loopback, driven over HTTP.

A champion is trained once on a seeded demo lake; the server runs as a subprocess in its own
process group (MILKPRICE_API_RELOAD_SECONDS=1 so alias moves are seen quickly). Registry changes
(a second version, a broken version) are made by a separate process, as an operator would.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import get_args

import httpx
import pytest
import schemathesis
from conftest import free_port, start_background, stop_process_group, training_env, wait_for_http
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from test_api_guards import NOT_STRICT, WRONG

from milkprice.data.schema import CANALES, TIPOS
from milkprice.serving.schemas import Canal, Tipo

pytestmark = pytest.mark.e2e

MILKPRICE = Path(sys.executable).parent / "milkprice"
MODEL = "milk-price-model"
FIELDS = ("estado", "ciudad", "tipo", "canal")
BOUNDS = ("lower_95", "lower_80", "price", "upper_80", "upper_95")

_TRAIN = """
from milkprice.pipeline.training_run import run_training
from milkprice.settings import get_settings
result = run_training(get_settings(), "local", 2025, 2)
assert result.promoted, result
"""
# Runs in its own process with the server's environment: argv[1] is a version to copy, or
# "bogus" (artifacts that do not exist), or "champion N" moves the alias to version N.
_REGISTRY = """
import sys
from mlflow import MlflowClient
client = MlflowClient()
name, action = "milk-price-model", sys.argv[1]
if action == "champion":
    client.set_registered_model_alias(name, "champion", sys.argv[2])
    print(sys.argv[2])
else:
    current = client.get_model_version_by_alias(name, "champion")
    source = current.source if action == "copy" else sys.argv[2]
    made = client.create_model_version(name, source=source, run_id=current.run_id, tags=current.tags)
    client.set_registered_model_alias(name, "champion", made.version)
    print(made.version)
"""


def _python(code: str, *args: str, env: dict[str, str], cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.strip()


def _wait(check: Callable[[], object], timeout_s: float, what: str) -> object:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise TimeoutError(f"{what} within {timeout_s}s")


class Server:
    """A `milkprice api` process in its own process group."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        self.url = f"http://127.0.0.1:{free_port()}"
        self.log = cwd / f"api-{time.time_ns()}.log"
        port = self.url.rsplit(":", 1)[1]
        self.process = start_background([str(MILKPRICE), "api", "--port", port], env, cwd, self.log)
        self.client = httpx.Client(base_url=self.url, timeout=30)

    def wait_live(self) -> None:
        wait_for_http(f"{self.url}/livez", timeout_s=60)

    def stop(self) -> None:
        self.client.close()
        stop_process_group(self.process)

    def alive(self) -> bool:
        return self.process.poll() is None


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> tuple:
    """A seeded demo lake (2024-01..2025-03) and a champion trained on validation month 2025-02."""
    root = tmp_path_factory.mktemp("api")
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")  # skip the migrations
    env = training_env(root, None)
    env["MILKPRICE_API_RELOAD_SECONDS"] = "1"
    _python(_TRAIN, env=env, cwd=root)
    return env, root


@pytest.fixture(scope="module")
def server(trained: tuple) -> Iterator[Server]:
    env, root = trained
    started = Server(env, root)
    try:
        started.wait_live()
        _wait(lambda: started.client.get("/readyz").status_code == 200, 60, "not ready")
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def client(server: Server) -> httpx.Client:
    return server.client


def _row(series: dict, fecha: dt.date | str) -> dict:
    return {**{k: series[k] for k in FIELDS}, "fecha": str(fecha)}


@pytest.fixture(scope="module")
def catalog(client: httpx.Client) -> dict:
    """`/series` and `/model`, with the cut-off and horizon as dates."""
    model = client.get("/model").json()
    series = client.get("/series").json()
    return {
        **series,
        "cutoff": dt.date.fromisoformat(model["cutoff"]),
        "last_date": dt.date.fromisoformat(model["last_date"]),
    }


def _rows(catalog: dict, n: int) -> list[dict]:
    first = catalog["cutoff"] + dt.timedelta(days=1)
    series = catalog["series"]
    return [_row(series[i % len(series)], first + dt.timedelta(days=i % 30)) for i in range(n)]


# --- contract ---------------------------------------------------------------------------------


def test_literals_match_the_lake_schema():
    assert get_args(Tipo) == TIPOS
    assert get_args(Canal) == CANALES


def test_health_and_model(client: httpx.Client, catalog: dict):
    assert client.get("/livez").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200
    model = client.get("/model").json()
    assert model["name"] == MODEL
    assert model["validation_month"] == "2025-02"
    assert model["cutoff"] == "2025-03-31"  # the newest date of the demo lake
    assert model["max_horizon_days"] > 0
    assert model["interval_method"]
    assert model["reload_error"] is None
    assert {"val_rmse", "naive_val_rmse"} <= set(model["metrics"])
    assert model["series"] == len(catalog["series"])
    assert dt.datetime.fromisoformat(model["loaded_at"])


def test_series_lists_forecastable_and_skipped(catalog: dict):
    assert catalog["series"]
    first = catalog["series"][0]
    assert set(first) == {*FIELDS, "last_price"}
    assert first["last_price"] > 0
    # The demo lake has series with no recent price: they are listed with a reason.
    assert catalog["skipped"]
    assert all(item["reason"] for item in catalog["skipped"])


def test_openapi_documents_every_endpoint(client: httpx.Client):
    spec = client.get("/openapi.json").json()
    assert spec["info"]["title"] == "milkprice prediction API"
    assert {"/livez", "/readyz", "/model", "/series", "/predict", "/admin/reload"} <= set(
        spec["paths"]
    )
    predict = spec["paths"]["/predict"]["post"]
    assert {"200", "413", "422", "503"} <= set(predict["responses"])
    assert "PredictResponse" in spec["components"]["schemas"]
    assert client.get("/docs").status_code == 200


# --- predictions ------------------------------------------------------------------------------


def test_predict_one_row(client: httpx.Client, catalog: dict):
    row = _rows(catalog, 1)[0]
    answer = client.post("/predict", json={"rows": [row]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model_version"] == client.get("/model").json()["version"]
    assert body["cutoff"] == str(catalog["cutoff"])
    [prediction] = body["predictions"]
    assert {k: prediction[k] for k in (*FIELDS, "fecha")} == row
    values = [prediction[k] for k in BOUNDS]
    assert values == sorted(values)
    assert 5 < prediction["price"] < 100


def test_predict_10000_rows_in_order(client: httpx.Client, catalog: dict):
    rows = _rows(catalog, 10_000)
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text[:500]
    predictions = answer.json()["predictions"]
    assert len(predictions) == 10_000
    assert [{k: p[k] for k in (*FIELDS, "fecha")} for p in predictions] == rows
    # Same series and date, same answer, wherever the row is in the request.
    assert (
        predictions[0]["price"]
        == client.post("/predict", json={"rows": rows[:1]}).json()["predictions"][0]["price"]
    )


def _errors(answer: httpx.Response) -> list[dict]:
    assert answer.status_code == 422, answer.text
    return answer.json()["detail"]


def test_unknown_and_skipped_series_name_row_and_field(client: httpx.Client, catalog: dict):
    rows = _rows(catalog, 3)
    rows[1] = {**rows[1], "ciudad": "Atlantis"}
    rows[2] = _row(catalog["skipped"][0], rows[2]["fecha"])
    errors = _errors(client.post("/predict", json={"rows": rows}))
    assert [e["loc"] for e in errors] == [
        ["body", "rows", 1, "ciudad"],
        ["body", "rows", 2, "ciudad"],
    ]
    assert "unknown series" in errors[0]["msg"]
    assert "Atlantis" in errors[0]["msg"]
    assert "is not forecast" in errors[1]["msg"]
    assert catalog["skipped"][0]["reason"] in errors[1]["msg"]


@pytest.mark.parametrize(
    ("when", "message"),
    [
        (lambda c: c["cutoff"], "on or before the cut-off"),
        (lambda c: c["cutoff"] - dt.timedelta(days=40), "on or before the cut-off"),
        (lambda c: c["last_date"] + dt.timedelta(days=1), "beyond the horizon"),
        (lambda c: dt.date(9999, 12, 31), "beyond the horizon"),
    ],
)
def test_dates_out_of_range_name_row_and_field(client, catalog, when, message):
    rows = _rows(catalog, 2)
    rows[1]["fecha"] = str(when(catalog))
    [error] = _errors(client.post("/predict", json={"rows": rows}))
    assert error["loc"] == ["body", "rows", 1, "fecha"]
    assert message in error["msg"]
    assert error["type"] == "date_out_of_range"


def test_last_date_within_horizon_is_answered(client: httpx.Client, catalog: dict):
    row = _row(catalog["series"][0], catalog["last_date"])
    assert client.post("/predict", json={"rows": [row]}).status_code == 200


@pytest.mark.parametrize(
    ("change", "loc", "kind"),
    [
        ({"tipo": "Deslactosada"}, ["body", "rows", 0, "tipo"], "literal_error"),
        ({"canal": "Mercados"}, ["body", "rows", 0, "canal"], "literal_error"),
        ({"estado": "x" * 101}, ["body", "rows", 0, "estado"], "string_too_long"),
        ({"ciudad": ""}, ["body", "rows", 0, "ciudad"], "string_too_short"),
        ({"fecha": "2025-13-01"}, ["body", "rows", 0, "fecha"], "date_from_datetime_parsing"),
        ({"precio": 27.0}, ["body", "rows", 0, "precio"], "extra_forbidden"),
    ],
)
def test_malformed_rows_are_422(client, catalog, change, loc, kind):
    row = {**_rows(catalog, 1)[0], **change}
    [error] = _errors(client.post("/predict", json={"rows": [row]}))
    assert error["loc"] == loc
    assert error["type"] == kind


def test_row_count_limits(client: httpx.Client, catalog: dict):
    [empty] = _errors(client.post("/predict", json={"rows": []}))
    assert (empty["loc"], empty["type"]) == (["body", "rows"], "too_short")
    [many] = _errors(client.post("/predict", json={"rows": _rows(catalog, 10_001)}))
    assert (many["loc"], many["type"]) == (["body", "rows"], "too_long")


def test_oversized_body_is_413_before_parsing(client: httpx.Client):
    # Not even JSON: the declared length alone refuses it.
    answer = client.post(
        "/predict",
        content=b"x" * (4 * 1024 * 1024 + 1),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 413
    assert "larger than" in answer.json()["detail"]


def test_oversized_streamed_body_is_413(client: httpx.Client):
    def chunks() -> Iterator[bytes]:  # no Content-Length: chunked transfer encoding
        for _ in range(68):
            yield b" " * 65_536

    answer = client.post("/predict", content=chunks(), headers={"Content-Type": "application/json"})
    assert answer.status_code == 413
    assert client.get("/livez").status_code == 200


# --- reloads (these move the alias: they run after the tests above) --------------------------


def _registry(server_env: dict[str, str], root: Path, *args: str) -> str:
    return _python(_REGISTRY, *args, env=server_env, cwd=root)


def _version(client: httpx.Client) -> str:
    return client.get("/model").json()["version"]


def test_new_champion_is_picked_up_without_restart(client, server, trained, catalog):
    env, root = trained
    before = client.get("/model").json()
    new = _registry(env, root, "copy")
    assert new != before["version"]
    _wait(lambda: _version(client) == new, 30, f"version {new} was not picked up")
    answer = client.post("/predict", json={"rows": _rows(catalog, 1)})
    assert answer.json()["model_version"] == new
    assert server.alive()


def test_admin_reload_answers_what_is_served(client: httpx.Client):
    before = client.get("/model").json()
    answer = client.post("/admin/reload")
    assert answer.status_code == 200, answer.text
    after = answer.json()
    assert after["version"] == before["version"]
    loaded = dt.datetime.fromisoformat
    assert loaded(after["loaded_at"]) > loaded(before["loaded_at"])
    assert after["reload_error"] is None
    assert client.get("/model").json()["loaded_at"] == after["loaded_at"]


def test_failed_reload_keeps_serving_and_says_so(client, server, trained, catalog):
    env, root = trained
    good = _version(client)
    broken = _registry(env, root, "bogus", str(root / "no-such-model"))

    def reported() -> dict | None:
        model = client.get("/model").json()
        return model if model["reload_error"] else None

    model = _wait(reported, 30, "the failed reload was not reported")
    assert model["version"] == good
    assert "still serving version" in model["reload_error"]
    forced = client.post("/admin/reload")
    assert forced.status_code == 503
    assert f"still serving version {good}" in forced.json()["detail"]
    answer = client.post("/predict", json={"rows": _rows(catalog, 1)})
    assert (answer.status_code, answer.json()["model_version"]) == (200, good)
    assert client.get("/readyz").status_code == 200
    # Back to a good champion: the error clears.
    _registry(env, root, "champion", good)
    _wait(lambda: client.get("/model").json()["reload_error"] is None, 30, "error not cleared")
    assert broken != good
    assert server.alive()


# --- no champion ------------------------------------------------------------------------------


def test_no_champion_is_503_and_the_process_lives(tmp_path: Path, mlflow_db_template: Path):
    shutil.copyfile(mlflow_db_template, tmp_path / "mlflow.db")
    env = training_env(tmp_path, None, "2025-01", "2025-01")
    started = Server(env, tmp_path)
    try:
        started.wait_live()
        assert started.client.get("/livez").status_code == 200

        def settled() -> httpx.Response | None:
            answer = started.client.get("/readyz")
            return None if answer.json()["detail"].startswith("loading") else answer

        ready = _wait(settled, 60, "the start-up load did not finish")
        assert ready.status_code == 503
        detail = ready.json()["detail"]
        assert f"model {MODEL!r} has no" in detail
        assert "'champion'" in detail
        assert "run the training flow first" in detail
        row = {"estado": "A", "ciudad": "B", "tipo": TIPOS[0], "canal": CANALES[0]}
        predict = started.client.post("/predict", json={"rows": [{**row, "fecha": "2025-02-03"}]})
        assert (predict.status_code, predict.json()["detail"]) == (503, detail)
        assert started.client.get("/model").status_code == 503
        assert started.client.get("/series").status_code == 503
        assert started.client.post("/admin/reload").status_code == 503
        assert started.alive()
    finally:
        started.stop()


# --- what a browser and a hostile client see ------------------------------------------------


def test_openapi_example_is_a_valid_request_for_the_model_served(client, catalog):
    # Swagger UI's "Try it out" sends this body as it comes.
    document = client.get("/openapi.json").json()
    example = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"][
        "example"
    ]
    (row,) = example["rows"]
    assert catalog["cutoff"] < dt.date.fromisoformat(row["fecha"]) <= catalog["last_date"]
    answer = client.post("/predict", json=example)
    assert answer.status_code == 200, answer.text
    (prediction,) = answer.json()["predictions"]
    assert {k: prediction[k] for k in (*FIELDS, "fecha")} == row
    assert prediction["lower_95"] <= prediction["price"] <= prediction["upper_95"]


def test_responses_carry_the_security_headers(client: httpx.Client):
    for path in ("/livez", "/docs", "/openapi.json"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert "default-src 'self'" in headers["content-security-policy"]


@pytest.mark.parametrize(("body", "named"), [*NOT_STRICT, *WRONG])
def test_hand_made_bodies_are_422_and_the_server_keeps_answering(server, body, named):
    answer = server.client.post(
        "/predict", content=body, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 422, answer.text
    assert named in answer.text
    assert server.client.get("/livez").status_code == 200
    assert server.alive()


# --- schemathesis: no input makes the server fail ------------------------------------------


# Schemathesis' pytest plugin (from_fixture) does not run under pytest 9 (it sets a private
# node attribute that is gone), so each operation's strategy is driven with Hypothesis here.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_input_is_a_server_error(server: Server, mode: GenerationMode):
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == 9  # 6 of the API, 3 of the explorer (options, view, view.csv)
    seen: dict[int, int] = {}

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=50,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def call(case: schemathesis.Case) -> None:
            response = case.call_and_validate(checks=[not_a_server_error])
            seen[response.status_code] = seen.get(response.status_code, 0) + 1

        try:
            call()
        except Unsatisfiable:
            # No negative input exists for an operation without parameters or body.
            assert mode is GenerationMode.NEGATIVE
            assert not operation.body
    assert all(status < 500 for status in seen), seen
    assert server.alive()


def test_server_log_has_no_traceback(server: Server):
    # Last in the module: nothing above made the server log an unhandled error.
    text = server.log.read_text()
    assert "Traceback" not in text, text[-3000:]

"""Bad inputs, as a user meets them: one table of cases, one test.

Every case feeds one bad input through the door a user would use (the `milkprice` CLI, the
training script's arguments, a flow's parameters as Prefect validates them, files in the lake,
a SNIIM workbook, the S3 settings, the prediction API) and asserts three things: the exit code
or HTTP status, a message naming the file, month, column, parameter or row at fault, and that
nothing was written: every file of the lake and of the MLflow registry (database and artifacts)
and every S3 bucket and object hash the same before and after (except the one partition the
zero-price case is meant to write).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import boto3
import numpy as np
import pandas as pd
import pytest
from bad_inputs_world import (
    Case,
    Outcome,
    World,
    both,
    cli,
    env,
    html_xlsx,
    many_rows,
    other_xlsx,
    post,
    put_partition,
    refused,
    rows,
    run_python_cli,
    snapshot,
    with_price,
    with_time_of_day,
    workbook,
)
from conftest import free_port, start_background, stop_process_group, training_env, wait_for_http
from fastapi.testclient import TestClient

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.pipeline.training_run import run_training
from milkprice.serving.api import create_app
from milkprice.settings import get_settings
from milkprice_cli.app import app as full_app
from milkprice_cli.data import app as core_app
from orchestration.flows.forecast_flow import forecast
from orchestration.flows.main_flow import main as training_flow
from orchestration.flows.monitor_flow import monitor
from orchestration.training_cli import run_cli

pytestmark = pytest.mark.e2e

MILKPRICE = Path(sys.executable).parent / "milkprice"
_TRAIN = """
from milkprice.pipeline.training_run import run_training
from milkprice.settings import get_settings
assert run_training(get_settings(), "local", 2025, 2).promoted
"""
TEN_MB = b'{"rows": [' + b" " * (10 * 1024 * 1024) + b"]}"


# --- module-wide parts --------------------------------------------------------------------


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Path:
    """A demo lake 2024-01..2025-03 and a champion validated on 2025-02 (the API serves it)."""
    root = tmp_path_factory.mktemp("bad-inputs-registry")
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")
    env = training_env(root, None)
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return root


@pytest.fixture(scope="module")
def api(champion: Path) -> Iterator[tuple[TestClient, dict]]:
    """The API in process over the champion, ready, with its series and first forecast date."""
    settings = get_settings(
        data_root=champion / "lake", mlflow_tracking_uri=f"sqlite:///{champion / 'mlflow.db'}"
    )
    with TestClient(create_app(settings, "local")) as client:
        deadline = time.monotonic() + 120
        while client.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, client.get("/readyz").text
            time.sleep(0.2)
        model = client.get("/model").json()
        catalog = {
            **client.get("/series").json(),
            "cutoff": date.fromisoformat(model["cutoff"]),
            "last_date": date.fromisoformat(model["last_date"]),
            "first_date": date.fromisoformat(model["cutoff"]) + timedelta(days=1),
        }
        yield client, catalog


@pytest.fixture(scope="module")
def api_server(champion: Path) -> Iterator[str]:
    """The real `milkprice api` (uvicorn) over the same champion, on a loopback port."""
    port = free_port()
    env = training_env(champion, None)
    env.pop("MILKPRICE_N_TRIALS")
    process = start_background(
        [str(MILKPRICE), "api", "--port", str(port)], env, champion, champion / "api.log"
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/livez", timeout_s=120)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process_group(process)


@pytest.fixture(scope="module")
def lake_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three demo months, 2024-12..2025-02, copied for each case."""
    root = tmp_path_factory.mktemp("bad-inputs-lake") / "lake"
    write_demo_lake(Lake(str(root)), Month(2024, 12), Month(2025, 2), seed=3)
    return root


@pytest.fixture(scope="module")
def bucket(s3_endpoint: str, lake_template: Path) -> str:
    """A moto bucket holding the template lake's partitions."""
    name = f"bad-inputs-{time.time_ns()}"
    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    client.create_bucket(Bucket=name)
    for path in sorted(lake_template.rglob("*.parquet")):
        key = str(path.relative_to(lake_template))
        client.put_object(Bucket=name, Key=key, Body=path.read_bytes())
    return name


@pytest.fixture
def world(  # noqa: PLR0917 - the parts of the world are fixtures
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    champion: Path,
    api: tuple[TestClient, dict],
    api_server: str,
    lake_template: Path,
    s3_endpoint: str,
    bucket: str,
) -> World:
    lake_root = tmp_path / "lake"
    shutil.copytree(lake_template, lake_root)
    tracking_uri = f"sqlite:///{champion / 'mlflow.db'}"
    for key in ("MILKPRICE_SOURCE", "MILKPRICE_S3_PREFIX", "PREFECT_API_URL", "STATE_DIR"):
        monkeypatch.delenv(key, raising=False)
    env = {
        "MILKPRICE_DATA_ROOT": str(lake_root),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "AWS_ENDPOINT_URL": s3_endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "S3_BUCKET": bucket,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(tmp_path)
    client, catalog = api
    made = World(
        root=tmp_path,
        lake_root=lake_root,
        registry=champion,
        tracking_uri=tracking_uri,
        s3_endpoint=s3_endpoint,
        bucket=bucket,
        api=client,
        api_url=api_server,
        api_catalog=catalog,
        setenv=monkeypatch.setenv,
    )
    made.names.update(
        lake=str(lake_root),
        tmp=str(tmp_path),
        bucket=bucket,
        jan=made.lake.uri(Month(2025, 1)),
        feb=made.lake.uri(Month(2025, 2)),
        missing_bucket=f"no-such-milk-{time.time_ns()}",
        dead_endpoint=f"http://127.0.0.1:{free_port()}",
        xlsx=str(tmp_path / "leche.xlsx"),
    )
    return made


# --- making bad inputs ------------------------------------------------------------------------


def train(source: str, year: int, month: int) -> object:
    return refused(lambda _: run_training(get_settings(), source, year, month))  # type: ignore[arg-type]


def params(flow: object, **values: object) -> object:
    return refused(lambda _: flow.validate_parameters(values))  # type: ignore[attr-defined]


def script(*argv: str) -> object:
    return lambda world: run_python_cli(run_cli, list(argv))


def zero_price_written(world: World) -> set[str]:
    return {"lake:monthly/2025/03/2025-03-data.parquet"}


def zero_became_missing(world: World, outcome: Outcome) -> None:
    frame, _ = world.lake.read_month(Month(2025, 3))
    assert (frame["Precio"].dropna() > 0).all()
    prices = frame[frame["Ciudad"] == "Hermosillo"].set_index(["Tipo", "Canal"])["Precio"]
    assert np.isnan(prices["Pasteurizada", "Tiendas"])  # the 0 of the workbook
    assert prices["Pasteurizada", "Autoservicios"] == 26.5
    assert (frame["Estado"] == "Sonora").sum() == 4


def loc(*parts: object) -> str:
    return json.dumps(["body", *parts], separators=(",", ":"))


INJECTION = "'; DROP TABLE registered_models; --"
SCRIPT = "<script>alert(1)</script>"

# --- the table ------------------------------------------------------------------------------

CASES = [
    # CLI arguments
    Case("cli-demo-month-13", cli(core_app, "data", "demo", "--start", "2024-13"), 1,
         ("--start", "'2024-13'")),
    Case("cli-ls-source-ftp", cli(core_app, "data", "ls", "--source", "ftp"), 2,
         ("--source", "'ftp'", "local", "s3")),
    Case("cli-backfill-month-13",
         cli(full_app, "backfill", "--start", "2025-13", "--end", "2025-13"), 1,
         ("--start", "'2025-13'")),
    Case("cli-monitor-month-13", cli(full_app, "monitor", "--month", "13"), 2,
         ("--month", "less than or equal to 12")),
    Case("cli-forecast-impossible-cutoff", cli(full_app, "forecast", "--cutoff", "2025-02-30"),
         1, ("--cutoff", "'2025-02-30'")),
    Case("script-month-13", script("--year", "2025", "--month", "13"), 2,
         ("--month", "13 is out of range", "1..12")),
    Case("script-source-ftp", script("--source", "ftp", "--year", "2025", "--month", "2"), 2,
         ("--source", "'ftp'")),
    Case("script-year-1999", script("--year", "1999", "--month", "1"), 2,
         ("--year", "1999 is out of range")),
    Case("env-source-ftp", cli(core_app, "data", "ls"), 1,
         ("MILKPRICE_SOURCE='ftp'", "'local' or 's3'"), arrange=env(MILKPRICE_SOURCE="ftp")),
    Case("env-negative-trials", cli(core_app, "data", "ls"), 1,
         ("MILKPRICE_N_TRIALS='-1'", "greater than or equal to 0"),
         arrange=env(MILKPRICE_N_TRIALS="-1")),
    # flow parameters, validated as Prefect validates a run's (and the server a deployment's)
    Case("flow-train-source-ftp", params(training_flow, source="ftp"), 1,
         ("source", "'local' or 's3'")),
    Case("flow-train-month-13", params(training_flow, year=2025, month=13), 1,
         ("month", "less than or equal to 12")),
    Case("flow-train-year-text", params(training_flow, year="twenty", month=1), 1,
         ("year", "valid integer")),
    Case("flow-monitor-month-13", params(monitor, year=2025, month=13), 1,
         ("month", "less than or equal to 12")),
    Case("flow-forecast-source-ftp", params(forecast, source="ftp"), 1, ("source", "'s3'")),
    Case("train-half-zero-month", train("local", 2025, 0), 1,
         ("year and month must both be 0", "month=0")),
    # lake files
    Case("lake-corrupt-parquet", cli(core_app, "data", "ls"), 1,
         ("{jan}", "not a readable parquet file"),
         arrange=put_partition("2025-01", lambda _: b"PAR1 this is not parquet PAR1")),
    Case("lake-wrong-schema", cli(core_app, "data", "ls"), 1,
         ("{jan}", "missing column(s) ['Precio']", "unexpected column(s) ['Price']"),
         arrange=put_partition("2025-01", lambda f: f.rename(columns={"Precio": "Price"}))),
    Case("lake-text-prices", cli(core_app, "data", "ls"), 1,
         ("{jan}", "column 'Precio' must be numeric"),
         arrange=put_partition("2025-01", lambda f: f.assign(Precio=f["Precio"].astype(str)))),
    Case("lake-infinite-price", cli(core_app, "data", "ls"), 1,
         ("{jan}", "column 'Precio'", "finite", "row 5 (2025-01-", "inf"),
         arrange=put_partition("2025-01", with_price(np.inf))),
    Case("lake-fecha-time-of-day", cli(core_app, "data", "ls"), 1,
         ("{jan}", "column 'Fecha'", "time of day", "row 7 (2025-01-", "10:30:00"),
         arrange=put_partition("2025-01", with_time_of_day)),
    Case("lake-duplicate-rows", cli(core_app, "data", "ls"), 1,
         ("{jan}", "duplicate rows for the key (Fecha, Estado, Ciudad, Tipo, Canal)"),
         arrange=put_partition("2025-01", lambda f: pd.concat([f, f.iloc[:3]]))),
    Case("lake-rows-in-wrong-month", cli(core_app, "data", "ls"), 1,
         ("{jan}", "outside the partition month 2025-01", "2025-02-"),
         arrange=put_partition(
             "2025-01", lambda f: f.assign(Fecha=f["Fecha"] + pd.Timedelta(days=31)))),
    Case("train-missing-partitions", train("local", 2025, 2), 1,
         ("only 2 of the 12 training months", "missing partitions",
          "monthly/2024/02/2024-02-data.parquet")),
    Case("train-validation-month-missing", train("local", 2025, 3), 1,
         ("validation month 2025-03 has no partition", "monthly/2025/03/2025-03-data.parquet")),
    Case("train-corrupt-partition", train("local", 2025, 2), 1,
         ("{jan}", "not a readable parquet file"),
         arrange=put_partition("2025-01", lambda _: b"garbage")),
    Case("push-corrupt-partition", cli(core_app, "data", "push"), 1,
         ("{jan}", "not a readable parquet file"),
         arrange=put_partition("2025-01", lambda _: b"garbage")),
    # SNIIM workbooks
    Case("xlsx-not-sniim", cli(core_app, "data", "ingest", "{xlsx}"), 1,
         ("{xlsx}", "not a SNIIM milk publication"), arrange=other_xlsx),
    Case("xlsx-html-page", cli(core_app, "data", "ingest", "{xlsx}"), 1,
         ("{xlsx}", "not an xlsx workbook", "HTML page"), arrange=html_xlsx),
    Case("xlsx-state-label-on-average-row", cli(core_app, "data", "ingest", "{xlsx}"), 1,
         ("{xlsx}", "row {row}:", "city 'Hermosillo'", "'Sonora'", "average row",
          "'Edo. México'"),
         arrange=workbook([["Sonora", "Promedio estatal", 25.0, 26.0, 27.0, 28.0],
                           [None, "Hermosillo", 25.5, 26.5, 27.5, 28.5]])),
    Case("xlsx-negative-price", cli(core_app, "data", "ingest", "{xlsx}"), 1,
         ("{xlsx}", "row {row}:", "column 4", "-26.5 is not a price"),
         arrange=workbook([["Sonora", "Hermosillo", 25.5, -26.5, 27.5, 28.5]])),
    Case("xlsx-text-price", cli(core_app, "data", "ingest", "{xlsx}"), 1,
         ("{xlsx}", "row {row}:", "column 5", "'n/d' is not a number"),
         arrange=workbook([["Sonora", "Hermosillo", 25.5, 26.5, "n/d", 28.5]])),
    Case("xlsx-same-city-twice", cli(core_app, "data", "ingest", "{xlsx}"), 1,
         ("{xlsx}", "'Jalisco'/'Guadalajara' repeats row"),
         arrange=workbook([["Jalisco", "Guadalajara", 1.0, 2.0, 3.0, 4.0]])),
    Case("xlsx-into-a-corrupt-month", cli(core_app, "data", "ingest", "{xlsx}"), 1,
         ("{feb}", "not a readable parquet file", "{xlsx}"),
         arrange=both(workbook(dates=["2025-01-31", "2025-02-03"]),
                      put_partition("2025-02", lambda _: b"garbage"))),
    Case("xlsx-missing-file", cli(core_app, "data", "ingest", "{tmp}/absent.xlsx"), 1,
         ("{tmp}/absent.xlsx", "no such file")),
    # Zero is SNIIM's "no report": the one accepted case; the price is stored as missing.
    Case("xlsx-zero-price-is-missing", cli(core_app, "data", "ingest", "{xlsx}"), 0,
         ("non_positive_prices", "2025-03"),
         arrange=workbook([["Sonora", "Hermosillo", 0, 26.5, 27.5, 28.5]],
                          dates=["2025-03-03"]),
         changes=zero_price_written, then=zero_became_missing),
    # S3 settings
    Case("s3-unreachable-endpoint", cli(core_app, "data", "ls", "--source", "s3"), 1,
         ("{dead_endpoint}", "cannot reach bucket '{bucket}'", "AWS_ENDPOINT_URL"),
         arrange=env(AWS_ENDPOINT_URL="{dead_endpoint}")),
    Case("s3-malformed-endpoint", cli(core_app, "data", "ls", "--source", "s3"), 1,
         ("endpoint not a url", "AWS_ENDPOINT_URL"), arrange=env(AWS_ENDPOINT_URL="not a url")),
    Case("s3-missing-bucket-ls", cli(core_app, "data", "ls", "--source", "s3"), 1,
         ("bucket '{missing_bucket}' does not exist", "S3_BUCKET"),
         arrange=env(S3_BUCKET="{missing_bucket}")),
    Case("s3-missing-bucket-push", cli(core_app, "data", "push"), 1,
         ("bucket '{missing_bucket}' does not exist",),
         arrange=env(S3_BUCKET="{missing_bucket}")),
    Case("s3-missing-bucket-ingest",
         cli(core_app, "data", "ingest", "{xlsx}", "--source", "s3"), 1,
         ("bucket '{missing_bucket}' does not exist",),
         arrange=both(workbook(), env(S3_BUCKET="{missing_bucket}"))),
    Case("s3-unreachable-training", train("s3", 2025, 2), 1,
         ("LakeError", "{dead_endpoint}", "'{bucket}'"),
         arrange=env(AWS_ENDPOINT_URL="{dead_endpoint}")),
    # API payloads
    Case("api-rows-not-a-list", post({"rows": "all"}), 422, (loc("rows"), "list_type")),
    Case("api-tipo-wrong-type", post(rows(tipo=5)), 422,
         (loc("rows", 0, "tipo"), "literal_error")),
    Case("api-fecha-wrong-type", post(rows(fecha=[2025, 4, 1])), 422,
         (loc("rows", 0, "fecha"), "date_type")),
    Case("api-unknown-series", post(rows(ciudad="Atlantis")), 422,
         (loc("rows", 0, "ciudad"), "unknown series", "Atlantis")),
    Case("api-too-many-rows", post(many_rows(10_001)), 422, (loc("rows"), "too_long")),
    Case("api-no-rows", post({"rows": []}), 422, (loc("rows"), "too_short")),
    Case("api-no-body", post(None), 422, ('"body"', "missing")),
    Case("api-extra-field", post(rows(precio=27.0)), 422,
         (loc("rows", 0, "precio"), "extra_forbidden")),
    Case("api-date-before-cutoff", post(rows(fecha="2025-03-31")), 422,
         (loc("rows", 0, "fecha"), "on or before the cut-off")),
    Case("api-date-far-future", post(rows(fecha="9999-12-31")), 422,
         (loc("rows", 0, "fecha"), "beyond the horizon")),
    Case("api-date-year-1", post(rows(fecha="0001-01-01")), 422,
         (loc("rows", 0, "fecha"), "on or before the cut-off")),
    Case("api-impossible-date", post(rows(fecha="2025-02-30")), 422,
         (loc("rows", 0, "fecha"), "date_from_datetime_parsing")),
    Case("api-sql-injection-name", post(rows(estado=INJECTION)), 422,
         (loc("rows", 0, "ciudad"), "unknown series", "DROP TABLE registered_models")),
    Case("api-script-in-name", post(rows(ciudad=SCRIPT)), 422,
         (loc("rows", 0, "ciudad"), "unknown series", SCRIPT)),
    Case("api-newline-in-name", post(rows(ciudad="Toluca\nINFO forged log line")), 422,
         (loc("rows", 0, "ciudad"), "string_pattern_mismatch")),
    Case("api-name-too-long", post(rows(estado="x" * 101)), 422,
         (loc("rows", 0, "estado"), "string_too_long")),
    Case("api-not-json", lambda w: w.post(content=b'{"rows": [}'), 422,
         ("json_invalid",)),
    Case("api-10mb-body", lambda w: w.post(content=TEN_MB), 413, ("larger than",)),
    Case("api-10mb-body-real-server", lambda w: w.post_real(TEN_MB), 413, ("larger than",)),
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input_is_refused_clearly_and_writes_nothing(case: Case, world: World):
    if case.arrange is not None:
        case.arrange(world)
    before = snapshot(world)
    outcome = case.act(world)
    after = snapshot(world)

    assert outcome.code == case.code, outcome.text[-3000:]
    text = " ".join(outcome.text.split())  # rich may wrap long lines
    for fragment in case.says:
        expected = " ".join(fragment.format(**world.names).split())
        assert expected in text, f"{expected!r} not in {outcome.text[-3000:]!r}"
    assert "Traceback" not in outcome.text
    changed = {key for key in before.keys() | after.keys() if before.get(key) != after.get(key)}
    assert changed == (case.changes(world) if case.changes else set())
    if case.then is not None:
        case.then(world, outcome)

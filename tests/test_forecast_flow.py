"""The batch forecast flow under Prefect, its CLI, and the training flow's schedule-aware month."""

from __future__ import annotations

import io
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
from conftest import flow_run_artifacts
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.pipeline.forecast_run import FORECAST_TABLE_COLUMNS, forecast_keys
from milkprice.pipeline.training_run import run_training
from milkprice.settings import get_settings
from milkprice_cli.app import app
from orchestration.flows.forecast_flow import forecast
from orchestration.tasks.forecasting import FORECAST_SUMMARY_KEY, FORECAST_TABLE_KEY

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CUTOFF = pd.Timestamp("2025-03-31")
SERIES = "Aguascalientes/Aguascalientes/Pasteurizada/Tiendas"


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def trained_root(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Path:
    """A seeded demo lake 2024-01..2025-03 and a champion trained on 2025-02 (once)."""
    root = tmp_path_factory.mktemp("forecast-flow")
    write_demo_lake(Lake(str(root / "lake")), Month(2024, 1), Month(2025, 3), seed=0)
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")
    settings = get_settings(
        data_root=root / "lake", mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}", n_trials=0
    )
    assert run_training(settings, "local", 2025, 2).promoted
    return root


@pytest.fixture
def env(trained_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "MILKPRICE_DATA_ROOT": str(trained_root / "lake"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{trained_root / 'mlflow.db'}",
        "MILKPRICE_N_TRIALS": "2",
    }
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def test_flow_writes_files_and_publishes_table_and_summary(env):
    state = forecast(source="local", series=[SERIES], return_state=True)
    result = state.result()
    flow_run_id = state.state_details.flow_run_id

    lake = Lake(env["MILKPRICE_DATA_ROOT"])
    keys = forecast_keys(CUTOFF)
    frame = pd.read_parquet(io.BytesIO(lake.get_object(keys.parquet)))
    assert list(frame.columns) == FORECAST_TABLE_COLUMNS and len(frame) == result.rows
    assert result.rows == result.series_forecast * frame["Fecha"].nunique()
    assert lake.get_object(keys.csv).startswith(b"Estado,Ciudad,Tipo,Canal,Fecha,price")
    assert len(result.plot_uris) == 2
    for uri in result.plot_uris:
        assert Path(uri).read_bytes().startswith(PNG_MAGIC)

    tables = flow_run_artifacts(flow_run_id, FORECAST_TABLE_KEY)
    summaries = flow_run_artifacts(flow_run_id, FORECAST_SUMMARY_KEY)
    assert len(tables) == len(summaries) == 1
    table = json.loads(tables[0].data) if isinstance(tables[0].data, str) else tables[0].data
    assert len(table) == frame[["Estado", "Tipo"]].drop_duplicates().shape[0]
    assert {"Estado", "Tipo", "last_price", "forecast", "lower_80", "upper_80"} <= set(table[0])
    text = summaries[0].data
    assert "version **1**" in text and "validation month 2025-02" in text
    assert f"rows: {result.rows}" in text
    assert f"Skipped series ({result.series_skipped})" in text and "no price" in text


def test_flow_on_the_s3_lake_writes_there_the_same_forecast(env, s3_env):
    from milkprice.data.sync import push_lake

    settings = get_settings()
    local = Lake.from_settings(settings, "local")
    s3 = Lake.from_settings(settings, "s3")
    push_lake(local, s3)
    forecast(source="local")
    result = forecast(source="s3")
    assert result.parquet_uri.startswith(f"s3://{s3_env['S3_BUCKET']}/forecasts/cutoff=")
    keys = forecast_keys(CUTOFF)
    on_s3 = pd.read_parquet(io.BytesIO(s3.get_object(keys.parquet)))
    assert s3.get_object(keys.csv).startswith(b"Estado,Ciudad,Tipo,Canal,Fecha,price")
    assert s3.get_object(keys.plots[0]).startswith(PNG_MAGIC)
    # The same champion and data give the same numbers, whichever lake they went through.
    locally = pd.read_parquet(io.BytesIO(local.get_object(keys.parquet)))
    pd.testing.assert_frame_equal(on_s3, locally)


def test_flow_refuses_an_unknown_series_by_name(env):
    with pytest.raises(ValueError, match="Nowhere/Atlantis"):
        forecast(source="local", series=["Nowhere/Atlantis/Pasteurizada/Tiendas"])


def test_cli_forecast_prints_where_the_files_went(env):
    result = CliRunner().invoke(app, ["forecast", "--cutoff", "2025-03-14"])
    assert result.exit_code == 0, result.output
    assert "forecast at cut-off 2025-03-14" in result.output
    assert "forecasts/cutoff=2025-03-14/forecast.parquet" in result.output
    assert "reports/cutoff=2025-03-14/forecast.csv" in result.output


def test_cli_forecast_without_champion_exits_2_saying_train_first(env, mlflow_uri, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    result = CliRunner().invoke(app, ["forecast"])
    assert result.exit_code == 2, result.output
    assert "run the training flow first" in result.output
    assert "Traceback" not in result.output


def test_cli_forecast_refuses_a_bad_cutoff(env):
    result = CliRunner().invoke(app, ["forecast", "--cutoff", "31/03/2025"])
    assert result.exit_code != 0
    assert "--cutoff" in result.output and "YYYY-MM-DD" in result.output


def test_scheduled_training_run_resolves_previous_month_of_its_schedule(
    env, mlflow_uri, monkeypatch
):
    """A catch-up run of the March schedule trains on February, whatever today is."""
    from prefect.client.orchestration import get_client
    from prefect.flow_engine import run_flow_sync
    from prefect.states import Scheduled

    from orchestration.flows.main_flow import main

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    parameters = {"source": "local", "year": 0, "month": 0}
    with get_client(sync_client=True) as client:
        flow_run = client.create_flow_run(
            main,
            parameters=parameters,
            state=Scheduled(scheduled_time=datetime(2025, 3, 2, 6, 0, tzinfo=UTC)),
        )
    result = run_flow_sync(main, flow_run=flow_run, parameters=parameters)
    assert result.validation_month == "2025-02"

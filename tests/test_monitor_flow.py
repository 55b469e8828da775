"""The monitoring flow under Prefect: artifacts, alerts to a webhook, and the failure hook."""

from __future__ import annotations

import json
import logging
import shutil
from datetime import date
from pathlib import Path

import pytest
from conftest import flow_run_artifacts
from mlflow import MlflowClient
from prefect.testing.utilities import prefect_test_harness
from typer.testing import CliRunner
from webhook_receiver import webhook_receiver

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.pipeline.forecast_run import run_forecast
from milkprice.pipeline.training_run import run_training
from milkprice.settings import get_settings
from milkprice_cli.app import app
from orchestration.flows.monitor_flow import monitor
from orchestration.tasks.monitoring import MONITOR_SUMMARY_KEY, MONITOR_TABLE_KEY


@pytest.fixture(scope="module", autouse=True)
def harness():
    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture(scope="module")
def monitored_root(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Path:
    """Demo lake 2024-01..2025-03, a champion validated on 2025-02, a forecast from 2025-02-28."""
    root = tmp_path_factory.mktemp("monitor-flow")
    write_demo_lake(Lake(str(root / "lake")), Month(2024, 1), Month(2025, 3), seed=0)
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")
    settings = get_settings(
        data_root=root / "lake", mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}", n_trials=0
    )
    assert run_training(settings, "local", 2025, 2).promoted
    run_forecast(settings, "local", date(2025, 2, 28))  # March is published: it gets scored
    return root


@pytest.fixture
def env(monitored_root: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {
        "MILKPRICE_DATA_ROOT": str(monitored_root / "lake"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{monitored_root / 'mlflow.db'}",
        "MILKPRICE_N_TRIALS": "2",
    }
    for key in ("MILKPRICE_ALERT_WEBHOOK", "MILKPRICE_ALERT_RMSE_RATIO"):
        monkeypatch.delenv(key, raising=False)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    return values


def _published(flow_run_id) -> tuple[list[dict], str]:
    (table,) = flow_run_artifacts(flow_run_id, MONITOR_TABLE_KEY)
    (summary,) = flow_run_artifacts(flow_run_id, MONITOR_SUMMARY_KEY)
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    return rows, summary.data


def test_flow_publishes_the_accuracy_table_and_the_summary(env):
    state = monitor(source="local", year=2025, month=3, return_state=True)
    result = state.result()
    rows, text = _published(state.state_details.flow_run_id)
    assert result["month"] == "2025-03"
    (march,) = rows  # a forecast from 2025-02-28 reaches the end of March
    assert march["month"] == "2025-03" and march["scored"] > 1000 and march["pending"] == 0
    assert 0 < march["coverage_80"] <= 1 and march["rmse"] > 0
    assert text.startswith("# Monitoring 2025-03")
    assert "Champion: version **1**, validated on 2025-02" in text
    assert f"| {march['scored']:.0f} | 0 |" in text
    assert f"## Alerts ({len(result['alerts'])})" in text
    assert result["delivered"] is None  # no webhook configured
    # The HTML report in the lake, and the MLflow run holding it with the month's figures.
    page = Lake(env["MILKPRICE_DATA_ROOT"]).get_object("monitor/reports/2025-03/accuracy.html")
    assert result["report"].endswith("monitor/reports/2025-03/accuracy.html")
    assert page is not None and b"# Monitoring 2025-03" in page and b"<table" in page
    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    (run,) = client.search_runs(
        [client.get_experiment_by_name("milk-price").experiment_id],
        filter_string="tags.kind = 'monitoring' and tags.monitored_month = '2025-03'",
        max_results=1,
    )
    assert run.data.metrics["scored"] == march["scored"]
    assert run.data.metrics["rmse_ratio"] == pytest.approx(march["rmse_ratio"])
    artifacts = [a.path for a in client.list_artifacts(run.info.run_id, "monitoring")]
    assert artifacts[0] == "monitoring/accuracy.html"
    assert len([a for a in artifacts if a.startswith("monitoring/drift-")]) == 4
    # Data drift of March against the 12 months before: one Evidently page per Tipo/Canal.
    pages = Lake(env["MILKPRICE_DATA_ROOT"]).list_objects("monitor/reports/2025-03")
    assert len([key for key in pages if "/drift-" in key]) == 4
    assert "## Data drift" in text and "Share of drifted (Tipo/Canal, column) pairs" in text


def test_an_alert_reaches_the_webhook(env, monkeypatch):
    monkeypatch.setenv("MILKPRICE_ALERT_RMSE_RATIO", "0.01")  # any model alerts
    with webhook_receiver() as receiver:
        monkeypatch.setenv("MILKPRICE_ALERT_WEBHOOK", receiver.url)
        state = monitor(source="local", year=2025, month=3, return_state=True)
    result = state.result()
    assert result["delivered"] is True
    assert "rmse_vs_naive" in [a["check"] for a in result["alerts"]]
    (body,) = receiver.bodies
    assert body["text"].startswith("milkprice: ") and "2025-03: the model's RMSE" in body["text"]
    assert body["alerts"][0]["month"] == "2025-03" and body["alerts"][0]["threshold"] == 0.01
    _, text = _published(state.state_details.flow_run_id)
    assert "**accuracy** (rmse_vs_naive)" in text and "sent to the webhook" in text


def test_a_webhook_answering_500_does_not_fail_the_flow(env, monkeypatch, caplog):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("MILKPRICE_ALERT_RMSE_RATIO", "0.01")
    with webhook_receiver(status=500) as receiver:
        monkeypatch.setenv("MILKPRICE_ALERT_WEBHOOK", receiver.url)
        state = monitor(source="local", year=2025, month=3, return_state=True)
    assert state.is_completed()
    assert state.result()["delivered"] is False and len(receiver.bodies) >= 1
    assert "the alert webhook did not receive" in caplog.text and "HTTP 500" in caplog.text
    assert receiver.url not in caplog.text
    _, text = _published(state.state_details.flow_run_id)
    assert "did NOT receive" in text


def test_a_month_without_stored_forecast_is_a_message_not_a_crash(env):
    state = monitor(source="local", year=2025, month=9, return_state=True)
    assert state.is_completed() and state.result()["alerts"] == []
    _, text = _published(state.state_details.flow_run_id)
    assert "No stored forecast covers 2025-09" in text


def test_a_lake_without_any_forecast_is_a_message_too(env, tmp_path, monkeypatch):
    write_demo_lake(Lake(str(tmp_path / "lake")), Month(2025, 1), Month(2025, 1), seed=0)
    monkeypatch.setenv("MILKPRICE_DATA_ROOT", str(tmp_path / "lake"))
    state = monitor(source="local", year=2025, month=1, return_state=True)
    rows, text = _published(state.state_details.flow_run_id)
    assert rows == [{"month": "2025-01", "note": "no stored forecast"}]
    assert "No stored forecast covers 2025-01" in text


def test_a_failed_flow_run_alerts_the_webhook(env, mlflow_uri, monkeypatch):
    from orchestration.flows.forecast_flow import forecast

    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)  # no champion: the forecast fails
    with webhook_receiver() as receiver:
        monkeypatch.setenv("MILKPRICE_ALERT_WEBHOOK", receiver.url)
        state = forecast(source="local", return_state=True)
    assert state.is_failed()
    (body,) = receiver.bodies
    assert body["alerts"][0]["kind"] == "failure"
    assert "of milk-price-forecast failed" in body["text"] and "training flow first" in body["text"]


def test_cli_monitor_prints_the_alerts(env, monkeypatch):
    monkeypatch.setenv("MILKPRICE_ALERT_MIN_COVERAGE_80", "0.999")
    result = CliRunner().invoke(app, ["monitor", "--year", "2025", "--month", "3"])
    assert result.exit_code == 0, result.output
    assert "monitored 2025-03:" in result.output and "coverage: 2025-03: the 80% interval" in (
        result.output
    )

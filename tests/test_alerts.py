"""Alert thresholds on hand-made accuracy tables, and the webhook sender (no Prefect)."""

from __future__ import annotations

import logging
import math

import pandas as pd
import pytest
from conftest import free_port
from pydantic import SecretStr
from webhook_receiver import webhook_receiver

from milkprice.monitoring.alerts import (
    Alert,
    AlertThresholds,
    evaluate_accuracy,
    failure_alert,
    monitoring_markdown,
    month_accuracy,
    send_alerts,
)
from milkprice.settings import get_settings

THRESHOLDS = AlertThresholds(
    rmse_ratio=1.03, min_coverage_80=0.70, max_rmse_increase=0.25, min_scored_rows=100
)


def _row(month: str, **values: float) -> dict[str, float | str]:
    row: dict[str, float | str] = {
        "month": month,
        "scored": 500.0,
        "pending": 0.0,
        "unreported": 10.0,
        "rmse": 0.40,
        "mae": 0.20,
        "naive_rmse": 0.42,
        "naive_mae": 0.21,
        "coverage_80": 0.78,
        "coverage_95": 0.93,
    }
    row.update(values)
    row["rmse_ratio"] = float(row["rmse"]) / float(row["naive_rmse"])
    row["mae_ratio"] = float(row["mae"]) / float(row["naive_mae"])
    return row


def _table(*rows: dict[str, float | str]) -> pd.DataFrame:
    return pd.DataFrame(list(rows))


def test_a_good_month_raises_nothing():
    assert evaluate_accuracy(_table(_row("2025-03")), THRESHOLDS, champion_val_rmse=0.38) == []


def test_rmse_above_naive_times_ratio_is_an_accuracy_alert():
    alerts = evaluate_accuracy(_table(_row("2025-03", rmse=0.45)), THRESHOLDS)
    assert [(a.kind, a.check, a.month) for a in alerts] == [
        ("accuracy", "rmse_vs_naive", "2025-03")
    ]
    alert = alerts[0]
    assert alert.value == pytest.approx(0.45 / 0.42) and alert.threshold == 1.03
    assert alert.figures["rmse"] == 0.45 and alert.figures["scored"] == 500
    assert "1.071x the naive" in alert.message


def test_ratio_just_at_the_threshold_does_not_alert():
    row = _row("2025-03", rmse=0.42 * 1.03, naive_rmse=0.42)
    assert evaluate_accuracy(_table(row), THRESHOLDS) == []


def test_low_80_coverage_is_a_coverage_alert():
    alerts = evaluate_accuracy(_table(_row("2025-03", coverage_80=0.61)), THRESHOLDS)
    assert [(a.kind, a.check) for a in alerts] == [("coverage", "coverage_80")]
    assert alerts[0].value == 0.61 and "61.0%" in alerts[0].message


def test_rmse_far_above_the_champions_validation_rmse_alerts():
    table = _table(_row("2025-03", rmse=0.40, naive_rmse=0.50))  # still beats naive
    assert evaluate_accuracy(table, THRESHOLDS, champion_val_rmse=0.33) == []  # +21%
    alerts = evaluate_accuracy(table, THRESHOLDS, champion_val_rmse=0.30)  # +33%
    assert [(a.kind, a.check) for a in alerts] == [("accuracy", "rmse_vs_validation")]
    assert alerts[0].threshold == pytest.approx(0.30 * 1.25)
    assert alerts[0].figures["champion_val_rmse"] == 0.30 and "33% above" in alerts[0].message
    assert evaluate_accuracy(table, THRESHOLDS, champion_val_rmse=None) == []


def test_every_rule_can_fire_at_once():
    row = _row("2025-03", rmse=0.60, coverage_80=0.5)
    checks = [a.check for a in evaluate_accuracy(_table(row), THRESHOLDS, champion_val_rmse=0.3)]
    assert checks == ["rmse_vs_naive", "rmse_vs_validation", "coverage_80"]


def test_default_month_is_the_newest_with_scored_rows():
    table = _table(
        _row("2025-02", rmse=0.50),
        _row("2025-03"),
        _row("2025-04", scored=0.0, pending=300.0, rmse=math.nan, coverage_80=math.nan),
    )
    assert month_accuracy(table)["month"] == "2025-03"
    assert evaluate_accuracy(table, THRESHOLDS) == []
    assert [a.month for a in evaluate_accuracy(table, THRESHOLDS, month="2025-02")] == ["2025-02"]


def test_too_few_scored_rows_or_no_row_never_alerts():
    table = _table(_row("2025-03", scored=40.0, rmse=0.9, coverage_80=0.1))
    assert evaluate_accuracy(table, THRESHOLDS) == []
    assert evaluate_accuracy(table, THRESHOLDS, month="2025-07") == []
    assert evaluate_accuracy(pd.DataFrame(), THRESHOLDS) == []
    assert month_accuracy(pd.DataFrame()) is None


def test_thresholds_and_webhook_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("MILKPRICE_ALERT_RMSE_RATIO", "1.1")
    monkeypatch.setenv("MILKPRICE_ALERT_MIN_COVERAGE_80", "0.6")
    monkeypatch.setenv("MILKPRICE_ALERT_WEBHOOK", "https://hooks.example/secret")
    monkeypatch.setenv("MILKPRICE_RETRAIN_ON_ALERT", "true")
    settings = get_settings()
    thresholds = AlertThresholds.from_settings(settings)
    assert (thresholds.rmse_ratio, thresholds.min_coverage_80) == (1.1, 0.6)
    assert thresholds.max_rmse_increase == 0.25 and thresholds.min_scored_rows == 400
    assert settings.retrain_on_alert is True
    assert "secret" not in repr(settings) and "secret" not in str(settings.alert_webhook)
    assert settings.alert_webhook.get_secret_value() == "https://hooks.example/secret"


def test_defaults_are_off():
    settings = get_settings()
    assert settings.alert_webhook is None and settings.retrain_on_alert is False


def test_markdown_says_when_no_forecast_covers_the_month():
    text = monitoring_markdown("2025-05", None, [])
    assert "No stored forecast covers 2025-05" in text and "Alerts (0)" in text


def test_markdown_shows_figures_alerts_and_delivery():
    row = _row("2025-03", coverage_80=0.5)
    alerts = evaluate_accuracy(_table(row), THRESHOLDS)
    text = monitoring_markdown("2025-03", row, alerts, delivered=None)
    assert "| 500 | 0 | 10 | 0.4000 | 0.4200 |" in text and "50.0%" in text
    assert "**coverage** (coverage_80)" in text and "no webhook configured" in text
    assert "did NOT receive" in monitoring_markdown("2025-03", row, alerts, delivered=False)


ALERTS = [
    Alert("accuracy", "rmse_vs_naive", "2025-03: too high", "2025-03", 1.1, 1.03, {"rmse": 0.5}),
    failure_alert("milk-price-training", "clever-fox", "boom"),
]


def test_sender_posts_slack_compatible_json():
    with webhook_receiver() as receiver:
        assert send_alerts(ALERTS, SecretStr(receiver.url)) is True
    assert receiver.paths == ["/services/T000/B000/s3cr3t-token"]
    (body,) = receiver.bodies
    assert body["text"].splitlines() == [
        "milkprice: 2 alert(s)",
        "- 2025-03: too high",
        "- flow run clever-fox of milk-price-training failed: boom",
    ]
    assert body["alerts"][0] == {
        "kind": "accuracy",
        "check": "rmse_vs_naive",
        "message": "2025-03: too high",
        "month": "2025-03",
        "value": 1.1,
        "threshold": 1.03,
        "figures": {"rmse": 0.5},
    }


def test_sender_without_webhook_or_alerts_sends_nothing():
    assert send_alerts(ALERTS, None) is False
    assert send_alerts(ALERTS, SecretStr("")) is False
    with webhook_receiver() as receiver:
        assert send_alerts([], SecretStr(receiver.url)) is False
    assert receiver.bodies == []


def _assert_no_url(caplog: pytest.LogCaptureFixture, url: str) -> None:
    everything = "\n".join(r.getMessage() for r in caplog.records)
    assert url not in everything and "s3cr3t" not in everything
    # milkprice's own lines name nothing of the URL (httpcore's DEBUG trace names the host)
    ours = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("milkprice"))
    assert "not delivered" in ours or "invalid" in ours
    assert "127.0.0.1" not in ours and "http" not in ours.replace("HTTP ", "")


def test_receiver_down_returns_false_without_raising_or_logging_the_url(caplog):
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/services/T000/B000/s3cr3t-token"
    assert send_alerts(ALERTS, SecretStr(url), backoff_s=0.01) is False
    _assert_no_url(caplog, url)
    assert "ConnectError" in caplog.text


def test_receiver_answering_500_is_retried_then_false(caplog):
    caplog.set_level(logging.DEBUG)
    with webhook_receiver(status=500) as receiver:
        assert send_alerts(ALERTS, SecretStr(receiver.url), attempts=3, backoff_s=0.01) is False
    assert len(receiver.bodies) == 3
    _assert_no_url(caplog, receiver.url)
    assert "HTTP 500" in caplog.text


def test_a_client_error_is_not_retried(caplog):
    with webhook_receiver(status=404) as receiver:
        assert send_alerts(ALERTS, SecretStr(receiver.url), backoff_s=0.01) is False
    assert len(receiver.bodies) == 1


def test_a_malformed_webhook_is_reported_without_echoing_it(caplog):
    caplog.set_level(logging.DEBUG)
    assert send_alerts(ALERTS, SecretStr("not a url s3cr3t")) is False
    _assert_no_url(caplog, "not a url s3cr3t")

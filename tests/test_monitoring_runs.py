"""The monitoring's scored months read back from MLflow (what the explorer page shows)."""

from __future__ import annotations

from milkprice.monitoring.report import log_monitoring_run
from milkprice.registry.monitoring_runs import scored_months
from milkprice.settings import get_settings


def test_scored_months_are_the_newest_run_of_each_month_with_scored_rows(mlflow_uri, tmp_path):
    settings = get_settings(data_root=str(tmp_path / "lake"), mlflow_tracking_uri=mlflow_uri)
    assert scored_months(mlflow_uri, settings.mlflow_experiment) == []  # no experiment yet
    page = b"<html></html>"
    log_monitoring_run(settings, "2025-01", {"scored": 10.0, "mae_ratio": 1.2}, 0, page)
    log_monitoring_run(settings, "2025-01", {"scored": 50.0, "mae_ratio": 0.9}, 0, page)
    log_monitoring_run(settings, "2024-12", {"scored": 30.0, "coverage_95": 0.94}, 1, page)
    log_monitoring_run(settings, "2025-02", {"scored": 0.0, "pending": 40.0}, 0, page)
    log_monitoring_run(settings, "2025-03", None, 0, page)
    months = scored_months(mlflow_uri, settings.mlflow_experiment)
    assert [m.month for m in months] == ["2024-12", "2025-01"]
    december, january = months
    assert (january.scored, january.mae_ratio, january.rmse_ratio) == (50, 0.9, None)
    assert (december.scored, december.coverage_95, december.mae_ratio) == (30, 0.94, None)

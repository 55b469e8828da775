"""The monitoring's scored months as MLflow holds them: one ``monitor-YYYY-MM`` run per month.

The monitoring flow (:func:`milkprice.monitoring.report.log_monitoring_run`) logs each month's
accuracy figures to a run tagged :data:`KIND_TAG` = :data:`MONITORING_KIND`; this module names
those tags (the one place) and reads the figures back, for readers below the monitoring stage
(the API's explorer page shows them beside the model in service).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mlflow import MlflowClient

from milkprice.registry.locks import mlflow_lock

__all__ = [
    "KIND_TAG",
    "MONITORED_MONTH_TAG",
    "MONITORING_KIND",
    "ScoredMonth",
    "scored_months",
]

KIND_TAG = "kind"
MONITORING_KIND = "monitoring"
MONITORED_MONTH_TAG = "monitored_month"
_FIGURES = ("scored", "rmse_ratio", "mae_ratio", "coverage_80", "coverage_95")


@dataclass(frozen=True)
class ScoredMonth:
    """One month's accuracy of the stored forecasts, as the monitoring flow scored it."""

    month: str
    scored: int
    rmse_ratio: float | None
    mae_ratio: float | None
    coverage_80: float | None
    coverage_95: float | None


def _figure(metrics: dict[str, float], name: str) -> float | None:
    value = metrics.get(name)
    return float(value) if value is not None and math.isfinite(value) else None


def scored_months(tracking_uri: str, experiment: str) -> list[ScoredMonth]:
    """Every month the monitoring flow scored (at least one row), oldest first.

    The newest run of a month wins (the flow may run several times in a month). An experiment
    that does not exist yet has no scored month.

    Args:
        tracking_uri: The MLflow tracking store.
        experiment: The experiment the monitoring runs are logged to.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    with mlflow_lock(tracking_uri):
        found = client.get_experiment_by_name(experiment)
        if found is None:
            return []
        runs = client.search_runs(
            [found.experiment_id],
            filter_string=f"tags.{KIND_TAG} = '{MONITORING_KIND}'",
            order_by=["attributes.start_time DESC"],
            max_results=500,
        )
    months: dict[str, ScoredMonth] = {}
    for run in runs:
        month = run.data.tags.get(MONITORED_MONTH_TAG, "")
        metrics = run.data.metrics
        scored = _figure(metrics, "scored")
        if not month or month in months or not scored:
            continue
        months[month] = ScoredMonth(
            month=month,
            scored=int(scored),
            **{name: _figure(metrics, name) for name in _FIGURES[1:]},
        )
    return [months[m] for m in sorted(months)]

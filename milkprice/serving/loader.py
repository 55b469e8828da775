"""Build a :class:`~milkprice.serving.predictor.Predictor` from the registry and the lake.

The version is the one holding the ``champion`` alias unless one is named; the history is read
from the lake (local or S3, the one code path) up to the data cut-off, by default the newest
publication date in the lake.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

import mlflow
import pandas as pd
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.registry.locks import mlflow_lock
from milkprice.registry.promotion import CHAMPION_ALIAS, VALIDATION_MONTH_TAG
from milkprice.serving.predictor import ModelInfo, Predictor
from milkprice.settings import Settings, Source

__all__ = [
    "HISTORY_MONTHS",
    "NoChampionError",
    "RegisteredVersion",
    "latest_cutoff",
    "load_predictor",
    "read_history",
    "resolve_version",
]

# Months of history read before the cut-off's month: the longest look-back is 91 days.
HISTORY_MONTHS = 4
_INFO_METRICS = (
    "val_rmse",
    "val_mae",
    "naive_val_rmse",
    "naive_val_mae",
    "trusted_val_rmse",
    "trusted_val_mae",
    "rmse_ratio_to_naive",
    "mae_ratio_to_naive",
    "brier_change",
    "base_brier_change",
    "coverage_80",
    "coverage_95",
)


class NoChampionError(LookupError):
    """The registry has no version to serve; the message says to train first."""


@dataclass(frozen=True)
class RegisteredVersion:
    """A version of the registered model, as the predictor needs it."""

    name: str
    version: str
    validation_month: str
    run_id: str
    tags: dict[str, str] = field(default_factory=dict)


def resolve_version(settings: Settings, version: str | None = None) -> RegisteredVersion:
    """The version named, else the one holding the ``champion`` alias.

    Raises:
        NoChampionError: no champion (or no such version) in the registry.
    """
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    name = settings.registered_model
    try:
        # Under the store's lock (a file lock for SQLite, nothing for servers): the first touch
        # of a new SQLite store migrates it, and two processes migrating at once break it.
        with mlflow_lock(settings.mlflow_tracking_uri):
            found = (
                client.get_model_version(name, version)
                if version
                else client.get_model_version_by_alias(name, CHAMPION_ALIAS)
            )
    except MlflowException as exc:
        wanted = (
            f"version {version}" if version else f"version holding the {CHAMPION_ALIAS!r} alias"
        )
        raise NoChampionError(
            f"model {name!r} has no {wanted} in {settings.mlflow_tracking_uri}; run the "
            "training flow first (`make run`, or `python orchestration/flows/main_flow.py "
            "--latest`)"
        ) from exc
    return RegisteredVersion(
        name=name,
        version=str(found.version),
        validation_month=found.tags.get(VALIDATION_MONTH_TAG, ""),
        run_id=found.run_id or "",
        tags=dict(found.tags),
    )


def latest_cutoff(lake: Lake) -> pd.Timestamp:
    """The newest publication date in the lake.

    Raises:
        FileNotFoundError: the lake has no partition.
    """
    months = lake.list_months()
    if not months:
        raise FileNotFoundError(
            f"no partition in the lake at {lake.base_uri}; fill it with `milkprice data demo` "
            "or `milkprice data ingest`"
        )
    frame, _ = lake.read_month(months[-1])
    return pd.Timestamp(frame["Fecha"].max()).normalize()


def read_history(lake: Lake, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The lake's rows from ``HISTORY_MONTHS`` before the cut-off's month up to the cut-off."""
    last = Month.of(cutoff)
    window = lake.read_window(month_range(last.shift(-HISTORY_MONTHS), last))
    return window.frame.loc[window.frame["Fecha"] <= cutoff].reset_index(drop=True)


def load_predictor(
    settings: Settings,
    source: Source | None = None,
    *,
    cutoff: pd.Timestamp | None = None,
    version: str | None = None,
) -> Predictor:
    """The predictor of ``version`` (default: the champion) at ``cutoff`` (default: newest data).

    Raises:
        NoChampionError: nothing to serve yet.
        FileNotFoundError: the lake is empty.
        ValueError: the version has no interval table, or no series is fresh at the cut-off.
    """
    registered = resolve_version(settings, version)
    lake = Lake.from_settings(settings, source)
    at = pd.Timestamp(cutoff).normalize() if cutoff is not None else latest_cutoff(lake)
    history = read_history(lake, at)
    mlflow.set_tracking_uri(settings.mlflow_tracking_uri)
    model_uri = f"models:/{registered.name}/{registered.version}"
    forecaster = mlflow.pyfunc.load_model(model_uri).unwrap_python_model().forecaster_
    metrics: dict[str, float] = {}
    trained_at = None
    if registered.run_id:
        logged = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(registered.run_id)
        metrics = {k: float(v) for k, v in logged.data.metrics.items() if k in _INFO_METRICS}
        if logged.info.start_time:
            trained_at = datetime.fromtimestamp(logged.info.start_time / 1000, UTC)
    info = ModelInfo(
        name=registered.name,
        version=registered.version,
        validation_month=registered.validation_month,
        run_id=registered.run_id,
        metrics=metrics,
        trained_at=trained_at,
        tags=registered.tags,
    )
    return Predictor(forecaster, info, history, at)

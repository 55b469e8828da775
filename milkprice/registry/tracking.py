"""MLflow tracking: where runs go, and how a forecaster is logged as a model.

Flavor choice: a ``pyfunc`` model whose artifact is the forecaster's own files (LightGBM
boosters as text, configuration as JSON, see :meth:`MilkForecaster.to_artifacts`; the trusted
last-price baseline is JSON only). The sklearn
flavor would pickle (skops) a pipeline of LightGBM objects, which MLflow 3.17 refuses unless
their types are declared trusted, and pickles tie a model to library versions; text files do
not. The model is logged "from code" (``pyfunc_entry.py``), so nothing is pickled; loading needs
the ``milkprice`` package, which is shipped with the model (``code_paths``).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

import milkprice
from milkprice.data.schema import COLUMNS
from milkprice.model.answers import Forecaster, forecast_frame, load_forecaster
from milkprice.model.features import future_publication_dates
from milkprice.months import Month
from milkprice.registry.locks import mlflow_lock, registry_lock

__all__ = [
    "LoggedRun",
    "MilkForecasterModel",
    "configure_mlflow",
    "log_training_run",
    "mlflow_lock",
    "registry_lock",
    "run_url",
]

MODEL_NAME_IN_RUN = "model"


@dataclass(frozen=True)
class LoggedRun:
    """An MLflow run that holds a logged forecaster."""

    run_id: str
    experiment_id: str
    model_uri: str


class MilkForecasterModel(mlflow.pyfunc.PythonModel):
    """pyfunc wrapper: input is the price history, output the next month's forecasts.

    The output has the columns of every milkprice forecast: ``price`` (the median), ``mean``,
    ``p_change`` and the 80/95% bounds, computed by the same function as the API's answers.

    ``model_input`` holds tidy rows (``Fecha, Estado, Ciudad, Tipo, Canal, Precio``) up to the
    origin. ``params`` may give ``origin`` (ISO date; default: the end of the history's last
    month) and ``target_dates`` (comma-separated ISO dates; default: the Monday, Wednesday and
    Friday publication dates of the month after the origin).
    """

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        """Load the forecaster from its text artifacts."""
        self.forecaster_ = load_forecaster(Path(context.artifacts["forecaster"]))

    def predict(
        self,
        context: mlflow.pyfunc.PythonModelContext,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        """Forecast every series in ``model_input`` at the target dates."""
        history = model_input.copy()
        history["Fecha"] = pd.to_datetime(history["Fecha"])
        params = params or {}
        origin_text = params.get("origin") or ""
        origin = pd.Timestamp(origin_text) if origin_text else Month.of(history["Fecha"].max()).end
        dates_text = params.get("target_dates") or ""
        target_dates = (
            [pd.Timestamp(d) for d in dates_text.split(",") if d.strip()]
            if dates_text
            else future_publication_dates(Month.of(origin).shift(1))
        )
        return forecast_frame(self.forecaster_, history, origin, target_dates)


def configure_mlflow(tracking_uri: str, experiment: str) -> str:
    """Point MLflow at ``tracking_uri`` and make sure ``experiment`` exists; return its id.

    A new experiment in a SQLite store keeps its artifacts in ``mlruns/`` beside the database
    file (MLflow's own default is ``./mlruns`` in whatever the working directory happens to be,
    which scatters one store's artifacts over every folder a command was started from).
    """
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow_lock(tracking_uri):
        if mlflow.get_experiment_by_name(experiment) is None:
            try:
                mlflow.create_experiment(experiment, artifact_location=_artifact_root(tracking_uri))
            except MlflowException as exc:
                # A worker on another machine created it first (the file lock covers one).
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
        return mlflow.set_experiment(experiment).experiment_id


def _artifact_root(tracking_uri: str) -> str | None:
    """``file://`` URI of ``mlruns/`` beside a SQLite database; ``None`` (the server's choice) else."""
    prefix = "sqlite:///"
    if not tracking_uri.startswith(prefix):
        return None
    database = Path(tracking_uri[len(prefix) :]).resolve()
    return (database.parent / "mlruns").as_uri()


def run_url(tracking_uri: str, experiment_id: str, run_id: str, ui_url: str) -> str:
    """Address of a run in the MLflow UI (the tracking server itself when it is HTTP)."""
    base = tracking_uri if tracking_uri.startswith(("http://", "https://")) else ui_url
    return f"{base.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def _signature_example(forecaster: Forecaster, history: pd.DataFrame) -> Any:
    origin = Month.of(history["Fecha"].max()).end
    example = history.loc[:, COLUMNS].tail(8).reset_index(drop=True)
    output = forecast_frame(
        forecaster, history, origin, future_publication_dates(Month.of(origin).shift(1))
    )
    return infer_signature(
        example, output.head(8), params={"origin": "", "target_dates": ""}
    ), example


def log_training_run(
    *,
    tracking_uri: str,
    experiment_id: str,
    run_name: str,
    forecaster: Forecaster,
    history: pd.DataFrame,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    tags: Mapping[str, str],
    figures: Mapping[str, Path] | None = None,
    tables: Mapping[str, pd.DataFrame] | None = None,
) -> LoggedRun:
    """Log one training run: params, metrics, tags, figures, tables and the pyfunc model.

    ``history`` is the data the final model was fitted on; a few rows of it become the
    model's input example and signature.
    """
    mlflow.set_tracking_uri(tracking_uri)
    signature, example = _signature_example(forecaster, history)
    with (
        mlflow_lock(tracking_uri),
        mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run,
        tempfile.TemporaryDirectory() as workdir,
    ):
        mlflow.log_params({k: str(v) for k, v in params.items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
        mlflow.set_tags(dict(tags))
        for name, path in (figures or {}).items():
            mlflow.log_artifact(str(path), artifact_path=name)
        for name, table in (tables or {}).items():
            mlflow.log_table(table, artifact_file=f"{name}.json")
        artifact_dir = Path(workdir) / "forecaster"
        forecaster.to_artifacts(artifact_dir)
        info = mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=str(Path(__file__).parent / "pyfunc_entry.py"),
            artifacts={"forecaster": str(artifact_dir)},
            code_paths=[str(Path(milkprice.__file__).parent)],
            pip_requirements=_requirements(),
            signature=signature,
            input_example=example,
        )
        return LoggedRun(run.info.run_id, experiment_id, info.model_uri)


def _requirements() -> list[str]:
    names = ("lightgbm", "numpy", "pandas", "pyarrow", "mlflow")
    return [f"{name}=={version(name)}" for name in names]

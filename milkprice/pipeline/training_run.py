"""The monthly training run as plain steps: read, check, train, log, register, promote.

The Prefect flow (``orchestration/flows/main_flow.py``) wraps each step in a task;
:func:`run_training` calls the same steps in a row, for a run without an orchestrator and as
the baseline the flow's overhead is measured against.
"""

from __future__ import annotations

import dataclasses
import subprocess
import tempfile
from collections.abc import Callable
from datetime import date
from functools import cache
from pathlib import Path

import mlflow
import pandas as pd
from pydantic import BaseModel

import milkprice
from milkprice.data.lake import Lake, LakeWindow
from milkprice.model.aggregate import dependence_of
from milkprice.model.baseline import fit_baseline
from milkprice.model.training import (
    MIN_TRAINING_MONTHS,
    TRAINING_MONTHS,
    TrainingOutcome,
    WindowSplit,
    evaluate_on_month,
    split_window,
    train_and_evaluate,
)
from milkprice.months import Month, month_range, previous_month
from milkprice.plots import plot_forecast_vs_actual
from milkprice.registry.promotion import (
    GATE_SCORE_TAG,
    Champion,
    PromotionDecision,
    baseline_score,
    gate_score,
    promote_baseline,
    promote_if_better,
    register_version,
)
from milkprice.registry.tracking import LoggedRun, configure_mlflow, log_training_run, mlflow_lock
from milkprice.settings import Settings, Source

__all__ = [
    "TrainingResult",
    "check_window",
    "code_version",
    "load_training_window",
    "log_and_register",
    "metrics_table",
    "newest_complete_month",
    "promote_candidate",
    "register_baseline",
    "resolve_validation_month",
    "run_training",
    "serve_baseline_if_needed",
    "summary_text",
    "training_result",
    "window_months",
]

MIN_YEAR, MAX_YEAR = 2000, 2100
RUN_STATUS_TAG, RUN_COMPLETE = "run_status", "complete"


class TrainingResult(BaseModel):
    """What a training run returns to its caller (and the flow to Prefect)."""

    validation_month: str
    source: str
    metrics: dict[str, float]
    model_version: str
    run_id: str
    promoted: bool
    reason: str
    data_fingerprint: str
    code_version: str
    missing_months: list[str]
    # True: nothing trained, a complete run of the month for the same data and code exists
    # (``run_id``, ``model_version`` and ``metrics`` are that run's); see ``force``.
    skipped: bool = False


def resolve_validation_month(year: int, month: int, today: date | None = None) -> Month:
    """``(0, 0)`` means the previous calendar month; otherwise both must be set and valid.

    Raises:
        ValueError: naming ``year`` or ``month`` when it is out of range or only one is 0.
    """
    if year == 0 and month == 0:
        return previous_month(today)
    if year == 0 or month == 0:
        raise ValueError(
            f"year and month must both be 0 (the previous calendar month) or both be set; "
            f"got year={year}, month={month}"
        )
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise ValueError(f"year must be 0 or between {MIN_YEAR} and {MAX_YEAR}, got {year}")
    if not 1 <= month <= 12:
        raise ValueError(f"month must be between 0 and 12, got {month}")
    return Month(year, month)


def newest_complete_month(lake: Lake, today: date | None = None) -> Month:
    """The newest month in the lake that has ended (the current month is still being published)."""
    current = Month.of(today or date.today())
    complete = [m for m in lake.list_months() if m < current]
    if not complete:
        raise FileNotFoundError(
            f"no complete month in the lake at {lake.base_uri}; "
            "fill it with `milkprice data demo` or `milkprice data ingest`"
        )
    return complete[-1]


def summary_text(result: TrainingResult, settings: Settings) -> str:
    """What a person reads after a run: metrics beside baselines, the decision, where to look."""
    rows = metrics_table(result.metrics)
    done = f"nothing trained, {result.reason}" if result.skipped else ""
    lines = [
        f"Validation month {result.validation_month} (source {result.source}): "
        f"{done or f'model version {result.model_version}'}",
        f"{'forecast':<20}{'RMSE':>8}{'MAE':>8}{'RMSE/naive':>12}{'MAE/naive':>11}",
    ]
    lines += [
        f"{row['forecast']:<20}{row['rmse']:>8.4f}{row['mae']:>8.4f}"
        f"{row['rmse_vs_naive']:>12.3f}{row['mae_vs_naive']:>11.3f}"
        for row in rows
    ]
    decision = f"{'promoted' if result.promoted else 'not promoted'} ({result.reason})"
    lines += [
        f"champion: {'unchanged' if result.skipped else decision}",
        f"MLflow UI:  .venv/bin/mlflow ui --backend-store-uri {settings.mlflow_tracking_uri}"
        if not settings.mlflow_tracking_uri.startswith("http")
        else f"MLflow UI:  {settings.mlflow_tracking_uri}",
        "Prefect UI: make up  (server, MLflow UI and the scheduled deployments)",
    ]
    return "\n".join(lines)


def window_months(validation_month: Month) -> list[Month]:
    """The 12 training months and the validation month, oldest first."""
    return month_range(validation_month.shift(-TRAINING_MONTHS), validation_month)


def load_training_window(lake: Lake, validation_month: Month) -> LakeWindow:
    """Read (and validate) every partition of the window that exists."""
    return lake.read_window(window_months(validation_month))


def check_window(lake: Lake, window: LakeWindow, validation_month: Month) -> WindowSplit:
    """Refuse a window that cannot train a model, naming the partitions that are missing."""
    if validation_month in window.missing:
        raise FileNotFoundError(
            f"validation month {validation_month} has no partition: {lake.uri(validation_month)}"
        )
    training_missing = [m for m in window.missing if m != validation_month]
    if TRAINING_MONTHS - len(training_missing) < MIN_TRAINING_MONTHS:
        paths = ", ".join(lake.uri(m) for m in training_missing)
        raise FileNotFoundError(
            f"only {TRAINING_MONTHS - len(training_missing)} of the {TRAINING_MONTHS} training "
            f"months before {validation_month} are in the lake (need {MIN_TRAINING_MONTHS}); "
            f"missing partitions: {paths}"
        )
    return split_window(window.frame, validation_month)


@cache
def code_version() -> str:
    """Package version plus the git commit when running from a checkout."""
    root = Path(milkprice.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return f"{milkprice.__version__}+{commit}" if commit else milkprice.__version__


def metrics_table(metrics: dict[str, float]) -> list[dict[str, object]]:
    """Model beside the baselines, one dict per row (what a Prefect table artifact renders).

    The model's MAE is its median's, its RMSE its mean's; a baseline is one number scored both
    ways.
    """
    naive_rmse = metrics["naive_val_rmse"]
    naive_mae = metrics["naive_val_mae"]
    return [
        {
            "forecast": name,
            "rmse": round(metrics[f"{prefix}val_rmse"], 4),
            "mae": round(metrics[f"{prefix}val_mae"], 4),
            "rmse_vs_naive": round(metrics[f"{prefix}val_rmse"] / naive_rmse, 4),
            "mae_vs_naive": round(metrics[f"{prefix}val_mae"] / naive_mae, 4),
        }
        for name, prefix in (
            ("model (median / mean)", ""),
            ("trusted last price", "trusted_"),
            ("naive (last price)", "naive_"),
            ("series mean", "mean_"),
        )
        if f"{prefix}val_rmse" in metrics
    ]


def log_and_register(
    settings: Settings,
    outcome: TrainingOutcome,
    window: LakeWindow,
    source: Source,
) -> tuple[LoggedRun, str]:
    """Log the run to MLflow (params, metrics, tags, PNG, model) and register a version."""
    experiment_id = configure_mlflow(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    month = outcome.validation_month
    tags = {
        "validation_month": str(month),
        GATE_SCORE_TAG: f"{gate_score(outcome.metrics):.6f}",
        "source": source,
        "data_fingerprint": window.fingerprint,
        "code_version": code_version(),
        "training_months": ",".join(str(m) for m in outcome.split.training_months),
        "missing_months": ",".join(str(m) for m in outcome.split.missing_months),
    }
    params = {
        **outcome.params,
        "seed": settings.seed,
        "n_trials": outcome.tuning.n_trials,
        "training_months": len(outcome.split.training_months),
        "rows_read": len(window.frame),
        # The served model's, what its state and national bands are simulated with.
        "aggregate_dependence": dependence_of(outcome.forecaster),
    }
    with tempfile.TemporaryDirectory() as workdir:
        figure = plot_forecast_vs_actual(
            outcome.evaluation.predictions,
            Path(workdir) / f"forecast_vs_actual_{month}.png",
            f"Validation month {month}: forecast vs actual",
        )
        logged = log_training_run(
            tracking_uri=settings.mlflow_tracking_uri,
            experiment_id=experiment_id,
            run_name=f"train-{month}",
            forecaster=outcome.forecaster,
            history=window.frame,
            params=params,
            metrics={k: v for k, v in outcome.metrics.items() if pd.notna(v)},
            tags=tags,
            figures={"figures": figure},
            tables={"validation_metrics": pd.DataFrame(metrics_table(outcome.metrics))},
        )
    version = register_version(
        settings.mlflow_tracking_uri, settings.registered_model, logged, tags
    )
    return logged, version


BASELINE_TAG = "kind"


def register_baseline(
    settings: Settings, outcome: TrainingOutcome, window: LakeWindow, source: Source
) -> tuple[str, bool]:
    """Register the trusted last price (with conformal intervals) and serve it if nothing is.

    Its metrics are the trusted last price's on the validation month (``val_*`` = ``trusted_*``);
    its ``gate_score`` tag is its out-of-sample score there, which a candidate must beat.

    Returns:
        The baseline's version, and whether it took the ``champion`` alias.
    """
    month = outcome.validation_month
    baseline = fit_baseline(window.frame, outcome.split.refit_origins, month.end)
    metrics = dict(outcome.metrics)
    metrics.update(val_mae=metrics["trusted_val_mae"], val_rmse=metrics["trusted_val_rmse"])
    metrics = {
        k: v
        for k, v in metrics.items()
        if pd.notna(v)
        and (k.startswith(("naive_", "trusted_", "mean_", "n_")) or k in ("val_mae", "val_rmse"))
    }
    experiment_id = configure_mlflow(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    tags = {
        BASELINE_TAG: "baseline",
        "validation_month": str(month),
        GATE_SCORE_TAG: f"{baseline_score(outcome.metrics):.6f}",
        "source": source,
        "data_fingerprint": window.fingerprint,
        "code_version": code_version(),
    }
    logged = log_training_run(
        tracking_uri=settings.mlflow_tracking_uri,
        experiment_id=experiment_id,
        run_name=f"baseline-{month}",
        forecaster=baseline,
        history=window.frame,
        params={"kind": "trusted last price", "interval_method": baseline.intervals_.method},
        metrics=metrics,
        tags=tags,
    )
    version = register_version(
        settings.mlflow_tracking_uri, settings.registered_model, logged, tags
    )
    taken = promote_baseline(settings.mlflow_tracking_uri, settings.registered_model, version)
    return version, taken


def _rescorer(frame: pd.DataFrame, month: Month) -> Callable[[Champion], float]:
    def rescore(champion: Champion) -> float:
        model = mlflow.pyfunc.load_model(champion.model_uri).unwrap_python_model()
        return gate_score(evaluate_on_month(model.forecaster_, frame, month).metrics)

    return rescore


def promote_candidate(
    settings: Settings,
    logged: LoggedRun,
    version: str,
    outcome: TrainingOutcome,
    frame: pd.DataFrame,
) -> PromotionDecision:
    """Run the promotion gate for a registered version (champion re-scored on ``frame``).

    The MLflow run is then tagged ``run_status=complete``: a backfill counts a month as done
    only when its run got this far.
    """
    decision = promote_if_better(
        tracking_uri=settings.mlflow_tracking_uri,
        model_name=settings.registered_model,
        candidate_version=version,
        candidate_month=outcome.validation_month,
        candidate_metrics=outcome.metrics,
        rescore_champion=_rescorer(frame, outcome.validation_month),
    )
    client = mlflow.MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    with mlflow_lock(settings.mlflow_tracking_uri):
        client.set_tag(logged.run_id, "promotion", "promoted" if decision.promoted else "rejected")
        client.set_tag(logged.run_id, RUN_STATUS_TAG, RUN_COMPLETE)
    return decision


def run_training(
    settings: Settings, source: Source, year: int, month: int, *, today: date | None = None
) -> TrainingResult:
    """The whole run without an orchestrator: the same steps the flow runs as tasks."""
    validation_month = resolve_validation_month(year, month, today)
    lake = Lake.from_settings(settings, source)
    window = load_training_window(lake, validation_month)
    check_window(lake, window, validation_month)
    outcome = train_and_evaluate(
        window.frame, validation_month, seed=settings.seed, n_trials=settings.n_trials
    )
    logged, version = log_and_register(settings, outcome, window, source)
    decision = promote_candidate(settings, logged, version, outcome, window.frame)
    decision = serve_baseline_if_needed(settings, outcome, window, source, decision)
    return training_result(source, outcome, window, logged, decision)


def serve_baseline_if_needed(
    settings: Settings,
    outcome: TrainingOutcome,
    window: LakeWindow,
    source: Source,
    decision: PromotionDecision,
) -> PromotionDecision:
    """After a rejection with no champion at all, register and serve the baseline version."""
    if decision.promoted or decision.previous_champion is not None:
        return decision
    version, taken = register_baseline(settings, outcome, window, source)
    if not taken:
        return decision
    return dataclasses.replace(
        decision,
        served_baseline=version,
        reason=f"{decision.reason}; no model has passed yet: baseline version {version} "
        "(trusted last price with conformal intervals) is served",
    )


def training_result(
    source: Source,
    outcome: TrainingOutcome,
    window: LakeWindow,
    logged: LoggedRun,
    decision: PromotionDecision,
) -> TrainingResult:
    """The small typed result a caller of the run gets back."""
    return TrainingResult(
        validation_month=str(outcome.validation_month),
        source=source,
        metrics=outcome.metrics,
        model_version=decision.candidate_version,
        run_id=logged.run_id,
        promoted=decision.promoted,
        reason=decision.reason,
        data_fingerprint=window.fingerprint,
        code_version=code_version(),
        missing_months=[str(m) for m in outcome.split.missing_months],
    )

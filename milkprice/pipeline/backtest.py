"""Rolling-origin evaluation (a backtest): what every forecasting library calls cross-validation.

For each month ``V`` of a range, the model is trained exactly as the monthly flow trains it, on
the 12 months before ``V`` (tuned, calibrated, fit), forecasts ``V`` from the end of ``V-1``, and
is scored against the actual prices beside the naive (last price) and series-mean forecasts.
Months are independent: :func:`backtest_month` is a pure function of picklable arguments (a
frame and a month), the unit a process pool (``--jobs``) fans out on, and
:func:`backtest_month_from_lake` the same for a machine that reads its own window from the lake
by URI (a Dask worker: ``orchestration/flows/backtest_flow.py``). The report holds a table per
month with the average and the worst month, every forecast row, a PNG of the ratios over time,
and an MLflow run holding all of it (:func:`publish_backtest`).
"""

from __future__ import annotations

import io
import multiprocessing
import tempfile
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from milkprice.data.lake import Lake
from milkprice.model.forecast import MilkForecaster
from milkprice.model.training import TRAINING_MONTHS, train_and_evaluate
from milkprice.months import Month, month_range
from milkprice.plots import plot_backtest_ratios
from milkprice.registry.tracking import configure_mlflow, mlflow_lock
from milkprice.settings import Settings

__all__ = [
    "BASELINES",
    "MODELS",
    "BacktestReport",
    "MonthBacktest",
    "PublishedBacktest",
    "assemble_report",
    "backtest_keys",
    "backtest_month",
    "backtest_month_from_lake",
    "backtest_table",
    "check_partitions",
    "log_backtest",
    "parse_models",
    "publish_backtest",
    "render_backtest",
    "run_backtest",
    "write_backtest",
]

MODELS: tuple[str, ...] = ("model", "naive", "mean")
BASELINES = ("naive", "mean")
_INTERVAL_METRICS = (
    "coverage_80",
    "coverage_95",
    "width_80",
    "width_95",
    "interval_score_80",
    "interval_score_95",
    "naive_interval_score_80",
    "naive_interval_score_95",
    "aggregate_dependence",
)
_ROW_COLUMNS = ["lower_95", "lower_80", "upper_80", "upper_95"]


@dataclass(frozen=True)
class MonthBacktest:
    """One month of a backtest: its scores and every forecast row.

    Attributes:
        month: The month forecast (``V``).
        training_months: How many of the 12 months before ``V`` had data (fewer: a short window).
        metrics: ``<model>_rmse``, ``<model>_mae`` for model, naive and mean; the model's
            ``rmse_ratio``/``mae_ratio`` to naive and its interval scores.
        rows: Series keys, ``Fecha``, ``actual``, ``model``, ``naive``, ``mean`` and the model's
            interval bounds, one row per series and publication date of ``V``.
        seconds: Training and scoring time.
        model: The model refit on the whole window (what the flow would register), e.g. to
            replay the promotion gate over the months.
    """

    month: Month
    training_months: int
    metrics: dict[str, float]
    rows: pd.DataFrame = field(repr=False)
    seconds: float = 0.0
    model: MilkForecaster | None = field(default=None, repr=False)


def backtest_month(frame: pd.DataFrame, month: Month, *, seed: int, n_trials: int) -> MonthBacktest:
    """Train on the 12 months before ``month`` as the flow does, forecast it, score it.

    Args:
        frame: Clean tidy rows of ``month - 12 .. month`` (more is ignored).
        month: The month forecast.
        seed: Seed of tuning and LightGBM.
        n_trials: Tuning trials, as the flow's setting.
    """
    outcome = train_and_evaluate(frame, month, seed=seed, n_trials=n_trials)
    scores = outcome.metrics
    metrics = {
        "model_rmse": scores["val_rmse"],
        "model_mae": scores["val_mae"],
        "naive_rmse": scores["naive_val_rmse"],
        "naive_mae": scores["naive_val_mae"],
        "mean_rmse": scores["mean_val_rmse"],
        "mean_mae": scores["mean_val_mae"],
        "trusted_rmse": scores["trusted_val_rmse"],
        "trusted_mae": scores["trusted_val_mae"],
        "brier_change": scores["brier_change"],
        "base_brier_change": scores["base_brier_change"],
        "brier_skill": scores["brier_skill"],
        "rmse_ratio": scores["rmse_ratio_to_naive"],
        "mae_ratio": scores["mae_ratio_to_naive"],
        "n_scored": scores["n_scored"],
        **{name: scores[name] for name in _INTERVAL_METRICS if name in scores},
    }
    rows = outcome.evaluation.predictions.assign(month=str(month))
    return MonthBacktest(
        month=month,
        training_months=len(outcome.split.training_months),
        metrics=metrics,
        rows=rows,
        seconds=outcome.timings.get("total", 0.0),
        model=outcome.forecaster,
    )


def backtest_month_from_lake(
    lake: Lake, month: Month, *, seed: int, n_trials: int
) -> MonthBacktest:
    """:func:`backtest_month` on the window of ``month`` read from ``lake`` here (by its URI).

    What a task on another machine runs: it gets a lake address and a month, not a frame, and
    scores exactly the rows :func:`run_backtest` gives the same month.

    Raises:
        FileNotFoundError: ``month`` has no partition (named with its URI).
    """
    window = lake.read_window(month_range(month.shift(-TRAINING_MONTHS), month))
    if month in window.missing:
        raise FileNotFoundError(f"no partition to score for {month} ({lake.uri(month)})")
    return backtest_month(_window(window.frame, month), month, seed=seed, n_trials=n_trials)


def check_partitions(lake: Lake, months: Sequence[Month]) -> None:
    """Fail before any training when a month to forecast has no partition.

    Raises:
        ValueError: ``months`` is empty.
        FileNotFoundError: naming every month without a partition and its URI.
    """
    if not months:
        raise ValueError("no month to backtest")
    present = set(lake.list_months())
    absent = [m for m in months if m not in present]
    if absent:
        raise FileNotFoundError(
            "no partition to score for " + ", ".join(f"{m} ({lake.uri(m)})" for m in absent)
        )


@dataclass
class BacktestReport:
    """Every month of a backtest, in month order."""

    months: list[MonthBacktest]
    models: tuple[str, ...] = MODELS

    @property
    def first(self) -> Month:
        """The first month forecast."""
        return self.months[0].month

    @property
    def last(self) -> Month:
        """The last month forecast."""
        return self.months[-1].month

    def table(self) -> pd.DataFrame:
        """Per month, then ``mean`` and ``worst`` rows (see :func:`backtest_table`)."""
        return backtest_table(self.months, self.models)

    def rows(self) -> pd.DataFrame:
        """Every forecast row of every month, with the columns of the chosen models."""
        keep = [c for c in ("actual", *self.models) if c != "model" or "model" in self.models]
        if "model" in self.models:
            keep += ["model_mean", "p_change", "trusted"]
        frames = [m.rows for m in self.months]
        combined = pd.concat(frames, ignore_index=True)
        bounds = _ROW_COLUMNS if "model" in self.models else []
        columns = ["month", "Estado", "Ciudad", "Tipo", "Canal", "Fecha", *keep, *bounds]
        return combined[[c for c in columns if c in combined.columns]]


def backtest_table(months: Sequence[MonthBacktest], models: Sequence[str] = MODELS) -> pd.DataFrame:
    """One row per month, then the ``mean`` over months and the ``worst`` month per column.

    "Worst" is the largest value for errors, ratios, widths and interval scores and the value
    furthest from the nominal level for coverage. Months with fewer than 12 training months are
    flagged in ``short_window``.
    """
    records = []
    for result in months:
        record: dict[str, object] = {
            "month": str(result.month),
            "training_months": result.training_months,
            "short_window": result.training_months < TRAINING_MONTHS,
        }
        for name in models:
            record[f"{name}_rmse"] = result.metrics[f"{name}_rmse"]
            record[f"{name}_mae"] = result.metrics[f"{name}_mae"]
        if "model" in models:
            record["rmse_ratio"] = result.metrics["rmse_ratio"]
            record["mae_ratio"] = result.metrics["mae_ratio"]
            record.update({k: result.metrics[k] for k in _INTERVAL_METRICS if k in result.metrics})
            for name in ("trusted_rmse", "trusted_mae", "brier_change", "base_brier_change"):
                record[name] = result.metrics[name]
        records.append(record)
    table = pd.DataFrame.from_records(records)
    numeric = [c for c in table.columns if c not in {"month", "training_months", "short_window"}]
    mean = {"month": "mean", **table[numeric].mean().to_dict()}
    worst: dict[str, object] = {"month": "worst"}
    for column in numeric:
        values = table[column].to_numpy(dtype=float)
        if column.startswith("coverage_"):
            nominal = int(column.split("_")[1]) / 100
            worst[column] = float(values[np.argmax(np.abs(values - nominal))])
        else:
            worst[column] = float(values.max())
    return pd.concat([table, pd.DataFrame([mean, worst])], ignore_index=True)


def parse_models(text: str | None) -> tuple[str, ...]:
    """``model,naive`` as a tuple of known names (naive is always scored: ratios need it).

    Raises:
        ValueError: naming the unknown model(s) and the known ones.
    """
    names = [n.strip() for n in (text or "model,naive").split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown or not names:
        raise ValueError(f"unknown model(s) {unknown or names}; choose from {', '.join(MODELS)}")
    return tuple(dict.fromkeys([*names, "naive"]))


def _window(frame: pd.DataFrame, month: Month) -> pd.DataFrame:
    first = month.shift(-TRAINING_MONTHS)
    inside = frame["Fecha"].between(first.start, month.end)
    return frame.loc[inside].reset_index(drop=True)


def run_backtest(
    lake: Lake,
    months: Sequence[Month],
    *,
    seed: int,
    n_trials: int,
    jobs: int = 1,
    models: Sequence[str] = MODELS,
    on_month: Callable[[MonthBacktest], None] | None = None,
) -> BacktestReport:
    """Backtest every month of ``months``, ``jobs`` months at a time (separate processes).

    The lake is read once, here; each month gets its own window. A month whose forecast month
    has no partition, or too few training months, fails the backtest with the reason.
    """
    check_partitions(lake, months)
    window = lake.read_window(month_range(months[0].shift(-TRAINING_MONTHS), months[-1]))
    done: dict[Month, MonthBacktest] = {}

    def finished(result: MonthBacktest) -> None:
        done[result.month] = result
        if on_month is not None:
            on_month(result)

    if jobs <= 1:
        for month in months:
            finished(
                backtest_month(_window(window.frame, month), month, seed=seed, n_trials=n_trials)
            )
    else:
        # "spawn": a forked child would inherit the parent's OpenMP and thread state.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [
                pool.submit(
                    backtest_month, _window(window.frame, m), m, seed=seed, n_trials=n_trials
                )
                for m in months
            ]
            for future in as_completed(futures):
                finished(future.result())
    return BacktestReport([done[m] for m in months], tuple(models))


def assemble_report(results: Sequence[MonthBacktest], models: Sequence[str]) -> BacktestReport:
    """The report of months backtested anywhere (a pool, a cluster), put back in month order."""
    return BacktestReport(sorted(results, key=lambda result: result.month), tuple(models))


def backtest_keys(first: Month, last: Month) -> dict[str, str]:
    """Where a backtest's files live in the lake (the one place that says it)."""
    base = f"backtests/{first}_{last}"
    return {
        "table": f"{base}/table.csv",
        "rows": f"{base}/forecasts.parquet",
        "plot": f"{base}/ratios.png",
    }


def render_backtest(report: BacktestReport) -> dict[str, bytes]:
    """The table (CSV), every forecast row (parquet) and the ratio plot (PNG), by key."""
    keys = backtest_keys(report.first, report.last)
    buffer = io.BytesIO()
    report.rows().to_parquet(buffer, index=False, compression="zstd")
    return {
        keys["table"]: report.table().to_csv(index=False, float_format="%.4f").encode(),
        keys["plot"]: plot_backtest_ratios(report.table()),
        keys["rows"]: buffer.getvalue(),
    }


def write_backtest(lake: Lake, files: dict[str, bytes]) -> dict[str, str]:
    """Write the rendered files to the lake (local or S3); return their URIs by key."""
    return {key: lake.put_object(key, data) for key, data in files.items()}


def log_backtest(settings: Settings, report: BacktestReport, files: dict[str, bytes]) -> str:
    """An MLflow run ``backtest-FIRST..LAST``: mean and worst metrics, the table and the files."""
    experiment_id = configure_mlflow(settings.mlflow_tracking_uri, settings.mlflow_experiment)
    table = report.table()
    summary = table.set_index("month").loc[["mean", "worst"]]
    metrics = {
        f"{row}_{column}": float(value)
        for row, values in summary.iterrows()
        for column, value in values.items()
        if column not in {"training_months", "short_window"} and pd.notna(value)
    }
    with (
        mlflow_lock(settings.mlflow_tracking_uri),
        mlflow.start_run(
            experiment_id=experiment_id, run_name=f"backtest-{report.first}..{report.last}"
        ) as run,
    ):
        mlflow.set_tags(
            {"kind": "backtest", "first_month": str(report.first), "last_month": str(report.last)}
        )
        mlflow.log_params(
            {"months": len(report.months), "models": ",".join(report.models), "seed": settings.seed}
        )
        mlflow.log_metrics(metrics)
        mlflow.log_table(table, artifact_file="backtest_table.json")
        with tempfile.TemporaryDirectory() as folder:
            for key, data in files.items():
                (Path(folder) / key.rsplit("/", 1)[-1]).write_bytes(data)
            mlflow.log_artifacts(folder, artifact_path="backtest")
        return run.info.run_id


@dataclass(frozen=True)
class PublishedBacktest:
    """A backtest and where its files and MLflow run went."""

    report: BacktestReport
    uris: dict[str, str]
    run_id: str


def publish_backtest(settings: Settings, lake: Lake, report: BacktestReport) -> PublishedBacktest:
    """Render the files, write them to ``lake`` and log the MLflow run (every runner's last step)."""
    files = render_backtest(report)
    uris = write_backtest(lake, files)
    return PublishedBacktest(report, uris, log_backtest(settings, report, files))

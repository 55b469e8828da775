"""Backfills without an orchestrator: which months to run, which are done, and the result table.

A month counts as done when MLflow holds a run of it tagged ``run_status=complete`` for the same
data fingerprint (of its 13-month window, as the lake holds it now) and the same code version:
the same data and code would train the same model again. ``--force`` runs it anyway. The
orchestration shell (:mod:`orchestration.backfill`) runs the months this module plans.

The training flow asks the same question before it trains (:func:`find_completed_run` on its
window's fingerprint and :func:`~milkprice.pipeline.training_run.code_version`, as
:func:`plan_backfill` does) and answers a month already done with :func:`skipped_result`: so a
month closed by an event and the monthly schedule's fallback run never train it twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, tzinfo

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.pipeline.training_run import (
    RUN_COMPLETE,
    RUN_STATUS_TAG,
    TrainingResult,
    code_version,
    load_training_window,
)
from milkprice.registry.tracking import mlflow_lock
from milkprice.settings import Settings

__all__ = [
    "MAX_BACKFILL_MONTHS",
    "BackfillRow",
    "CompletedRun",
    "MonthPlan",
    "backfill_months",
    "failed_months",
    "find_completed_run",
    "idempotency_key",
    "plan_backfill",
    "scheduled_time_for",
    "skipped_result",
]

MAX_BACKFILL_MONTHS = 240  # 20 years: a typo in --start should not queue a thousand runs
SKIPPED, COMPLETED, FAILED = "Skipped", "Completed", "Failed"


@dataclass(frozen=True)
class CompletedRun:
    """A finished training run of a month, as MLflow recorded it."""

    run_id: str
    val_rmse: float | None
    naive_rmse: float | None
    version: str | None
    promoted: bool | None
    metrics: dict[str, float] = field(default_factory=dict)  # every metric the run logged


@dataclass(frozen=True)
class MonthPlan:
    """What a backfill will do with one month."""

    month: Month
    fingerprint: str | None  # None: the window could not be read (the run will say why)
    code_version: str
    done: CompletedRun | None = None  # set: skip the month (unless forced)
    read_error: str | None = None

    @property
    def skip(self) -> bool:
        """Whether the month already has a complete run for this data and code."""
        return self.done is not None


@dataclass(frozen=True)
class BackfillRow:
    """One line of the backfill's result table."""

    month: Month
    state: str
    val_rmse: float | None = None
    naive_rmse: float | None = None
    version: str | None = None
    promoted: bool | None = None
    detail: str = ""

    @property
    def failed(self) -> bool:
        """Whether the month's run did not complete."""
        return self.state not in (SKIPPED, COMPLETED)

    @classmethod
    def skipped(cls, plan: MonthPlan) -> BackfillRow:
        """A month left alone because a complete run exists."""
        done = plan.done
        if done is None:
            raise ValueError(f"{plan.month} has no complete run to skip to")
        return cls(
            plan.month,
            SKIPPED,
            done.val_rmse,
            done.naive_rmse,
            done.version,
            done.promoted,
            f"run {done.run_id} already complete for this data and code",
        )

    @classmethod
    def from_result(cls, result: TrainingResult) -> BackfillRow:
        """A month trained in this process (or skipped by the flow: done meanwhile)."""
        return cls(
            Month.parse(result.validation_month),
            SKIPPED if result.skipped else COMPLETED,
            result.metrics.get("val_rmse"),
            result.metrics.get("naive_val_rmse"),
            result.model_version,
            result.promoted,
            result.reason,
        )

    @classmethod
    def from_run(
        cls, month: Month, state: str, run: CompletedRun | None, detail: str = ""
    ) -> BackfillRow:
        """A month run elsewhere (a deployment), with what MLflow recorded of it, if anything."""
        if run is None:
            return cls(month, state, detail=detail)
        return cls(month, state, run.val_rmse, run.naive_rmse, run.version, run.promoted, detail)

    def as_cells(self) -> list[str]:
        """Text cells: month, state, val RMSE, naive RMSE, version, promoted."""
        return [
            str(self.month),
            self.state,
            "" if self.val_rmse is None else f"{self.val_rmse:.4f}",
            "" if self.naive_rmse is None else f"{self.naive_rmse:.4f}",
            self.version or "",
            "" if self.promoted is None else ("yes" if self.promoted else "no"),
        ]


def backfill_months(start: Month, end: Month) -> list[Month]:
    """Every month from ``start`` to ``end``; refuses an empty or oversized range, naming it."""
    if end < start:
        raise ValueError(f"--end {end} is before --start {start}")
    months = month_range(start, end)
    if len(months) > MAX_BACKFILL_MONTHS:
        raise ValueError(
            f"{start}..{end} is {len(months)} months; a backfill is limited to "
            f"{MAX_BACKFILL_MONTHS}: split it"
        )
    return months


def _metric(values: dict[str, float], name: str) -> float | None:
    value = values.get(name)
    return None if value is None else float(value)


def find_completed_run(
    settings: Settings, month: Month, fingerprint: str, code_version: str
) -> CompletedRun | None:
    """The newest complete run of ``month`` for this data fingerprint and code version."""
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    # Reading may create and migrate an SQLite store: do it under the writers' lock.
    with mlflow_lock(settings.mlflow_tracking_uri):
        experiment = client.get_experiment_by_name(settings.mlflow_experiment)
        if experiment is None:
            return None
        runs = client.search_runs(
            [experiment.experiment_id],
            filter_string=(
                f"tags.validation_month = '{month}' "
                f"and tags.{RUN_STATUS_TAG} = '{RUN_COMPLETE}' "
                f"and tags.data_fingerprint = '{fingerprint}' "
                f"and tags.code_version = '{code_version}'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        if not runs:
            return None
        run = runs[0]
        try:
            versions = client.search_model_versions(
                f"name = '{settings.registered_model}' and run_id = '{run.info.run_id}'"
            )
        except MlflowException:
            versions = []
    promotion = run.data.tags.get("promotion")
    return CompletedRun(
        run_id=run.info.run_id,
        val_rmse=_metric(run.data.metrics, "val_rmse"),
        naive_rmse=_metric(run.data.metrics, "naive_val_rmse"),
        version=str(versions[0].version) if versions else None,
        promoted=None if promotion is None else promotion == "promoted",
        metrics={name: float(value) for name, value in run.data.metrics.items()},
    )


def skipped_result(
    source: str, month: Month, fingerprint: str, done: CompletedRun
) -> TrainingResult:
    """What a training run returns instead of training ``month`` again: ``done``'s figures.

    Nothing is registered or promoted by it (``promoted`` is False); ``reason`` says which run
    already holds the month and how to train anyway.
    """
    return TrainingResult(
        validation_month=str(month),
        source=source,
        metrics=done.metrics,
        model_version=done.version or "",
        run_id=done.run_id,
        promoted=False,
        reason=f"skipped: MLflow run {done.run_id} (model version {done.version or 'none'}) is "
        f"already complete for {month} with the same data and code; force=True trains again",
        data_fingerprint=fingerprint,
        code_version=code_version(),
        missing_months=[],
        skipped=True,
    )


def plan_backfill(
    settings: Settings,
    lake: Lake,
    months: Sequence[Month],
    code_version: str,
    *,
    force: bool = False,
) -> list[MonthPlan]:
    """Fingerprint each month's window and find the months already done (none if ``force``).

    A window that cannot be read (a corrupt partition, say) is not an error here: the month is
    planned to run, and its run fails naming the partition, like any other failed month.
    """
    plans = []
    for month in months:
        try:
            fingerprint = load_training_window(lake, month).fingerprint
        except Exception as exc:  # the run reports the lake's own error for this month
            plans.append(MonthPlan(month, None, code_version, read_error=str(exc)))
            continue
        plan = MonthPlan(month, fingerprint, code_version)
        if not force:
            plan = replace(
                plan, done=find_completed_run(settings, month, fingerprint, code_version)
            )
        plans.append(plan)
    return plans


def idempotency_key(plan: MonthPlan, source: str, nonce: str | None = None) -> str:
    """Key of a month's deployment run: the same month, data and code never run twice.

    ``nonce`` (``--force``, or a retry of a run that failed before) makes a new key.
    """
    key = (
        f"milkprice-backfill:{plan.month}:{source}:"
        f"{plan.fingerprint or 'unreadable'}:{plan.code_version}"
    )
    return f"{key}:{nonce}" if nonce else key


def scheduled_time_for(month: Month, zone: tzinfo) -> datetime:
    """When the monthly schedule would have trained ``month``: 06:00 on the next month's 2nd.

    The schedule is ``0 6 2 * *`` in MILKPRICE_TIMEZONE (``zone``), as the deployment's.
    """
    after = month.shift(1)
    return datetime(after.year, after.month, 2, 6, 0, tzinfo=zone)


def failed_months(rows: Sequence[BackfillRow]) -> list[Month]:
    """Months whose run did not complete, oldest first."""
    return sorted(row.month for row in rows if row.failed)

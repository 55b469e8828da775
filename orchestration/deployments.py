"""Deployments in code: the builders and the lists, served by one process or deployed to a pool.

``milkprice serve`` (:func:`orchestration.serve.serve_all`) serves every deployment of
:data:`DEPLOYMENTS` with one :func:`prefect.serve` call; ``python orchestration/flows/main_flow.py``
(:func:`orchestration.serve.serve_training`) serves ``train-milk-model`` alone. A deployment is a builder function
returning a ``RunnerDeployment``; adding one is adding its builder to :data:`DEPLOYMENTS`.
``milkprice deploy --pool NAME`` (:mod:`orchestration.pool`) registers the same definitions,
those of :data:`POOL_DEPLOYMENTS`, on a work pool instead: one list, two ways to execute it.
The names of the flows and deployments are in :mod:`orchestration.names`.

Every schedule is a cron in MILKPRICE_TIMEZONE (default America/Mexico_City, where SNIIM and
its users are; read when serving or deploying starts), so the Prefect UI shows it in that zone
and ``year=0, month=0`` resolve there too. The times, local: training 06:00 on the 2nd,
smoke test 08:00 daily, forecast 23:00 daily (after the day's publication is fetched),
monitoring 07:00 on the 3rd, lake freshness 09:00 daily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from prefect.deployments.runner import EntrypointType
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron, Schedule

from milkprice.settings import get_settings
from orchestration.events import (
    ACCURACY_ALERT_EVENT,
    CHAMPION_PROMOTED_EVENT,
    DATA_INGESTED_EVENT,
    MONTH_CLOSED_EVENT,
)
from orchestration.flows.backfill_flow import backfill
from orchestration.flows.forecast_flow import forecast
from orchestration.flows.freshness_flow import lake_freshness
from orchestration.flows.ingest_flow import ingest
from orchestration.flows.main_flow import main
from orchestration.flows.monitor_flow import monitor
from orchestration.names import (
    BACKFILL_MONTHS,
    DAILY_FORECAST,
    DAILY_TEST,
    INGEST_SNIIM,
    LAKE_FRESHNESS,
    MONTHLY_MONITOR,
    TRAIN_MILK_MODEL,
)

if TYPE_CHECKING:
    from prefect.deployments.runner import RunnerDeployment

__all__ = [
    "DEPLOYMENTS",
    "INGEST_CRON",
    "POOL_DEPLOYMENTS",
    "DeploymentBuilder",
    "backfill_months_deployment",
    "daily_forecast_deployment",
    "daily_test_deployment",
    "ingest_sniim_deployment",
    "lake_freshness_deployment",
    "monthly_monitor_deployment",
    "train_milk_model_deployment",
]

# One run at a time per deployment of the serving process: one machine, and the forecast and
# monitor runs write the same files. In a work pool the training runs may go side by side on
# several workers (the registry lock makes their promotions safe): how many at once is the
# workers' `--limit` and the pool's concurrency limit to decide.
_CONCURRENCY_LIMIT = 1

# The serving process runs each flow run in a subprocess that imports the flow again: by module
# path (the installed package), so serving works from any working directory.
_ENTRYPOINT = EntrypointType.MODULE_PATH


class DeploymentBuilder(Protocol):
    """Builds one deployment; ``pooled``: for a work pool rather than the serving process."""

    def __call__(self, *, pooled: bool = False) -> RunnerDeployment:
        """The deployment, with its schedules, triggers, parameters and limits."""
        ...


def _local_cron(expr: str) -> list[Schedule]:
    """``schedules=`` of a deployment: the cron ``expr`` in MILKPRICE_TIMEZONE.

    Read when serving or deploying starts (an entry point), never at import.
    """
    return [Cron(expr, timezone=get_settings().timezone)]


# Flow parameters of a run an event triggers: the lake and the month named in its payload.
_MONTH_FROM_EVENT = {
    "source": "{{ event.payload.source }}",
    "year": "{{ event.payload.year }}",
    "month": "{{ event.payload.month }}",
}


def train_milk_model_deployment(*, pooled: bool = False) -> RunnerDeployment:
    """The monthly training run, for the month a ``milkprice.month.closed`` event names.

    The event (any lake, ``milkprice.lake.*``) starts the run for the source and month in its
    payload as soon as a month's first publication closes the month before. The cron, 06:00
    local time on the 2nd, for the previous calendar month, is the fallback: a month already
    trained on the same data and code ends Skipped (:func:`orchestration.flows.main_flow.main`),
    so event and cron train it once. With MILKPRICE_RETRAIN_ON_ALERT=true (read when serving
    starts) also at once on a ``milkprice.alert.accuracy`` event. In a pool (``pooled``) it has
    no concurrency limit of its own: the pool's workers share the runs.
    """
    settings = get_settings()
    model = settings.registered_model
    month_closed = DeploymentEventTrigger(
        name="train when a month is closed",
        expect={MONTH_CLOSED_EVENT},
        match={"prefect.resource.id": "milkprice.lake.*"},
        parameters=_MONTH_FROM_EVENT,
    )
    retrain = [
        DeploymentEventTrigger(
            name=f"retrain when {model}'s accuracy alerts",
            expect={ACCURACY_ALERT_EVENT},
            match={"prefect.resource.id": f"milkprice.model.{model}"},
            parameters=_MONTH_FROM_EVENT,
        )
    ]
    return main.to_deployment(
        triggers=[month_closed, *(retrain if settings.retrain_on_alert else [])],
        name=TRAIN_MILK_MODEL,
        schedules=_local_cron("0 6 2 * *"),
        tags=["milk", "training"],
        description="Train on the 12 months before the validation month, validate, register, "
        "promote if better; a month already complete for the same data and code is skipped "
        "unless force. year=0, month=0 means the previous calendar month (local time). "
        "Triggered by milkprice.month.closed; the monthly cron is the fallback.",
        concurrency_limit=None if pooled else _CONCURRENCY_LIMIT,
        entrypoint_type=_ENTRYPOINT,
    )


def daily_test_deployment(*, pooled: bool = False) -> RunnerDeployment:
    """A daily smoke run of the same flow on the local lake (previous calendar month), 08:00.

    Serving only: "the local lake" means the serving machine's; a pool's workers have their own.
    ``force``: a smoke test must train, not find yesterday's run and skip.
    """
    return main.to_deployment(
        name=DAILY_TEST,
        schedules=_local_cron("0 8 * * *"),
        tags=["milk", "test"],
        parameters={"source": "local", "force": True},
        description="Daily check that the training flow still runs end to end on the local lake.",
        concurrency_limit=_CONCURRENCY_LIMIT,
        entrypoint_type=_ENTRYPOINT,
    )


def daily_forecast_deployment(*, pooled: bool = False) -> RunnerDeployment:
    """The batch forecast: every evening at 23:00 local time, and when a champion is promoted.

    23:00: after the afternoon's publication (Monday, Wednesday, Friday) and its retries.
    """
    # Read when `serve` starts (an entry point), never at import: the trigger listens to the
    # model this serving process's settings name.
    model = get_settings().registered_model
    return forecast.to_deployment(
        name=DAILY_FORECAST,
        schedules=_local_cron("0 23 * * *"),
        tags=["milk", "forecast"],
        description="Forecast every series with the champion up to the end of next month; "
        "parquet under forecasts/, CSV and plots under reports/ (cutoff=the newest data).",
        concurrency_limit=_CONCURRENCY_LIMIT,
        entrypoint_type=_ENTRYPOINT,
        triggers=[
            DeploymentEventTrigger(
                name=f"forecast when {model} gets a new champion",
                expect={CHAMPION_PROMOTED_EVENT},
                match={"prefect.resource.id": f"milkprice.model.{model}"},
                parameters={"source": "{{ event.payload.source }}"},
            )
        ],
    )


def monthly_monitor_deployment(*, pooled: bool = False) -> RunnerDeployment:
    """Accuracy of the stored forecasts: on the 3rd at 07:00 local time, and when prices arrive.

    The 3rd, a day after the training's fallback: the previous month is scored by then.
    """
    return monitor.to_deployment(
        name=MONTHLY_MONITOR,
        schedules=_local_cron("0 7 3 * *"),
        tags=["milk", "monitoring"],
        description="Score the stored forecasts of a month (year=0, month=0: the previous "
        "calendar month); alert by event and webhook when they are off.",
        concurrency_limit=_CONCURRENCY_LIMIT,
        entrypoint_type=_ENTRYPOINT,
        triggers=[
            DeploymentEventTrigger(
                name="monitor when new prices are ingested",
                expect={DATA_INGESTED_EVENT},
                match={"prefect.resource.id": "milkprice.lake.*"},
                parameters=_MONTH_FROM_EVENT,
            )
        ],
    )


def backfill_months_deployment(*, pooled: bool = False) -> RunnerDeployment:
    """Backfills started from the UI's form: one ``train-milk-model`` run per month.

    No schedule and no trigger; one backfill at a time (its month runs go in parallel).
    """
    return backfill.to_deployment(
        name=BACKFILL_MONTHS,
        tags=["milk", "backfill"],
        description="Train every month from start to end (YYYY-MM) on train-milk-model, "
        "skipping months already complete for the same data and code unless force; the result "
        "table is the milk-price-backfill artifact.",
        concurrency_limit=_CONCURRENCY_LIMIT,
        entrypoint_type=_ENTRYPOINT,
    )


# SNIIM publishes Monday, Wednesday and Friday; a file not online at 14:00 is looked for again
# at 16:00 and 18:00 (a run that finds the day already in the lake rewrites nothing).
INGEST_CRON = "0 14,16,18 * * 1,3,5"


def ingest_sniim_deployment(*, pooled: bool = False) -> RunnerDeployment:
    """The SNIIM fetch: Monday, Wednesday, Friday at 14:00, 16:00, 18:00 in MILKPRICE_TIMEZONE.

    One run at a time, in a pool too: two ingests of one month would race on its partition.
    """
    settings = get_settings()  # read when serving/deploying starts: the zone of the schedule
    return ingest.to_deployment(
        name=INGEST_SNIIM,
        schedules=[Cron(INGEST_CRON, timezone=settings.timezone)],
        tags=["milk", "ingest"],
        description="Fetch the SNIIM publication of the scheduled day (day empty: the day of "
        "the run's scheduled time) and catch up days missing since the lake's newest date; "
        "NotPublished when the day is not online.",
        concurrency_limit=_CONCURRENCY_LIMIT,
        entrypoint_type=_ENTRYPOINT,
    )


def lake_freshness_deployment(*, pooled: bool = False) -> RunnerDeployment:
    """The stale-lake check: every day at 09:00 local time, on the default source's lake.

    09:00: the morning after a publication day, once its fetch and retries are over.
    """
    return lake_freshness.to_deployment(
        name=LAKE_FRESHNESS,
        schedules=_local_cron("0 9 * * *"),
        tags=["milk", "monitoring"],
        parameters={"source": get_settings().source},
        description="Alert (event milkprice.alert.stale-data, webhook) when the lake's newest "
        "publication is older than MILKPRICE_STALE_LAKE_DAYS on the day of the run.",
        concurrency_limit=_CONCURRENCY_LIMIT,
        entrypoint_type=_ENTRYPOINT,
    )


# Every deployment `milkprice serve` serves; later issues add theirs here (one line each).
DEPLOYMENTS: list[DeploymentBuilder] = [
    train_milk_model_deployment,
    daily_test_deployment,
    daily_forecast_deployment,
    monthly_monitor_deployment,
    backfill_months_deployment,
    ingest_sniim_deployment,
    lake_freshness_deployment,
]
# Those `milkprice deploy --pool` registers on a work pool: all but the serving machine's smoke test.
POOL_DEPLOYMENTS: list[DeploymentBuilder] = [
    build for build in DEPLOYMENTS if build is not daily_test_deployment
]

"""Names of the flows and deployments, defined once (a leaf: imports nothing of milkprice).

The flows, the deployment builders (:mod:`orchestration.deployments`), the backfills and the
tests import these; ``stack/`` cannot import ``orchestration/`` and repeats
:data:`TRAIN_DEPLOYMENT` once, which a layout test holds equal to this one.
"""

from __future__ import annotations

__all__ = [
    "BACKFILL_MONTHS",
    "DAILY_FORECAST",
    "DAILY_TEST",
    "FRESHNESS_FLOW",
    "INGEST_DEPLOYMENT",
    "INGEST_FLOW",
    "INGEST_SNIIM",
    "LAKE_FRESHNESS",
    "MONTHLY_MONITOR",
    "TRAINING_FLOW",
    "TRAIN_DEPLOYMENT",
    "TRAIN_MILK_MODEL",
]

TRAINING_FLOW = "milk-price-training"
TRAIN_MILK_MODEL = "train-milk-model"
DAILY_TEST = "daily-test"
DAILY_FORECAST = "daily-forecast"
MONTHLY_MONITOR = "monthly-monitor"
BACKFILL_MONTHS = "backfill-months"
INGEST_FLOW = "milk-price-ingest"
INGEST_SNIIM = "ingest-sniim"
FRESHNESS_FLOW = "milk-price-lake-freshness"
LAKE_FRESHNESS = "lake-freshness"
# ``flow/deployment``, as run_deployment and the REST API's /deployments/name/ take it.
TRAIN_DEPLOYMENT = f"{TRAINING_FLOW}/{TRAIN_MILK_MODEL}"
INGEST_DEPLOYMENT = f"{INGEST_FLOW}/{INGEST_SNIIM}"

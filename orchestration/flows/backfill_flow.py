"""The backfill flow ``backfill(start, end, force)``, named ``milk-price-backfill``.

Deployed as ``backfill-months`` (see :mod:`orchestration.deployments` and :mod:`orchestration.pool`) so
that an operator starts a backfill from the Prefect UI's form. It does what ``milkprice backfill
--via-deployment`` does (:func:`orchestration.backfill.run_backfill`): months already complete
for the same data and code are skipped, the others get one run each on ``train-milk-model``
(``run_deployment``, an idempotency key per month, tagged ``backfill``), executed by whatever
executes that deployment (``milkprice serve``, or a work pool's workers), and followed to the
end. The result table the command prints is published as the table artifact
``milk-price-backfill``; the flow fails when a month failed.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import Field

from milkprice.months import Month
from milkprice.pipeline.backfill import BackfillRow, backfill_months
from milkprice.settings import get_settings
from orchestration.backfill import run_backfill
from orchestration.events import alert_on_failure

__all__ = ["BACKFILL_ARTIFACT_KEY", "BACKFILL_FLOW_NAME", "TABLE_COLUMNS", "backfill", "records"]

BACKFILL_FLOW_NAME = "milk-price-backfill"
BACKFILL_ARTIFACT_KEY = "milk-price-backfill"
# The columns of `milkprice backfill`'s table, then the detail it prints line by line.
TABLE_COLUMNS = ("month", "state", "val RMSE", "naive RMSE", "version", "promoted", "detail")
# Month runs in flight at once; how many *execute* at once is the executor's business (the
# deployment's concurrency limit under `milkprice serve`, the workers of a pool).
IN_FLIGHT = 4

_MONTH = r"^\d{4}-(0[1-9]|1[0-2])$"


def records(rows: Sequence[BackfillRow]) -> list[dict[str, str]]:
    """The result table as records (one per month, the columns of :data:`TABLE_COLUMNS`)."""
    return [dict(zip(TABLE_COLUMNS, [*row.as_cells(), row.detail], strict=True)) for row in rows]


@flow(name=BACKFILL_FLOW_NAME, log_prints=True, on_failure=[alert_on_failure])
def backfill(
    start: Annotated[str, Field(pattern=_MONTH, description="First validation month, YYYY-MM.")],
    end: Annotated[str, Field(pattern=_MONTH, description="Last validation month, YYYY-MM.")],
    force: Annotated[
        bool, Field(description="Run months that already have a complete run, too.")
    ] = False,
) -> list[dict[str, str]]:
    """Train one run per month from ``start`` to ``end`` on ``train-milk-model``.

    Returns:
        The result table's records, oldest month first (also the ``milk-price-backfill``
        table artifact).

    Raises:
        RuntimeError: a month's run did not complete; the message names each with its reason.
    """
    settings = get_settings()
    months = backfill_months(Month.parse(start), Month.parse(end))
    print(f"backfill {start}..{end}: {len(months)} month(s) on train-milk-model (force={force})")
    report = run_backfill(
        settings, months, settings.source, concurrency=IN_FLIGHT, force=force, via_deployment=True
    )
    table = records(report.rows)
    create_table_artifact(
        table=table,
        key=BACKFILL_ARTIFACT_KEY,
        description=f"Backfill {start}..{end} (source {settings.source}, force={force}).",
    )
    for row in table:
        print(" | ".join(row[column] for column in TABLE_COLUMNS))
    if report.failed:
        details = "; ".join(f"{row.month}: {row.detail}" for row in report.rows if row.failed)
        raise RuntimeError(f"{len(report.failed)} month(s) failed: {details}")
    return table

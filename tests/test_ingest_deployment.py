"""The ``ingest-sniim`` deployment as built (no server): schedule, zone, lists, parameters."""

from __future__ import annotations

import pytest

from orchestration.deployments import (
    DEPLOYMENTS,
    INGEST_CRON,
    POOL_DEPLOYMENTS,
    ingest_sniim_deployment,
)
from orchestration.names import INGEST_FLOW, INGEST_SNIIM


@pytest.mark.parametrize("pooled", [False, True])
def test_ingest_deployment_runs_mon_wed_fri_afternoons_in_the_configured_zone(
    pooled: bool, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("MILKPRICE_TIMEZONE", "America/Mexico_City")
    built = ingest_sniim_deployment(pooled=pooled)
    assert (built.flow_name, built.name) == (INGEST_FLOW, INGEST_SNIIM)
    (schedule,) = built.schedules
    assert schedule.schedule.cron == INGEST_CRON == "0 14,16,18 * * 1,3,5"
    assert schedule.schedule.timezone == "America/Mexico_City"
    assert built.concurrency_limit == 1  # two ingests of one month must not race
    assert built.entrypoint == "orchestration.flows.ingest_flow.ingest"
    monkeypatch.setenv("MILKPRICE_TIMEZONE", "Europe/Madrid")
    assert ingest_sniim_deployment().schedules[0].schedule.timezone == "Europe/Madrid"


def test_ingest_deployment_is_served_and_pooled():
    assert ingest_sniim_deployment in DEPLOYMENTS
    assert ingest_sniim_deployment in POOL_DEPLOYMENTS

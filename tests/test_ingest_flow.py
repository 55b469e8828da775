"""The ingest flow on a real Prefect server: catch-up, month closed, NotPublished, failure.

The flow is called as a function against the session's ``prefect server`` (``prefect_server``),
fetching from a loopback publisher; the events it emitted are read back from the server.
"""

from __future__ import annotations

import time
from datetime import date, datetime
from pathlib import Path

import pytest
from conftest import flow_run_artifacts, http_json
from loopback_publisher import Faults, dates_of, loopback_publisher

from milkprice.data.demo import generate_demo_frame
from milkprice.data.lake import Lake
from milkprice.months import Month
from orchestration.events import DATA_INGESTED_EVENT, FAILURE_ALERT_EVENT, MONTH_CLOSED_EVENT
from orchestration.flows.ingest_flow import NOT_PUBLISHED_STATE, ingest
from orchestration.names import INGEST_FLOW
from orchestration.tasks.ingesting import INGEST_ARTIFACT_KEY

pytestmark = pytest.mark.e2e

# Monday Feb 3 2025 is Constitution day: the demo generator publishes nothing then.
HOLIDAY, FIRST, CORRUPT = date(2025, 2, 3), date(2025, 2, 5), date(2025, 2, 7)


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, prefect_server: str):
    """A lake holding January 2025 up to Monday the 27th, a publisher of January-February."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    frame = generate_demo_frame(Month(2025, 1), Month(2025, 2), seed=0, cities=6)
    lake = Lake(str(tmp_path / "lake"))
    lake.write_month(Month(2025, 1), frame[frame["Fecha"] <= "2025-01-27"])
    with loopback_publisher(frame, Faults(corrupt={CORRUPT})) as publisher:
        monkeypatch.setenv("MILKPRICE_DATA_ROOT", str(tmp_path / "lake"))
        monkeypatch.setenv("MILKPRICE_SNIIM_URL_TEMPLATE", publisher.template)
        monkeypatch.setenv("MILKPRICE_SNIIM_TIMEOUT_SECONDS", "2")
        monkeypatch.delenv("MILKPRICE_ALERT_WEBHOOK", raising=False)
        with temporary_settings(updates={PREFECT_API_URL: prefect_server}):
            try:
                yield {"lake": lake, "publisher": publisher, "api": prefect_server}
            finally:
                EventsWorker.drain_all(timeout=10)


def _events(
    api: str, since: datetime, names: set[str], count: int, resource: str = "milkprice.lake.local"
) -> list[dict]:
    """The events named ``names`` on ``resource`` since ``since``; waits until ``count`` are
    stored (the server writes them a moment after they arrive)."""
    from prefect.events.worker import EventsWorker

    EventsWorker.drain_all(timeout=10)
    body = {
        "filter": {"occurred": {"since": since.isoformat()}, "event": {"name": sorted(names)}},
        "limit": 50,
    }
    found: list[dict] = []
    for _ in range(60):
        page = http_json(f"{api}/events/filter", body)
        events = page["events"]  # type: ignore[index]
        found = [e for e in events if e["resource"]["prefect.resource.id"] == resource]
        if len(found) >= count:
            break
        time.sleep(0.25)
    return found


def _lake_bytes(lake: Lake) -> dict[str, bytes]:
    root = Path(lake.base_uri)
    return {str(p): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_catch_up_closes_january_then_not_published_then_a_failure(world):
    lake, publisher, api = world["lake"], world["publisher"], world["api"]
    since = datetime.now().astimezone()

    # Wednesday Feb 5: the run catches up Jan 29 and 31, reports the holiday, then February's
    # first publication.
    state = ingest(source="local", day=FIRST, return_state=True)
    assert state.is_completed() and state.name == "Completed", state
    summary = state.result()
    assert [(r["day"], r["status"]) for r in summary["results"]] == [
        ("2025-01-29", "ingested"), ("2025-01-31", "ingested"),
        ("2025-02-03", "not_published"), ("2025-02-05", "ingested"),
    ]  # fmt: skip
    assert summary["ingested"]["months_created"] == ["2025-02"]
    assert lake.list_months() == [Month(2025, 1), Month(2025, 2)]
    assert max(dates_of(lake.read_month(Month(2025, 2))[0]["Fecha"])) == FIRST
    # the days between (Tue/Thu/weekend) were asked once and stayed silent
    assert publisher.requests[date(2025, 1, 28)] == 1 and publisher.requests[date(2025, 2, 1)] == 1
    (artifact,) = flow_run_artifacts(state.state_details.flow_run_id, INGEST_ARTIFACT_KEY)
    for day in ("2025-01-29", "2025-01-31", "2025-02-05"):
        assert f"| {day} | ingested |" in artifact.data
    assert "| 2025-02-03 | not_published |" in artifact.data
    assert "2025-01-28" not in artifact.data

    events = _events(api, since, {DATA_INGESTED_EVENT, MONTH_CLOSED_EVENT}, 2)
    closed = [e for e in events if e["event"] == MONTH_CLOSED_EVENT]
    assert [e["payload"] for e in closed] == [{"source": "local", "year": 2025, "month": 1}]
    (ingested,) = [e for e in events if e["event"] == DATA_INGESTED_EVENT]
    assert ingested["payload"]["months"] == ["2025-01", "2025-02"]
    assert ingested["payload"]["rows_added"] == 3 * 24

    # Monday Feb 3 asked again (a late run for it): not online is a clear state that is not a
    # failure; nothing is sent.
    before = _lake_bytes(lake)
    later = datetime.now().astimezone()
    state = ingest(source="local", day=HOLIDAY, return_state=True)
    assert state.is_completed() and not state.is_failed(), state
    assert state.name == NOT_PUBLISHED_STATE
    assert f"no publication for {HOLIDAY.isoformat()}" in state.message
    run = http_json(f"{api}/flow_runs/{state.state_details.flow_run_id}")
    assert run["state"]["type"] == "COMPLETED" and run["state"]["name"] == NOT_PUBLISHED_STATE
    assert _lake_bytes(lake) == before

    # Friday Feb 7 serves a corrupt file: the run fails naming the day and URL; lake unchanged.
    state = ingest(source="local", day=CORRUPT, return_state=True)
    assert state.is_failed(), state
    assert CORRUPT.isoformat() in state.message and publisher.url(CORRUPT) in state.message
    assert _lake_bytes(lake) == before
    # Once the failure alert is stored, anything the later runs sent is too: no lake event.
    failure = f"milkprice.flow.{INGEST_FLOW}"
    assert len(_events(api, later, {FAILURE_ALERT_EVENT}, 1, resource=failure)) == 1
    assert _events(api, later, {DATA_INGESTED_EVENT, MONTH_CLOSED_EVENT}, 0) == []


def test_cli_fetch_sends_data_ingested_with_the_ingest_payload(world, monkeypatch):
    from typer.testing import CliRunner

    from milkprice_cli.app import app

    api = world["api"]
    monkeypatch.setenv("PREFECT_API_URL", api)
    since = datetime.now().astimezone()
    result = CliRunner().invoke(
        app, ["data", "fetch", "--since", "2025-01-28", "--day", "2025-01-31"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    assert "event milkprice.data.ingested sent (months 2025-01)" in result.stdout
    (event,) = _events(api, since, {DATA_INGESTED_EVENT}, 1)
    assert event["payload"] == {
        "source": "local", "months": ["2025-01"], "year": 2025, "month": 1,
        "rows_added": 2 * 24, "rows_updated": 0,
    }  # fmt: skip

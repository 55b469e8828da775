"""Fetching publications by day: ``milkprice data fetch`` and the catch-up, against a loopback
publisher with faults (404s, a 500 then 200, a stall past the timeout, a corrupt file)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from loopback_publisher import Faults, dates_of, days, loopback_publisher
from typer.testing import CliRunner

from milkprice.data.demo import generate_demo_frame
from milkprice.data.fetch import (
    FetchOptions,
    catch_up,
    day_in_zone,
    days_to_fetch,
    fetch_day,
    lake_dates,
)
from milkprice.data.ingest import ingest_publication
from milkprice.data.lake import Lake
from milkprice.data.lake_guard import LOCK_FOLDER
from milkprice.months import Month
from milkprice_cli.app import app
from milkprice_cli.fetch import EXIT_NOT_PUBLISHED

JANUARY = Month(2025, 1)
runner = CliRunner()


@pytest.fixture(scope="module")
def january() -> pd.DataFrame:
    """Six cities' demo rows for every publication date of January 2025."""
    return generate_demo_frame(JANUARY, JANUARY, seed=0, cities=6)


def snapshot(root: Path) -> dict[str, bytes]:
    """The lake's files; the month locks (kept on purpose, see lake_guard) are no data."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and LOCK_FOLDER not in p.relative_to(root).parts
    }


def fast(template: str) -> FetchOptions:
    return FetchOptions(url_template=template, timeout_s=0.5, attempts=3, backoff_s=0.05)


# --- plain functions -------------------------------------------------------------------------


def test_day_in_zone_is_the_scheduled_day_in_mexico_city():
    zone = ZoneInfo("America/Mexico_City")
    # 03:30 UTC on Tuesday is still Monday evening in Mexico City (UTC-6).
    assert day_in_zone(datetime(2025, 2, 4, 3, 30, tzinfo=UTC), zone) == date(2025, 2, 3)
    assert day_in_zone(datetime(2025, 2, 4, 12, 0, tzinfo=UTC), zone) == date(2025, 2, 4)
    assert day_in_zone(datetime(2025, 2, 4, 3, 30), zone) == date(2025, 2, 3)  # naive = UTC


def test_days_to_fetch_starts_after_the_newest_date_within_the_window(
    local_lake: Lake, january: pd.DataFrame
):
    assert days_to_fetch(local_lake, date(2025, 1, 10), 3) == [
        date(2025, 1, 7), date(2025, 1, 8), date(2025, 1, 9), date(2025, 1, 10),
    ]  # fmt: skip
    local_lake.write_month(JANUARY, january[january["Fecha"] <= "2025-01-08"])
    assert days_to_fetch(local_lake, date(2025, 1, 10), 31) == [date(2025, 1, 9), date(2025, 1, 10)]
    # the day itself is fetched even when the lake holds it (a rerun rewrites nothing)
    assert days_to_fetch(local_lake, date(2025, 1, 8), 31) == [date(2025, 1, 8)]
    assert lake_dates(local_lake, date(2025, 1, 1), date(2025, 1, 31)) == days(
        "2025-01-03", "2025-01-06", "2025-01-08"
    )


def test_months_created_names_the_months_whose_partition_is_new(
    local_lake: Lake, tmp_path: Path, january: pd.DataFrame
):
    from milkprice.data.sniim_workbook import write_leche_workbook

    february = generate_demo_frame(Month(2025, 2), Month(2025, 2), seed=0, cities=6)
    first = write_leche_workbook(january[january["Fecha"] == "2025-01-31"], tmp_path / "a.xlsx")
    both = pd.concat([january[january["Fecha"] == "2025-01-29"], february.iloc[:24]])
    second = write_leche_workbook(both, tmp_path / "b.xlsx")
    assert ingest_publication(str(first), local_lake).months_created == [JANUARY]
    report = ingest_publication(str(second), local_lake)
    assert report.months_created == [Month(2025, 2)]
    assert report.to_dict()["months_created"] == ["2025-02"]
    assert ingest_publication(str(second), local_lake).months_created == []


# --- against the loopback publisher ----------------------------------------------------------

GOOD, HOLIDAY, FLAKY, SLOW, CORRUPT = (
    date(2025, 1, 6), date(2025, 1, 8), date(2025, 1, 10), date(2025, 1, 13), date(2025, 1, 15),
)  # fmt: skip
FAULTS = Faults(missing={HOLIDAY}, fail_once={FLAKY}, slow={SLOW}, corrupt={CORRUPT})


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    def configure(template: str) -> Path:
        root = tmp_path / "lake"
        monkeypatch.setenv("MILKPRICE_DATA_ROOT", str(root))
        monkeypatch.setenv("MILKPRICE_SNIIM_URL_TEMPLATE", template)
        monkeypatch.setenv("MILKPRICE_SNIIM_TIMEOUT_SECONDS", "0.5")
        for key in ("MILKPRICE_SOURCE", "PREFECT_API_URL"):
            monkeypatch.delenv(key, raising=False)
        return root

    return configure


def fetch(*args: str):
    return runner.invoke(app, ["data", "fetch", *args])


@pytest.mark.e2e
def test_fetch_exit_codes_lines_and_lake_against_a_faulty_publisher(cli_env, january):
    with loopback_publisher(january, FAULTS) as publisher:
        root = cli_env(publisher.template)

        def run(day: date, code: int):
            result = fetch("--day", day.isoformat())
            assert result.exit_code == code, (day, result.stdout, result.stderr)
            lines = [line for line in (result.stdout + result.stderr).splitlines() if line]
            (line,) = [line for line in lines if day.isoformat() in line]
            assert publisher.url(day) in line, line
            return result, line

        _, line = run(GOOD, 0)
        assert "ingested" in line
        good_bytes = snapshot(root)
        assert len(good_bytes) == 1
        _, line = run(GOOD, 0)  # already in the lake: nothing rewritten
        assert "unchanged" in line and "already in the lake" in line
        assert snapshot(root) == good_bytes

        _, line = run(HOLIDAY, EXIT_NOT_PUBLISHED)
        assert f"no publication for {HOLIDAY.isoformat()}" in line
        assert publisher.requests[HOLIDAY] == 1  # a 404 is not retried

        run(FLAKY, 0)  # a 500, then the retry gets the file
        assert publisher.requests[FLAKY] == 2
        after_good = snapshot(root)

        result, line = run(SLOW, 1)
        assert "no answer within 0.5s" in line and "after 3 attempts" in line
        assert line in result.stderr and "Traceback" not in result.stderr
        assert publisher.requests[SLOW] == 3

        _, line = run(CORRUPT, 1)
        assert "not a readable xlsx workbook" in line
        assert snapshot(root) == after_good  # failed days changed nothing

        assert lake_dates(Lake(str(root)), date(2025, 1, 1), date(2025, 1, 31)) == {GOOD, FLAKY}
        frame, _ = Lake(str(root)).read_month(JANUARY)
        assert dates_of(frame["Fecha"]) == {GOOD, FLAKY}
        assert len(frame) == 2 * 24

        # --since: one line per publication day, exit 1 because some failed; reruns are idempotent
        since = fetch("--since", "2025-01-04", "--day", "2025-01-17")
        assert since.exit_code == 1, since.stdout + since.stderr
        text = since.stdout + since.stderr
        for day in (HOLIDAY, SLOW, CORRUPT, date(2025, 1, 17)):
            assert f"{day.isoformat()} " in text and publisher.url(day) in text
        for quiet in ("2025-01-07", "2025-01-09", "2025-01-11", "2025-01-12"):
            assert quiet not in text  # no file on a day SNIIM never publishes: silent
        assert "2025-01-06 " not in text  # in the lake already: not fetched again
        assert dates_of(Lake(str(root)).read_month(JANUARY)[0]["Fecha"]) == {
            GOOD,
            FLAKY,
            date(2025, 1, 17),
        }
        assert "PREFECT_API_URL is not set: event milkprice.data.ingested not sent" in since.stdout


@pytest.mark.e2e
def test_catch_up_after_two_weeks_ingests_every_missing_day_once(local_lake: Lake, january):
    local_lake.write_month(JANUARY, january[january["Fecha"] <= "2025-01-03"])
    with loopback_publisher(january[january["Fecha"] <= "2025-01-17"]) as publisher:
        options = fast(publisher.template)
        results = catch_up(local_lake, date(2025, 1, 4), date(2025, 1, 17), options)
        expected = [date(2025, 1, d) for d in (6, 8, 10, 13, 15, 17)]
        assert [r.day for r in results] == expected
        assert all(r.status == "ingested" for r in results), [r.line for r in results]
        assert all(publisher.requests[day] == 1 for day in expected)
        assert sum(publisher.requests.values()) == 14  # each day of the gap asked once
        before = snapshot(Path(local_lake.base_uri))
        again = catch_up(local_lake, date(2025, 1, 4), date(2025, 1, 17), options)
        assert again == []  # every publication day is held: none asked again
        assert all(publisher.requests[day] == 1 for day in expected)
        assert snapshot(Path(local_lake.base_uri)) == before
        held = lake_dates(local_lake, date(2025, 1, 1), date(2025, 1, 31))
        assert held == {date(2025, 1, 3), *expected}
        frame, _ = local_lake.read_month(JANUARY)
        january_rows = january[january["Fecha"] <= "2025-01-17"]
        assert len(frame) == len(january_rows)


@pytest.mark.e2e
def test_a_holiday_in_a_catch_up_is_reported_and_others_go_on(local_lake: Lake, january):
    with loopback_publisher(january, Faults(missing={HOLIDAY})) as publisher:
        options = fast(publisher.template)
        results = catch_up(local_lake, date(2025, 1, 6), date(2025, 1, 10), options)
        assert [(r.day, r.status) for r in results] == [
            (GOOD, "ingested"), (HOLIDAY, "not_published"), (FLAKY, "ingested"),
        ]  # fmt: skip
        assert results[1].line == (
            f"2025-01-08 not_published: no publication for 2025-01-08 ({publisher.url(HOLIDAY)})"
        )
        assert fetch_day(HOLIDAY, local_lake, options).status == "not_published"

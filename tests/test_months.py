"""Calendar months: parsing, arithmetic, ranges and their edges."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from milkprice.months import Month, local_date, local_today, month_range, previous_month
from milkprice.pipeline.training_run import resolve_validation_month

MEXICO_CITY = ZoneInfo("America/Mexico_City")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-02", Month(2025, 2)),
        ("2025-2", Month(2025, 2)),
        (" 2025-12 \n", Month(2025, 12)),
        ("1900-01", Month(1900, 1)),
        ("2200-12", Month(2200, 12)),
    ],
)
def test_parse_reads_year_and_month(text: str, expected: Month):
    assert Month.parse(text) == expected


@pytest.mark.parametrize(
    "text", ["", "2025", "2025/02", "25-02", "2025-02-01", "feb 2025", "2025-", "-02", "2025-123"]
)
def test_parse_refuses_other_shapes_naming_the_text(text: str):
    with pytest.raises(ValueError, match="YYYY-MM") as raised:
        Month.parse(text)
    assert repr(text) in str(raised.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [("2025-13", "month must be 1..12, got 13"), ("2025-00", "month must be 1..12, got 0")],
)
def test_parse_refuses_impossible_months(text: str, message: str):
    with pytest.raises(ValueError, match=message):
        Month.parse(text)


def test_construction_refuses_out_of_range_years():
    with pytest.raises(ValueError, match=r"year must be 1900\.\.2200, got 1899"):
        Month(1899, 12)
    with pytest.raises(ValueError, match="got 2201"):
        Month(2201, 1)


@pytest.mark.parametrize(
    ("month", "text"),
    [(Month(2025, 2), "2025-02"), (Month(2025, 11), "2025-11"), (Month(1900, 1), "1900-01")],
)
def test_text_form_round_trips(month: Month, text: str):
    assert str(month) == text
    assert Month.parse(str(month)) == month


@pytest.mark.parametrize(
    ("start", "shift", "expected"),
    [
        (Month(2025, 1), 0, Month(2025, 1)),
        (Month(2025, 1), 1, Month(2025, 2)),
        (Month(2025, 12), 1, Month(2026, 1)),
        (Month(2025, 1), -1, Month(2024, 12)),
        (Month(2025, 3), -14, Month(2024, 1)),
        (Month(2024, 11), 14, Month(2026, 1)),
        (Month(2025, 6), 120, Month(2035, 6)),
        (Month(2025, 6), -12, Month(2024, 6)),
    ],
)
def test_shift_crosses_year_boundaries(start: Month, shift: int, expected: Month):
    assert start.shift(shift) == expected
    assert expected.shift(-shift) == start


def test_shift_past_the_supported_years_is_refused():
    with pytest.raises(ValueError, match="year must be"):
        Month(1900, 1).shift(-1)


def test_months_order_chronologically_and_hash_by_value():
    months = [Month(2025, 1), Month(2024, 12), Month(2024, 2), Month(2025, 1)]
    assert sorted(set(months)) == [Month(2024, 2), Month(2024, 12), Month(2025, 1)]
    assert Month(2024, 12) < Month(2025, 1) < Month(2025, 2)


def test_start_end_and_contains():
    february = Month(2024, 2)  # a leap year
    assert february.start == pd.Timestamp("2024-02-01")
    assert february.end == pd.Timestamp("2024-02-29")
    assert Month(2025, 2).end == pd.Timestamp("2025-02-28")
    assert Month(2025, 12).end == pd.Timestamp("2025-12-31")
    assert february.contains(pd.Timestamp("2024-02-29 23:59"))
    assert not february.contains(pd.Timestamp("2024-03-01"))
    assert not february.contains(pd.Timestamp("2023-02-10"))  # same month, other year


def test_of_takes_dates_and_timestamps():
    assert Month.of(date(2025, 3, 31)) == Month(2025, 3)
    assert Month.of(pd.Timestamp("2024-12-01 08:00")) == Month(2024, 12)


def test_month_range_is_inclusive_and_crosses_years():
    assert month_range(Month(2024, 11), Month(2025, 2)) == [
        Month(2024, 11),
        Month(2024, 12),
        Month(2025, 1),
        Month(2025, 2),
    ]
    assert month_range(Month(2025, 1), Month(2025, 1)) == [Month(2025, 1)]
    assert month_range(Month(2025, 2), Month(2025, 1)) == []
    assert len(month_range(Month(2024, 1), Month(2025, 4))) == 16


@pytest.mark.parametrize(
    ("today", "expected"),
    [
        (date(2025, 3, 15), Month(2025, 2)),
        (date(2025, 1, 1), Month(2024, 12)),
        (date(2024, 3, 31), Month(2024, 2)),
    ],
)
def test_previous_month(today: date, expected: Month):
    assert previous_month(today) == expected


def test_previous_month_defaults_to_the_real_today():
    assert previous_month() == Month.of(date.today()).shift(-1)


@pytest.mark.parametrize(
    ("when", "zone", "expected"),
    [
        # 03:00 UTC on 1 March is 21:00 on 28 February in Mexico City (UTC-6, no DST since 2022).
        (datetime(2025, 3, 1, 3, 0, tzinfo=UTC), MEXICO_CITY, date(2025, 2, 28)),
        (datetime(2025, 3, 1, 6, 0, tzinfo=UTC), MEXICO_CITY, date(2025, 3, 1)),
        (datetime(2025, 3, 1, 5, 59, tzinfo=UTC), MEXICO_CITY, date(2025, 2, 28)),
        # A naive time is UTC, not the machine's zone.
        (datetime(2025, 3, 1, 3, 0), MEXICO_CITY, date(2025, 2, 28)),
        # Already in another zone: the instant counts, not its wall clock.
        (datetime(2025, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=9))), UTC, date(2024, 12, 31)),
        (datetime(2025, 3, 1, 3, 0, tzinfo=UTC), UTC, date(2025, 3, 1)),
    ],
)
def test_local_date_is_the_day_of_the_instant_in_the_zone(when, zone, expected):
    assert local_date(when, zone) == expected


def test_scheduled_zero_zero_resolves_to_the_month_before_in_the_zone():
    scheduled = datetime(2025, 3, 1, 3, 0, tzinfo=UTC)
    today = local_today(MEXICO_CITY, at=scheduled)
    assert resolve_validation_month(0, 0, today) == Month(2025, 1)
    # In UTC the same instant is already March: February would be trained.
    assert resolve_validation_month(0, 0, local_today(UTC, at=scheduled)) == Month(2025, 2)


def test_local_today_without_an_instant_reads_the_clock_in_the_zone():
    before = datetime.now(UTC).astimezone(MEXICO_CITY).date()
    today = local_today(MEXICO_CITY)
    after = datetime.now(UTC).astimezone(MEXICO_CITY).date()
    assert today in {before, after}

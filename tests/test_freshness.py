"""The stale-lake rule: fresh, exactly at the limit, one day past it, and an empty lake."""

from __future__ import annotations

from datetime import date

import pytest

from milkprice.monitoring.freshness import STALE_DATA_KIND, stale_lake_alert

LAKE = "/srv/lake"
TODAY = date(2025, 4, 15)  # a Tuesday


@pytest.mark.parametrize("newest", [TODAY, date(2025, 4, 14), date(2025, 4, 11)])
def test_a_recent_publication_is_fresh(newest):
    assert stale_lake_alert(newest, TODAY, 7, LAKE) is None


def test_exactly_the_limit_is_still_fresh():
    assert stale_lake_alert(date(2025, 4, 8), TODAY, 7, LAKE) is None


def test_one_day_past_the_limit_alerts_naming_the_lake_the_date_and_the_age():
    alert = stale_lake_alert(date(2025, 4, 7), TODAY, 7, LAKE)
    assert alert is not None
    assert alert.kind == STALE_DATA_KIND == "stale-data"
    assert alert.check == "newest_publication_age"
    assert (alert.value, alert.threshold) == (8.0, 7.0)
    assert alert.month == "2025-04"
    for part in (LAKE, "2025-04-07", "8 days", "2025-04-15"):
        assert part in alert.message
    assert alert.to_dict()["figures"] == {"age_days": 8.0}


def test_the_limit_is_the_setting_given():
    assert stale_lake_alert(date(2025, 4, 7), TODAY, 8, LAKE) is None
    assert stale_lake_alert(date(2025, 4, 12), TODAY, 2, LAKE) is not None


def test_an_empty_lake_alerts():
    alert = stale_lake_alert(None, TODAY, 7, LAKE)
    assert alert is not None
    assert alert.kind == "stale-data" and alert.check == "lake_empty"
    assert alert.value is None and alert.threshold == 7.0
    assert LAKE in alert.message and "no publication" in alert.message

"""Whether the lake still receives publications: the stale-lake rule.

SNIIM publishes on Monday, Wednesday and Friday; a long weekend or a holiday leaves at most four
or five days between two publications, so a lake whose newest publication is more than
``MILKPRICE_STALE_LAKE_DAYS`` (7) days old means the fetching stopped (the site moved, the
ingest deployment is paused, the URL template is wrong), which no single failed download says.
:func:`stale_lake_alert` is pure: the flow ``lake-freshness`` reads the lake's newest date and
the day of its run and sends the alert it returns like any other
(:mod:`milkprice.monitoring.alerts`).
"""

from __future__ import annotations

from datetime import date

from milkprice.monitoring.alerts import Alert

__all__ = ["STALE_DATA_KIND", "stale_lake_alert"]

# The alert's kind; its event is ``milkprice.alert.stale-data`` (orchestration/events.py).
STALE_DATA_KIND = "stale-data"


def stale_lake_alert(
    newest: date | None, today: date, max_age_days: int, where: str
) -> Alert | None:
    """The alert when the lake's newest publication is more than ``max_age_days`` before ``today``.

    Args:
        newest: The newest publication date in the lake; ``None``: the lake has none at all.
        today: The day of the check (in MILKPRICE_TIMEZONE).
        max_age_days: The age still accepted (``MILKPRICE_STALE_LAKE_DAYS``): exactly that
            many days old is fresh, one more is stale.
        where: The lake's URI, named in the message.

    Returns:
        ``None`` when the lake is fresh, else one alert of kind ``stale-data`` whose ``value``
        is the age in days (``None`` for an empty lake) and ``threshold`` ``max_age_days``.
    """
    if newest is None:
        return Alert(
            STALE_DATA_KIND,
            "lake_empty",
            f"the lake at {where} holds no publication at all on {today.isoformat()}: "
            "nothing has been ingested; is the ingest running?",
            threshold=float(max_age_days),
        )
    age = (today - newest).days
    if age <= max_age_days:
        return None
    return Alert(
        STALE_DATA_KIND,
        "newest_publication_age",
        f"the lake at {where} has no publication newer than {newest.isoformat()}: {age} days "
        f"old on {today.isoformat()} (alert above {max_age_days}); is the ingest running?",
        month=f"{newest:%Y-%m}",
        value=float(age),
        threshold=float(max_age_days),
        figures={"age_days": float(age)},
    )

"""Calendar months: the unit of the lake, of training windows and of validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, tzinfo

import pandas as pd

__all__ = ["Month", "local_date", "local_today", "month_range", "previous_month"]

_MONTH_RE = re.compile(r"^(\d{4})-(\d{1,2})$")


@dataclass(frozen=True, order=True)
class Month:
    """A calendar month, e.g. ``Month(2025, 2)``; its text form is ``2025-02``."""

    year: int
    month: int

    def __post_init__(self) -> None:
        """Refuse impossible months at construction, naming the bad value."""
        if not 1 <= self.month <= 12:
            raise ValueError(f"month must be 1..12, got {self.month}")
        if not 1900 <= self.year <= 2200:
            raise ValueError(f"year must be 1900..2200, got {self.year}")

    @classmethod
    def parse(cls, text: str) -> Month:
        """Parse ``YYYY-MM``; the error names the text that could not be read."""
        match = _MONTH_RE.match(text.strip())
        if not match:
            raise ValueError(f"expected a month as YYYY-MM, got {text!r}")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, when: date | pd.Timestamp) -> Month:
        """The month a date falls in."""
        return cls(when.year, when.month)

    def __str__(self) -> str:
        """Text form ``YYYY-MM``."""
        return f"{self.year:04d}-{self.month:02d}"

    def shift(self, months: int) -> Month:
        """The month ``months`` later (negative: earlier)."""
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1)

    @property
    def start(self) -> pd.Timestamp:
        """Midnight of the first day of the month."""
        return pd.Timestamp(self.year, self.month, 1)

    @property
    def end(self) -> pd.Timestamp:
        """Midnight of the last day of the month (dates in the lake carry no time)."""
        return self.start + pd.offsets.MonthEnd(0)

    def contains(self, when: pd.Timestamp) -> bool:
        """Whether a timestamp falls inside this month."""
        return when.year == self.year and when.month == self.month


def month_range(first: Month, last: Month) -> list[Month]:
    """Every month from ``first`` to ``last``, both included (empty if ``last < first``)."""
    months: list[Month] = []
    current = first
    while current <= last:
        months.append(current)
        current = current.shift(1)
    return months


def previous_month(today: date | None = None) -> Month:
    """The previous calendar month relative to ``today`` (default: the real today)."""
    return Month.of(today or date.today()).shift(-1)


def local_date(when: datetime, zone: tzinfo) -> date:
    """The calendar day ``when`` falls on in ``zone`` (a naive ``when`` is taken as UTC).

    Prefect's scheduled times are UTC instants: ``2025-03-01T03:00Z`` is still 28 February in
    Mexico City, so the run's "previous month" is January there, not February.
    """
    aware = when if when.tzinfo is not None else when.replace(tzinfo=UTC)
    return aware.astimezone(zone).date()


def local_today(zone: tzinfo, at: datetime | None = None) -> date:
    """The day it is in ``zone`` at the instant ``at`` (default: now, from the clock).

    A flow passes its run's scheduled time as ``at``, so a late or catch-up run resolves the
    day of its schedule; a direct call has none and reads the clock.

    The one place milkprice reads "today" for a user: the entry points pass its answer to the
    pure functions (:func:`previous_month`, ...) instead of letting them read the machine's
    local date, which on a server in UTC is tomorrow from 18:00 in Mexico City.
    """
    return local_date(at if at is not None else datetime.now(UTC), zone)

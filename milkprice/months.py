"""Calendar months: the unit of the lake, of training windows and of validation."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

import pandas as pd

__all__ = ["Month", "month_range", "previous_month"]

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

"""SNIIM "Leche" publication: parse the xlsx workbook into lake rows (download: sniim_download).

The workbook holds one sheet of repeated blocks, one per publication date::

    Precio promedio al consumidor por litro          <- title: starts a block
    Viernes 25 de julio de 2025                      <- publication date, in Spanish
                Pasteurizada            Ultrapasteurizada
    Estado  Ciudad  Tiendas  Autoservicios  Tiendas  Autoservicios
    Jalisco Guadalajara 26.5  25.9  27.0  26.1     <- data: state only on a state's first city
            ZM Guadalajara ...                     <- blank state: the state above continues
            Promedio Ponderado por Población ...   <- averages, not cities: dropped
    Fuente: SNIIM                                  <- ends the block

The layout is inferred from parsers written by people who used the real files, so this parser
locates blocks and headers by their texts, checks what it finds, and fails naming the file and
the 1-based row on anything it does not expect, rather than guessing. Names are kept exactly as
published (the real data has trailing spaces in some of them).
"""

from __future__ import annotations

import math
import re
import zipfile
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import openpyxl
import pandas as pd

from milkprice.data.schema import CANALES, TIPOS, normalize_frame

__all__ = [
    "LechePublication",
    "SniimFormatError",
    "parse_leche_publication",
    "parse_leche_workbook",
]

TITLE_TEXT = "precio promedio al consumidor por litro"
_BLOCK_END_MARKERS = ("promedio", "fuente", "sniim")
_AVERAGE_MARKER = "promedio"
_MISSING_TEXTS = {"", "-", "--", "—", "–"}  # noqa: RUF001 - dashes SNIIM may use for "no report"
_EXPECTED_CHANNELS = [CANALES[0], CANALES[1], CANALES[0], CANALES[1]]
_EXPECTED_TIPOS = [TIPOS[0], TIPOS[0], TIPOS[1], TIPOS[1]]
_PRICE_COLUMNS = range(2, 6)  # 0-based columns 3..6
_HEADER_ROWS_MAX = 6
_NUMBER_RE = re.compile(r"^\d+(\.\d+)?$")
_DATE_RE = re.compile(
    r"(\d{1,2})\s*[º°]?\s+de\s+([a-záéíóú]+)\s+(?:de|del)\s+(\d{4})", re.IGNORECASE
)
_MONTHS = {
    "enero": 1, "febrero": 2, "marzo": 3, "abril": 4, "mayo": 5, "junio": 6, "julio": 7,
    "agosto": 8, "septiembre": 9, "setiembre": 9, "octubre": 10, "noviembre": 11, "diciembre": 12,
}  # fmt: skip


class SniimFormatError(ValueError):
    """The file is not a SNIIM "Leche" workbook, or a part of it is not as expected."""


@dataclass(frozen=True)
class LechePublication:
    """What one workbook holds: clean lake rows and what the parser set aside."""

    source: str
    frame: pd.DataFrame
    dates: list[date]
    dropped_average_rows: int


def _text(value: object) -> str:
    """Whitespace-collapsed, case-folded text of a cell, only to recognise header texts."""
    return " ".join(str(value).split()).casefold() if value is not None else ""


def _is_blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


class _Sheet:
    """Rows of one worksheet with 1-based access and error messages that name the place."""

    def __init__(self, origin: str, name: str, rows: list[tuple[object, ...]]) -> None:
        self.origin = origin
        self.name = name
        self.rows = [(*row, *([None] * (6 - len(row)))) for row in rows]

    def __len__(self) -> int:
        return len(self.rows)

    def row(self, number: int) -> tuple[object, ...]:
        return self.rows[number - 1]

    def error(self, number: int, message: str) -> SniimFormatError:
        return SniimFormatError(f"{self.origin}: sheet {self.name!r}, row {number}: {message}")

    def shown(self, number: int) -> list[object]:
        """List the non-blank cells of a row, for messages."""
        if not 1 <= number <= len(self):
            return []
        return [value for value in self.row(number) if not _is_blank(value)]

    def is_title(self, number: int) -> bool:
        return any(TITLE_TEXT in _text(value) for value in self.row(number))


def _parse_date(sheet: _Sheet, number: int, value: object) -> date | None:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        return None
    match = _DATE_RE.search(value)
    if match is None:
        if re.search(r"\bde\b.*\b\d{4}\b", value):
            raise sheet.error(
                number, f"cannot read the date {value!r} (expected '25 de julio de 2025')"
            )
        return None
    day, month_name, year = match.groups()
    month = _MONTHS.get(month_name.casefold())
    if month is None:
        raise sheet.error(number, f"unknown Spanish month {month_name!r} in the date {value!r}")
    try:
        return date(int(year), month, int(day))
    except ValueError as exc:
        raise sheet.error(number, f"impossible date {value!r} ({exc})") from None


def _find_date(sheet: _Sheet, title_row: int) -> tuple[date, int]:
    """Find the date of the block titled at ``title_row``; return it and the row holding it."""
    for number in (title_row, title_row + 1):
        if number > len(sheet):
            break
        for value in sheet.row(number):
            if number == title_row and TITLE_TEXT in _text(value):
                continue
            found = _parse_date(sheet, number, value)
            if found is not None:
                return found, number
    raise sheet.error(
        title_row + 1,
        "expected the publication date in Spanish (e.g. '25 de julio de 2025') below the title "
        f"at row {title_row}, found {sheet.shown(title_row + 1)}",
    )


def _header_kinds(row: tuple[object, ...]) -> set[str]:
    kinds = set()
    prices = [_text(row[i]) for i in _PRICE_COLUMNS]
    if any(text in {t.casefold() for t in TIPOS} for text in prices):
        kinds.add("tipo")
    if any(text in {c.casefold() for c in CANALES} for text in prices):
        kinds.add("canal")
    if _text(row[0]) == "estado" or _text(row[1]) == "ciudad":
        kinds.add("estado")
    return kinds


def _check_header(
    sheet: _Sheet, number: int, what: str, expected: list[str], *, merged: bool
) -> None:
    found = [sheet.row(number)[i] for i in _PRICE_COLUMNS]
    ok = all(
        _text(value) == want.casefold() or (merged and i % 2 == 1 and _is_blank(value))
        for i, (value, want) in enumerate(zip(found, expected, strict=True))
    )
    extra = [value for value in sheet.row(number)[6:] if not _is_blank(value)]
    if not ok or extra:
        raise sheet.error(
            number,
            f"expected the {what} {expected} in columns 3-6, found {found}"
            + (f" and more headers {extra} after column 6" if extra else ""),
        )


def _read_headers(sheet: _Sheet, title_row: int, date_row: int) -> int:
    """Check the tipo/channel header rows of a block; return the first row after them."""
    channel_row = tipo_row = None
    number = date_row + 1
    while number <= len(sheet) and number <= date_row + _HEADER_ROWS_MAX:
        row = sheet.row(number)
        if all(_is_blank(value) for value in row):
            number += 1
            continue
        kinds = _header_kinds(row)
        if not kinds:
            break
        if "canal" in kinds:
            if channel_row is not None:
                raise sheet.error(number, f"second channel header row (first at row {channel_row})")
            channel_row = number
        elif "tipo" in kinds:
            tipo_row = number
        number += 1
    if channel_row is None:
        expected_at = title_row + 3
        found = sheet.row(expected_at)[2:6] if expected_at <= len(sheet) else ()
        raise sheet.error(
            expected_at,
            f"no channel header ({', '.join(CANALES)}) found for the block titled at row "
            f"{title_row}; columns 3-6 of row {expected_at} hold "
            f"{list(found)}",
        )
    _check_header(sheet, channel_row, "channel names", _EXPECTED_CHANNELS, merged=False)
    if tipo_row is not None:
        _check_header(sheet, tipo_row, "milk types", _EXPECTED_TIPOS, merged=True)
    return number


def _price(sheet: _Sheet, number: int, column: int, value: object) -> float:
    if value is None:
        return float("nan")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise sheet.error(number, f"column {column + 1}: a price cannot be {value!r}")
    if isinstance(value, int | float):
        # 0 is SNIIM's "no report" (the lake makes it missing); below 0 or infinite is no price.
        if not math.isfinite(value) or value < 0:
            raise sheet.error(number, f"column {column + 1}: {value!r} is not a price")
        return float(value)
    text = value.strip()
    if text in _MISSING_TEXTS:
        return float("nan")
    if _NUMBER_RE.match(text):
        return float(text)
    raise sheet.error(number, f"column {column + 1}: price {value!r} is not a number")


def _ends_block(sheet: _Sheet, number: int) -> bool:
    first = _text(sheet.row(number)[0])
    return (
        any(marker in first for marker in _BLOCK_END_MARKERS)
        or first == "estado"
        or sheet.is_title(number)
    )


def _read_block(
    sheet: _Sheet, title_row: int, records: list[tuple[object, ...]]
) -> tuple[date, int, int]:
    """Append a block's rows to ``records``; return its date, dropped averages and end row."""
    published, date_row = _find_date(sheet, title_row)
    number = _read_headers(sheet, title_row, date_row)
    state: str | None = None
    # A label in column 1 of an average row (skipped): the next city without a state of its
    # own could belong to it or to the state above; refuse rather than file it under either.
    skipped_label: tuple[int, object] | None = None
    seen: dict[tuple[str, str], int] = {}
    averages = 0
    while number <= len(sheet) and not _ends_block(sheet, number):
        row = sheet.row(number)
        if all(_is_blank(value) for value in row):
            number += 1
            continue
        first, city = row[0], row[1]
        if _is_blank(city) or not isinstance(city, str):
            raise sheet.error(number, f"column 2: expected a city name, found {city!r}")
        if _AVERAGE_MARKER in city.casefold():
            averages += 1
            if not _is_blank(first):
                skipped_label = (number, first)
            number += 1
            continue
        if not _is_blank(first):
            if not isinstance(first, str):
                raise sheet.error(number, f"column 1: a state must be text, found {first!r}")
            state, skipped_label = first, None
        elif skipped_label is not None:
            label_row, label = skipped_label
            above = f" or to {state!r}, the state above" if state is not None else ""
            raise sheet.error(
                number,
                f"city {city!r} has no state in column 1, and the state label {label!r} above "
                f"it sits on the average row {label_row}, which is not a city: cannot tell "
                f"whether {city!r} belongs to {label!r}{above}",
            )
        if state is None:
            raise sheet.error(
                number, f"city {city!r} has no state (column 1 blank on the first row)"
            )
        if (state, city) in seen:
            raise sheet.error(number, f"{state!r}/{city!r} repeats row {seen[state, city]}")
        seen[state, city] = number
        for column, tipo, canal in zip(
            _PRICE_COLUMNS, _EXPECTED_TIPOS, _EXPECTED_CHANNELS, strict=True
        ):
            price = _price(sheet, number, column, row[column])
            records.append((published, state, city, tipo, canal, price))
        number += 1
    if not seen:
        raise sheet.error(title_row, f"the block of {published:%Y-%m-%d} has no data rows")
    if number <= len(sheet) and _AVERAGE_MARKER in _text(sheet.row(number)[0]):
        averages += 1  # an average row that starts with "Promedio" ends the block
    return published, averages, number


def _looks_like_prices(row: tuple[object, ...]) -> bool:
    labels = f"{_text(row[0])} {_text(row[1])}"
    numbers = any(
        isinstance(row[i], int | float) and not isinstance(row[i], bool) for i in _PRICE_COLUMNS
    )
    return numbers and _AVERAGE_MARKER not in labels


def _load_sheets(path: Path, origin: str) -> list[_Sheet]:
    if not path.exists():
        raise FileNotFoundError(f"{origin}: no such file")
    if not path.is_file():
        raise FileNotFoundError(f"{origin}: not a file")
    with path.open("rb") as handle:
        head = handle.read(8)
    if head.startswith(b"\xd0\xcf\x11\xe0"):
        raise SniimFormatError(f"{origin}: an old binary .xls workbook; save it as .xlsx")
    if not head.startswith(b"PK"):
        hint = " (it looks like an HTML page)" if head.lstrip().startswith(b"<") else ""
        raise SniimFormatError(f"{origin}: not an xlsx workbook{hint}")
    try:
        with path.open("rb") as handle:
            workbook = openpyxl.load_workbook(handle, read_only=True, data_only=True)
            try:
                sheets = []
                for sheet in workbook.worksheets:
                    # Some generators declare a wrong sheet size; read every row regardless.
                    sheet.reset_dimensions()
                    rows = list(sheet.iter_rows(values_only=True))
                    sheets.append(_Sheet(origin, sheet.title, rows))
                return sheets
            finally:
                workbook.close()
    except (zipfile.BadZipFile, KeyError, OSError, ValueError, TypeError) as exc:
        raise SniimFormatError(f"{origin}: not a readable xlsx workbook ({exc})") from exc


def parse_leche_publication(path: Path | str) -> LechePublication:
    """Parse a SNIIM "Leche" workbook, with what was set aside.

    Args:
        path: the ``.xlsx`` file.

    Returns:
        The rows in the lake's columns and canonical order (one row per date, state, city,
        tipo and canal, ``NaN`` where no price was reported), the dates, and how many average
        rows were dropped.

    Raises:
        FileNotFoundError: no file at ``path``.
        SniimFormatError: not an xlsx workbook, no "Precio promedio al consumidor por litro"
            block, or anything unexpected in a block (the message names the file and row).

    """
    origin = str(path)
    records: list[tuple[object, ...]] = []
    dates: dict[date, str] = {}
    averages = 0
    for sheet in _load_sheets(Path(path), origin):
        number = 1
        while number <= len(sheet):
            if not sheet.is_title(number):
                if _looks_like_prices(sheet.row(number)):
                    raise sheet.error(number, "prices outside a block (no title above them)")
                number += 1
                continue
            published, dropped, end = _read_block(sheet, number, records)
            place = f"sheet {sheet.name!r} row {number}"
            if published in dates:
                raise sheet.error(
                    number, f"date {published:%Y-%m-%d} already given at {dates[published]}"
                )
            dates[published] = place
            averages += dropped
            number = end
    if not dates:
        raise SniimFormatError(
            f"{origin}: not a SNIIM milk publication (no row with {TITLE_TEXT!r})"
        )
    frame = pd.DataFrame.from_records(
        records, columns=["Fecha", "Estado", "Ciudad", "Tipo", "Canal", "Precio"]
    )
    frame["Fecha"] = pd.to_datetime(frame["Fecha"])
    return LechePublication(origin, normalize_frame(frame), sorted(dates), averages)


def parse_leche_workbook(path: Path | str) -> pd.DataFrame:
    """Parse a SNIIM "Leche" workbook into lake rows; see :func:`parse_leche_publication`."""
    return parse_leche_publication(path).frame

"""Write xlsx files in the layout of the SNIIM "Leche" publication, independently of the parser.

Only openpyxl and the layout description are used here (nothing of :mod:`milkprice.data.sniim`),
so a round trip frame -> workbook -> parser checks the parser against an independent writer. The
demo publisher (:mod:`milkprice.data.publisher`) serves workbooks written by it; the tests' helpers
(``tests/sniim_workbook.py``) use it to build good and bad publications.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

import openpyxl
import pandas as pd

__all__ = ["TIPO_CANAL", "TITLE", "Row", "spanish_date", "write_leche_workbook"]

TITLE = "Precio promedio al consumidor por litro"
MONTHS_ES = [
    "enero", "febrero", "marzo", "abril", "mayo", "junio", "julio",
    "agosto", "septiembre", "octubre", "noviembre", "diciembre",
]  # fmt: skip
WEEKDAYS_ES = ["Lunes", "Martes", "Miércoles", "Jueves", "Viernes", "Sábado", "Domingo"]

TIPO_CANAL = [
    ("Pasteurizada", "Tiendas"),
    ("Pasteurizada", "Autoservicios"),
    ("Ultrapasteurizada", "Tiendas"),
    ("Ultrapasteurizada", "Autoservicios"),
]

Row = Sequence[object]


def spanish_date(day: pd.Timestamp, *, weekday: bool) -> str:
    """Date as SNIIM writes it, e.g. ``Viernes 25 de julio de 2025``."""
    text = f"{day.day} de {MONTHS_ES[day.month - 1]} de {day.year}"
    return f"{WEEKDAYS_ES[day.weekday()]} {text}" if weekday else text


def _block_rows(
    day: pd.Timestamp,
    rows: pd.DataFrame,
    *,
    missing: str | None,
    weekday: bool,
    date_text: str | None,
    channels: Sequence[str] | None,
    extra: Sequence[Row],
) -> list[Row]:
    prices = dict(
        zip(
            zip(rows["Estado"], rows["Ciudad"], rows["Tipo"], rows["Canal"], strict=True),
            rows["Precio"],
            strict=True,
        )
    )
    # Cities of one state together (states in order of first appearance), as SNIIM prints them.
    cities: dict[str, list[str]] = {}
    for state, city, *_ in prices:
        if city not in cities.setdefault(state, []):
            cities[state].append(city)
    out: list[Row] = [
        [TITLE],
        [date_text if date_text is not None else spanish_date(day, weekday=weekday)],
        [None, None, "Pasteurizada", None, "Ultrapasteurizada", None],
        [None, None, *(channels or [canal for _, canal in TIPO_CANAL])],
        ["Estado", "Ciudad"],
    ]
    previous_state = None
    for state, city in ((s, c) for s, names in cities.items() for c in names):
        values = []
        for tipo, canal in TIPO_CANAL:
            price = prices.get((state, city, tipo, canal), math.nan)
            values.append(missing if pd.isna(price) else float(price))
        out.append([state if state != previous_state else None, city, *values])
        previous_state = state
    out.extend(extra)
    means: list[float | None] = []
    for tipo, canal in TIPO_CANAL:
        values = [v for k, v in prices.items() if k[2:] == (tipo, canal) and not pd.isna(v)]
        means.append(round(sum(values) / len(values), 2) if values else None)
    # One average row under the last state (blank state cell, as in the real files), one that
    # starts with "Promedio" (ends the block), then the footer.
    out.append([None, "Promedio Ponderado por Población", *means])
    out.append(["Promedio aritmético", None, *means])
    out.append(["Fuente: SNIIM, Secretaría de Economía"])
    out.append([])
    return out


def write_leche_workbook(
    frame: pd.DataFrame,
    path: Path | BinaryIO,
    *,
    missing: str | None = "-",
    weekday: bool = True,
    extra_rows: Mapping[pd.Timestamp, Sequence[Row]] | None = None,
    date_texts: Mapping[pd.Timestamp, str] | None = None,
    channels: Sequence[str] | None = None,
    preamble: Sequence[Row] = (("Secretaría de Economía",), ("SNIIM - Leche",), ()),
) -> Path | BinaryIO:
    """Write ``frame`` (lake columns) as a SNIIM "Leche" workbook, newest date first.

    Args:
        frame: rows with Fecha, Estado, Ciudad, Tipo, Canal, Precio; every city of a date must
            have its four (Tipo, Canal) rows.
        path: the ``.xlsx`` to write (a path, or a binary file object).
        missing: what a missing price is written as (``"-"`` or ``None`` for a blank cell).
        weekday: whether the date row starts with the Spanish weekday.
        extra_rows: rows appended after the cities of the block of a date (to inject bad rows).
        date_texts: replaces the date text of the block of a date.
        channels: replaces the four channel names of every block.
        preamble: rows written above the first block.
    """
    counts = frame.groupby(["Fecha", "Estado", "Ciudad"]).size()
    if not (counts == len(TIPO_CANAL)).all():
        raise ValueError("every city of a date needs its four (Tipo, Canal) rows")
    workbook = openpyxl.Workbook(write_only=True)
    sheet = workbook.create_sheet("Leche")
    for row in preamble:
        sheet.append(list(row))
    for day, rows in sorted(frame.groupby("Fecha", sort=False), key=lambda g: g[0], reverse=True):
        for row in _block_rows(
            pd.Timestamp(day),
            rows,
            missing=missing,
            weekday=weekday,
            date_text=(date_texts or {}).get(day),
            channels=channels,
            extra=(extra_rows or {}).get(day, ()),
        ):
            sheet.append(list(row))
    workbook.save(path)
    return path

"""The tests' workbook helpers: the package's SNIIM layout writer, small frames, raw sheets.

The writer itself is :mod:`milkprice.data.sniim_workbook` (independent of the parser); this module
re-exports it beside the helpers only tests need.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd

from milkprice.data.sniim_workbook import TIPO_CANAL, TITLE, spanish_date, write_leche_workbook

__all__ = [
    "CITIES",
    "TIPO_CANAL",
    "TITLE",
    "small_frame",
    "spanish_date",
    "write_leche_workbook",
    "write_rows",
]

CITIES = [
    ("Aguascalientes ", "Aguascalientes"),  # trailing space, as in the real data
    ("Jalisco", "Guadalajara"),
    ("Jalisco", "ZM Guadalajara"),
    ("Veracruz", "Veracruz "),
    ("Veracruz", "Xalapa"),
    ("Edo. México", "Toluca"),
]


def small_frame(dates: list[str] | None = None, seed: int = 0) -> pd.DataFrame:
    """Complete rows (every city x tipo x canal on every date), some prices missing."""
    rng = np.random.default_rng(seed)
    rows = []
    for day in dates or ["2025-06-27", "2025-06-30", "2025-07-02"]:
        for state, city in CITIES:
            for tipo, canal in TIPO_CANAL:
                price = round(float(rng.uniform(18, 32)), 2)
                rows.append((pd.Timestamp(day), state, city, tipo, canal, price))
    frame = pd.DataFrame(rows, columns=["Fecha", "Estado", "Ciudad", "Tipo", "Canal", "Precio"])
    frame.loc[rng.random(len(frame)) < 0.2, "Precio"] = np.nan
    frame.loc[(frame["Ciudad"] == "Toluca") & (frame["Tipo"] == "Pasteurizada"), "Precio"] = np.nan
    return frame


def write_rows(path: Path, rows: list[list[object]]) -> Path:
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    workbook.save(path)
    return path

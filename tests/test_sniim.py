"""SNIIM "Leche" parser: exact round trips, and loud failures naming file and row."""

from __future__ import annotations

import zipfile
from datetime import date
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import pytest
from sniim_workbook import TIPO_CANAL, TITLE, small_frame, write_leche_workbook, write_rows

from milkprice.data.lake import Lake
from milkprice.data.schema import normalize_frame
from milkprice.data.sniim import SniimFormatError, parse_leche_publication, parse_leche_workbook
from milkprice.data.sniim_download import SNIIM_LECHE_URL, leche_publication_url
from milkprice.months import month_range


def row_of(path: Path, text: str) -> int:
    """1-based row of the first cell equal to ``text`` (found independently of the parser)."""
    sheet = openpyxl.load_workbook(path).active
    for number, row in enumerate(sheet.iter_rows(values_only=True), start=1):
        if text in row:
            return number
    raise AssertionError(f"{text!r} not in {path}")


@pytest.mark.parametrize(("missing", "weekday"), [("-", True), (None, False)])
def test_round_trip_small_frame_is_exact(tmp_path: Path, missing: str | None, weekday: bool):
    frame = small_frame()
    path = write_leche_workbook(frame, tmp_path / "leche.xlsx", missing=missing, weekday=weekday)
    parsed = parse_leche_workbook(path)
    expected = normalize_frame(frame)
    pd.testing.assert_frame_equal(parsed, expected, check_exact=True)
    assert parsed["Precio"].isna().sum() == frame["Precio"].isna().sum() > 0
    assert set(parsed["Estado"]) >= {"Aguascalientes ", "Edo. México"}
    assert "Veracruz " in set(parsed["Ciudad"])


def test_parse_reports_dates_and_dropped_average_rows(tmp_path: Path):
    frame = small_frame()
    path = write_leche_workbook(frame, tmp_path / "leche.xlsx")
    publication = parse_leche_publication(path)
    assert publication.dates == [date(2025, 6, 27), date(2025, 6, 30), date(2025, 7, 2)]
    # two average rows per block: one under the last state, one starting with "Promedio"
    assert publication.dropped_average_rows == 6
    assert not publication.frame["Ciudad"].str.contains("Promedio").any()
    assert publication.source == str(path)


@pytest.mark.realdata
def test_round_trip_all_real_data_is_exact(tmp_path: Path, real_data_dir: Path):
    real = Lake(str(real_data_dir))
    window = real.read_window(month_range(real.list_months()[0], real.list_months()[-1]))
    frame = window.frame
    assert frame["Fecha"].nunique() == 196
    path = write_leche_workbook(frame, tmp_path / "all.xlsx")
    publication = parse_leche_publication(path)
    pd.testing.assert_frame_equal(publication.frame, normalize_frame(frame), check_exact=True)
    assert len(publication.dates) == 196
    assert publication.dropped_average_rows == 2 * 196


def test_header_variants_are_located_by_text(tmp_path: Path):
    rows = [
        ["SNIIM"],
        [None, TITLE + " (pesos)"],
        [None, "Precios al VIERNES, 1 DE AGOSTO DEL 2025"],
        [],
        ["Estado", "Ciudad", "TIENDAS", "Autoservicios ", "Tiendas", "autoservicios"],
        ["Sonora", "Hermosillo", 25.5, "-", " 27.10 ", 0],
        [None, "Nogales", None, 24, "—", 26.0],
        ["Fuente: SNIIM"],
    ]
    path = write_rows(tmp_path / "variant.xlsx", rows)
    parsed = parse_leche_workbook(path)
    assert parsed["Fecha"].unique().tolist() == [pd.Timestamp("2025-08-01")]
    hermosillo = parsed[parsed["Ciudad"] == "Hermosillo"].set_index(["Tipo", "Canal"])["Precio"]
    assert hermosillo["Pasteurizada", "Tiendas"] == 25.5
    assert np.isnan(hermosillo["Pasteurizada", "Autoservicios"])
    assert hermosillo["Ultrapasteurizada", "Tiendas"] == 27.1
    assert hermosillo["Ultrapasteurizada", "Autoservicios"] == 0.0  # kept; the lake repairs it
    assert (parsed.loc[parsed["Ciudad"] == "Nogales", "Estado"] == "Sonora").all()
    assert len(parsed) == 8


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25 de julio de 2025", date(2025, 7, 25)),
        ("Viernes 25 de Julio de 2025", date(2025, 7, 25)),
        ("MIÉRCOLES 3 DE SEPTIEMBRE DE 2025", date(2025, 9, 3)),
        ("Lunes, 1 de diciembre del 2025", date(2025, 12, 1)),
    ],
)
def test_spanish_dates(tmp_path: Path, text: str, expected: date):
    frame = small_frame(["2025-01-10"])
    day = pd.Timestamp("2025-01-10")
    path = write_leche_workbook(frame, tmp_path / "d.xlsx", date_texts={day: text})
    assert parse_leche_publication(path).dates == [expected]


def test_publication_url_pattern():
    assert leche_publication_url(date(2025, 7, 30)) == SNIIM_LECHE_URL
    assert SNIIM_LECHE_URL.startswith("https://") and SNIIM_LECHE_URL.endswith("30072025.xlsx")


# --- loud failures -------------------------------------------------------------------------


def test_non_numeric_price_names_file_and_row(tmp_path: Path):
    frame = small_frame()
    day = pd.Timestamp("2025-06-30")
    bad = ["Sonora", "Hermosillo", 25.0, "n/d", 26.0, 27.0]
    path = write_leche_workbook(frame, tmp_path / "bad.xlsx", extra_rows={day: [bad]})
    with pytest.raises(SniimFormatError) as info:
        parse_leche_workbook(path)
    message = str(info.value)
    assert str(path) in message
    assert f"row {row_of(path, 'Hermosillo')}:" in message
    assert "'n/d' is not a number" in message and "column 4" in message


def test_unknown_channel_names_the_header_row(tmp_path: Path):
    path = write_leche_workbook(
        small_frame(),
        tmp_path / "chan.xlsx",
        channels=["Tiendas", "Mercados", "Tiendas", "Autoservicios"],
    )
    with pytest.raises(SniimFormatError) as info:
        parse_leche_workbook(path)
    message = str(info.value)
    assert str(path) in message and "Mercados" in message
    assert f"row {row_of(path, 'Mercados')}:" in message


def test_missing_channel_row_names_where_it_was_expected(tmp_path: Path):
    rows = [[TITLE], ["25 de julio de 2025"], [], ["Estado", "Ciudad", "A", "B", "C", "D"]]
    rows.append(["Sonora", "Hermosillo", 1, 2, 3, 4])
    path = write_rows(tmp_path / "nochan.xlsx", rows)
    with pytest.raises(SniimFormatError, match=r"row 4: no channel header"):
        parse_leche_workbook(path)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("25 de juliember de 2025", "unknown Spanish month 'juliember'"),
        ("31 de febrero de 2025", "impossible date"),
        ("Julio 2025", "expected the publication date in Spanish"),
    ],
)
def test_unreadable_date_names_the_row(tmp_path: Path, text: str, expected: str):
    frame = small_frame(["2025-02-10"])
    path = write_leche_workbook(
        frame, tmp_path / "date.xlsx", date_texts={pd.Timestamp("2025-02-10"): text}
    )
    with pytest.raises(SniimFormatError) as info:
        parse_leche_workbook(path)
    assert expected in str(info.value)
    assert f"row {row_of(path, text)}:" in str(info.value)
    assert str(path) in str(info.value)


def test_same_date_twice_is_refused(tmp_path: Path):
    frame = small_frame(["2025-06-27", "2025-06-30"])
    texts = {pd.Timestamp("2025-06-27"): "30 de junio de 2025"}
    path = write_leche_workbook(frame, tmp_path / "twice.xlsx", date_texts=texts)
    with pytest.raises(
        SniimFormatError, match=r"date 2025-06-30 already given at sheet 'Leche' row"
    ):
        parse_leche_workbook(path)


def test_same_city_twice_in_a_block_is_refused(tmp_path: Path):
    day = pd.Timestamp("2025-06-27")
    again = [["Jalisco", "Guadalajara", 1.0, 2.0, 3.0, 4.0]]
    path = write_leche_workbook(small_frame(), tmp_path / "dup.xlsx", extra_rows={day: again})
    with pytest.raises(SniimFormatError, match=r"'Jalisco'/'Guadalajara' repeats row \d+"):
        parse_leche_workbook(path)


def test_block_without_data_rows_is_refused(tmp_path: Path):
    rows = [
        [TITLE],
        ["25 de julio de 2025"],
        [None, None, "Pasteurizada", None, "Ultrapasteurizada"],
    ]
    rows += [
        [None, None, "Tiendas", "Autoservicios", "Tiendas", "Autoservicios"],
        ["Fuente: SNIIM"],
    ]
    path = write_rows(tmp_path / "empty.xlsx", rows)
    with pytest.raises(SniimFormatError, match=r"row 1: the block of 2025-07-25 has no data rows"):
        parse_leche_workbook(path)


def test_first_row_without_state_is_refused(tmp_path: Path):
    rows = [[TITLE], ["25 de julio de 2025"], [], ["Estado", "Ciudad", *[c for _, c in TIPO_CANAL]]]
    rows.append([None, "Hermosillo", 1, 2, 3, 4])
    path = write_rows(tmp_path / "nostate.xlsx", rows)
    with pytest.raises(SniimFormatError, match=r"row 5: city 'Hermosillo' has no state"):
        parse_leche_workbook(path)


def test_prices_outside_a_block_are_refused(tmp_path: Path):
    rows = [["Estado", "Ciudad"], ["Sonora", "Hermosillo", 1.0, 2.0, 3.0, 4.0]]
    path = write_rows(tmp_path / "notitle.xlsx", rows)
    with pytest.raises(SniimFormatError, match=r"row 2: prices outside a block"):
        parse_leche_workbook(path)


def test_xlsx_of_another_layout_is_refused(tmp_path: Path):
    path = write_rows(tmp_path / "other.xlsx", [["name", "value"], ["a", "b"]])
    with pytest.raises(SniimFormatError, match="not a SNIIM milk publication") as info:
        parse_leche_workbook(path)
    assert str(path) in str(info.value)


def _corrupt_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("hello.txt", "not a workbook")


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("prices.csv", lambda p: p.write_text("Fecha,Precio\n2025-01-01,1\n"), "not an xlsx"),
        ("renamed.xlsx", lambda p: p.write_text("just some text"), "not an xlsx"),
        ("page.xlsx", lambda p: p.write_text("<!DOCTYPE html><html>"), "HTML page"),
        (
            "old.xls",
            lambda p: p.write_bytes(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(64)),
            ".xls",
        ),
        ("truncated.xlsx", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(40)), "not a readable"),
        ("zip.xlsx", _corrupt_zip, "not a readable xlsx"),
    ],
)
def test_non_xlsx_files_are_refused_naming_the_file(tmp_path: Path, name, make, expected):
    path = tmp_path / name
    make(path)
    with pytest.raises(SniimFormatError, match=expected) as info:
        parse_leche_workbook(path)
    assert str(path) in str(info.value)


def test_missing_file_names_it(tmp_path: Path):
    path = tmp_path / "nowhere" / "leche.xlsx"
    with pytest.raises(FileNotFoundError, match="no such file") as info:
        parse_leche_workbook(path)
    assert str(path) in str(info.value)

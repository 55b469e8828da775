"""Data validation: what validate_frame accepts, repairs, refuses, and how it says so.

Plus the real SNIIM data: every published partition reads through the lake and validates.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from milkprice.data.demo import generate_demo_frame
from milkprice.data.lake import Lake, frame_fingerprint, serialize_partition
from milkprice.data.schema import (
    COLUMNS,
    KEY_COLUMNS,
    SERIES_KEYS,
    LakeDataError,
    ValidationSummary,
    normalize_frame,
    validate_frame,
)
from milkprice.months import Month, month_range

JAN = Month(2025, 1)


def rows(*prices: float, month: Month = JAN, ciudad: str = "Guadalajara") -> pd.DataFrame:
    days = [month.start + pd.Timedelta(days=i) for i in range(len(prices))]
    return pd.DataFrame(
        {
            "Fecha": pd.to_datetime(days),
            "Estado": "Jalisco",
            "Ciudad": ciudad,
            "Tipo": "Ultrapasteurizada",
            "Canal": "Autoservicios",
            "Precio": list(prices),
        }
    )


# --------------------------------------------------------------------------- accepted and repaired


def test_valid_rows_come_back_canonical_with_a_summary():
    frame = generate_demo_frame(JAN, JAN, seed=5)
    clean, summary = validate_frame(frame.iloc[::-1], origin="demo", month=JAN)

    assert list(clean.columns) == COLUMNS
    assert clean.index.equals(pd.RangeIndex(len(clean)))
    assert clean[KEY_COLUMNS].equals(
        clean[KEY_COLUMNS].sort_values(KEY_COLUMNS).reset_index(drop=True)
    )
    assert str(clean["Fecha"].dtype) == "datetime64[ns]"
    assert str(clean["Precio"].dtype) == "float64"
    assert isinstance(summary, ValidationSummary)
    assert summary.origin == "demo"
    assert summary.rows == len(frame)
    assert summary.series == frame.groupby(SERIES_KEYS).ngroups == 216
    assert summary.dates == frame["Fecha"].nunique()
    assert summary.non_positive_prices == int((frame["Precio"] <= 0).sum())
    assert summary.missing_prices == int(
        frame["Precio"].isna().sum() + (frame["Precio"] <= 0).sum()
    )
    assert summary.to_dict()["rows"] == summary.rows


def test_zero_and_negative_prices_become_missing_and_are_counted():
    clean, summary = validate_frame(rows(25.0, 0.0, -1.5, np.nan, 24.0), origin="x", month=JAN)
    assert clean["Precio"].isna().tolist() == [False, True, True, True, False]
    assert summary.non_positive_prices == 2
    assert summary.missing_prices == 3
    assert summary.rows == 5


def test_national_average_rows_are_dropped_and_counted():
    averages = pd.concat(
        [
            rows(26.1, ciudad="Promedio Ponderado por Población"),
            rows(26.3, ciudad="Promedio aritmético"),
            rows(26.3, ciudad="PROMEDIO nacional"),
        ]
    ).assign(Estado="Zacatecas")
    clean, summary = validate_frame(pd.concat([rows(25.0), averages]), origin="x", month=JAN)
    assert summary.dropped_average_rows == 3
    assert clean["Ciudad"].tolist() == ["Guadalajara"]
    assert summary.rows == 1


@pytest.mark.parametrize(
    ("column", "dtype"),
    [
        ("Precio", "float32"),
        ("Precio", "Float64"),
        ("Precio", "double[pyarrow]"),
        ("Fecha", "datetime64[s]"),
        ("Fecha", "datetime64[us]"),
        ("Fecha", "timestamp[ns][pyarrow]"),
    ],
)
def test_equivalent_dtypes_give_the_same_clean_frame(column: str, dtype: str):
    frame = rows(25.5, 0.0, np.nan)
    expected, expected_summary = validate_frame(frame, origin="x", month=JAN)
    clean, summary = validate_frame(frame.astype({column: dtype}), origin="x", month=JAN)
    pd.testing.assert_frame_equal(clean, expected)
    assert summary == expected_summary


def test_integer_prices_and_nullable_missing_values_are_accepted():
    frame = rows(25, 0, 26)
    frame["Precio"] = pd.array([25, 0, None], dtype="Int64")
    clean, summary = validate_frame(frame, origin="x", month=JAN)
    assert clean["Precio"].isna().tolist() == [False, True, True]
    assert summary.non_positive_prices == 1


def test_time_zone_aware_dates_keep_their_local_calendar_day():
    frame = rows(25.0, 26.0)
    frame["Fecha"] = frame["Fecha"].dt.tz_localize("America/Mexico_City")
    clean, _ = validate_frame(frame, origin="x", month=JAN)
    assert clean["Fecha"].tolist() == [pd.Timestamp("2025-01-01"), pd.Timestamp("2025-01-02")]


def test_without_a_month_any_dates_are_accepted():
    frame = pd.concat([rows(25.0, month=Month(2024, 12)), rows(26.0, month=JAN)])
    clean, summary = validate_frame(frame, origin="x")
    assert summary.dates == 2
    assert len(clean) == 2


def test_month_bounds_are_inclusive_of_first_and_last_day():
    frame = rows(25.0, 26.0)
    frame["Fecha"] = pd.to_datetime(["2025-01-01", "2025-01-31"])
    validate_frame(frame, origin="x", month=JAN)
    frame["Fecha"] = pd.to_datetime(["2024-12-31", "2025-01-31"])
    with pytest.raises(LakeDataError, match=r"2025-01.*2024-12-31"):
        validate_frame(frame, origin="x", month=JAN)


def test_an_empty_frame_is_valid_and_empty():
    clean, summary = validate_frame(rows(25.0).iloc[:0], origin="x", month=JAN)
    assert clean.empty
    assert (summary.rows, summary.series, summary.dates) == (0, 0, 0)


def test_normalize_frame_makes_equal_data_equal_bytes():
    frame = rows(25.5, 26.0, 27.0)
    shuffled = frame.iloc[[2, 0, 1]].set_index(pd.Index([9, 8, 7]))
    shuffled = shuffled.loc[:, ["Precio", *reversed(KEY_COLUMNS)]]  # other column order
    a, b = normalize_frame(frame), normalize_frame(shuffled)
    pd.testing.assert_frame_equal(a, b)
    assert serialize_partition(a) == serialize_partition(b)
    assert frame_fingerprint(a) == frame_fingerprint(b)
    assert frame_fingerprint(a) != frame_fingerprint(normalize_frame(rows(25.5, 26.0, 27.5)))


# --------------------------------------------------------------------------- refused


@pytest.mark.parametrize(
    ("change", "fragments"),
    [
        (lambda f: f.drop(columns=["Tipo", "Precio"]), ["missing column", "Tipo", "Precio"]),
        (lambda f: f.assign(extra=1), ["unexpected column", "extra"]),
        (lambda f: f.assign(Fecha=f["Fecha"].dt.strftime("%Y-%m-%d")), ["'Fecha'", "dates"]),
        (lambda f: f.assign(Precio=f["Precio"].astype(str)), ["'Precio'", "numeric"]),
        (lambda f: f.assign(Precio=[True, False]), ["'Precio'", "numeric", "bool"]),
        (lambda f: f.assign(Tipo=["Entera", "Polvo"]), ["'Tipo'", "Entera", "Polvo"]),
        (lambda f: f.assign(Canal=["Tiendas", "Mercado"]), ["'Canal'", "Mercado"]),
        (lambda f: f.assign(Estado=[None, "Jalisco"]), ["'Estado'", "not_nullable"]),
        (lambda f: f.assign(Ciudad=["", "Guadalajara"]), ["'Ciudad'", "str_length"]),
        (
            lambda f: f.assign(Fecha=pd.to_datetime(["2025-01-02", None])),
            ["'Fecha'", "not_nullable"],
        ),
    ],
    ids=[
        "missing",
        "extra",
        "string-fecha",
        "string-precio",
        "bool-precio",
        "tipo",
        "canal",
        "null-estado",
        "empty-ciudad",
        "null-fecha",
    ],
)
def test_bad_rows_raise_a_message_naming_origin_and_column(change, fragments: list[str]):
    with pytest.raises(LakeDataError) as raised:
        validate_frame(change(rows(25.0, 26.0)), origin="s3://b/monthly/x.parquet", month=JAN)
    message = str(raised.value)
    assert message.startswith("s3://b/monthly/x.parquet: ")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"


def test_duplicate_keys_are_named():
    frame = pd.concat([rows(25.0, 26.0, 27.0), rows(25.0, 26.5)], ignore_index=True)
    with pytest.raises(LakeDataError) as raised:
        validate_frame(frame, origin="upload.xlsx", month=JAN)
    message = str(raised.value)
    assert "upload.xlsx" in message
    assert "duplicate rows for the key (Fecha, Estado, Ciudad, Tipo, Canal)" in message
    assert "2 repeated" in message
    assert "2025-01-01 Jalisco/Guadalajara/Ultrapasteurizada/Autoservicios" in message
    assert "2025-01-02 Jalisco/Guadalajara/Ultrapasteurizada/Autoservicios" in message
    assert "2025-01-03" not in message  # only the repeated keys are listed


def test_rows_outside_the_month_name_the_month_and_the_dates():
    frame = rows(25.0, 26.0)
    frame["Fecha"] = pd.to_datetime(["2025-01-30", "2025-02-03"])
    with pytest.raises(LakeDataError) as raised:
        validate_frame(frame, origin="jan.parquet", month=JAN)
    message = str(raised.value)
    assert "jan.parquet" in message
    assert "outside the partition month 2025-01" in message
    assert "2025-02-03" in message
    assert "2025-01-30" not in message


def test_several_problems_are_reported_together():
    frame = rows(25.0, 26.0)
    frame["Tipo"] = ["Entera", "Pasteurizada"]
    frame["Canal"] = ["Tiendas", "Tianguis"]
    with pytest.raises(LakeDataError) as raised:
        validate_frame(frame, origin="x", month=JAN)
    message = str(raised.value)
    assert "'Tipo'" in message
    assert "'Canal'" in message


def test_validation_never_modifies_the_callers_frame():
    frame = rows(25.0, 0.0)
    frame = pd.concat([frame, rows(1.0, ciudad="Promedio aritmético")], ignore_index=True)
    copy = frame.copy(deep=True)
    validate_frame(frame, origin="x", month=JAN)
    pd.testing.assert_frame_equal(frame, copy)


# --------------------------------------------------------------------------- real data


def _real_partitions(real_data_dir: Path) -> list[Month]:
    return [
        Month(int(path.parent.parent.name), int(path.parent.name))
        for path in sorted((real_data_dir / "monthly").glob("*/*/*-data.parquet"))
    ]


@pytest.mark.realdata
def test_every_real_partition_reads_and_validates(real_data_dir: Path):
    lake = Lake(str(real_data_dir))
    months = lake.list_months()
    assert months == _real_partitions(real_data_dir)
    assert months == month_range(Month(2024, 1), Month(2025, 4))  # as the README says

    for month in months:
        clean, summary = lake.read_month(month)
        # an independent look at the raw file, without the lake or the schema
        raw = pq.read_table(real_data_dir / "monthly" / lake.path(month).split("/monthly/")[1])
        raw = raw.to_pandas()
        is_average = raw["Ciudad"].str.startswith("Promedio")
        dates = raw["Fecha"].nunique()
        city_rows = raw.loc[~is_average]

        assert summary.series == 216, month
        assert clean.groupby(SERIES_KEYS).ngroups == 216, month
        assert summary.dates == dates, month
        assert 11 <= dates <= 14, month
        assert len(clean) == 216 * dates, month  # one row per series and publication date
        # two national-average "cities" (x 2 Tipo x 2 Canal) on every date, all dropped
        assert raw.loc[is_average, "Ciudad"].nunique() == 2, month
        assert summary.dropped_average_rows == is_average.sum() == 2 * 4 * dates, month
        assert not clean["Ciudad"].str.contains("Promedio").any(), month
        zeros = int((city_rows["Precio"] == 0).sum())
        assert zeros > 0, month  # the Sonora city that reports 0.0
        assert summary.non_positive_prices == zeros, month
        assert summary.missing_prices == zeros + int(city_rows["Precio"].isna().sum()), month
        assert (clean["Precio"].dropna() > 0).all(), month
        assert clean["Fecha"].dt.day_of_week.isin([0, 2, 4]).all(), month


@pytest.mark.realdata
def test_real_window_reads_all_months_with_one_series_set(real_data_dir: Path):
    lake = Lake(str(real_data_dir))
    window = lake.read_window(month_range(Month(2023, 11), Month(2025, 5)))
    assert window.missing == [Month(2023, 11), Month(2023, 12), Month(2025, 5)]
    assert len(window.present) == 16
    assert window.frame.groupby(SERIES_KEYS).ngroups == 216
    assert not window.frame.duplicated(KEY_COLUMNS).any()
    missing_share = window.frame["Precio"].isna().mean()
    assert 0.08 < missing_share < 0.16  # "about 12% missing" (plus the repaired zeros)

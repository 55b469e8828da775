"""The demo-data generator: deterministic, valid, and shaped like the real publication."""

from __future__ import annotations

import itertools
import time
from datetime import date

import numpy as np
import pandas as pd
import pytest

from milkprice.data.demo import (
    CITIES,
    default_demo_range,
    generate_demo_frame,
    publication_dates,
    write_demo_lake,
)
from milkprice.data.schema import SERIES_KEYS, validate_frame
from milkprice.months import Month, month_range

START, END = Month(2024, 1), Month(2025, 6)


@pytest.fixture(scope="module")
def raw() -> pd.DataFrame:
    return generate_demo_frame(START, END, seed=7)


@pytest.fixture(scope="module")
def clean(raw: pd.DataFrame) -> pd.DataFrame:
    frame, _ = validate_frame(raw, origin="demo")
    return frame


def _stickiness(frame: pd.DataFrame) -> float:
    """Share of consecutive reported prices of a series that are equal (plain loop)."""
    same = total = 0
    for _, group in frame.sort_values([*SERIES_KEYS, "Fecha"]).groupby(SERIES_KEYS):
        prices = group["Precio"].to_list()
        for before, after in itertools.pairwise(prices):
            if not (np.isnan(before) or np.isnan(after)):
                total += 1
                same += before == after
    return same / total


def test_same_seed_same_frame_other_seed_other_frame(raw):
    pd.testing.assert_frame_equal(raw, generate_demo_frame(START, END, seed=7))
    other = generate_demo_frame(START, END, seed=8)
    assert other[[*SERIES_KEYS, "Fecha"]].equals(raw[[*SERIES_KEYS, "Fecha"]])
    assert not other["Precio"].equals(raw["Precio"])


def test_demo_passes_validation_with_the_real_structure(raw):
    frame, summary = validate_frame(raw, origin="demo")
    assert summary.series == 216
    assert summary.dropped_average_rows == 0
    assert summary.rows == len(raw) == 216 * summary.dates
    assert frame["Ciudad"].nunique() == 54
    assert frame["Estado"].nunique() == 32
    assert frame.groupby(["Tipo", "Canal"]).ngroups == 4
    assert set(frame["Fecha"].dt.day_of_week) == {0, 2, 4}
    per_month = frame.groupby(frame["Fecha"].dt.to_period("M"))["Fecha"].nunique()
    assert len(per_month) == len(month_range(START, END))
    assert per_month.between(10, 14).all()


def test_missing_share_and_zeros_like_the_real_data(raw, clean):
    share = clean["Precio"].isna().mean()
    assert 0.08 <= share <= 0.16
    zero_cities = raw.loc[raw["Precio"].eq(0), ["Estado", "Ciudad"]].drop_duplicates()
    assert zero_cities.to_records(index=False).tolist() == [("Sonora", "San Luis Río Colorado")]
    assert raw["Precio"].eq(0).sum() > 20


def test_prices_are_sticky(clean):
    assert 0.70 <= _stickiness(clean) <= 0.90


def test_prices_drift_upwards_by_a_few_percent_a_year(clean):
    monthly = clean.groupby(clean["Fecha"].dt.to_period("M"))["Precio"].mean()
    first, last = monthly.iloc[:3].mean(), monthly.iloc[-3:].mean()
    assert 1.02 < last / first < 1.15  # 15 months apart


def test_levels_differ_by_tipo_and_canal_and_stay_realistic(clean):
    by_series = clean.groupby(SERIES_KEYS)["Precio"].mean().dropna()
    assert by_series.between(20, 36).all()
    assert by_series.quantile(0.1) > 22 and by_series.quantile(0.9) < 32
    by_tipo = clean.groupby("Tipo")["Precio"].mean()
    by_canal = clean.groupby("Canal")["Precio"].mean()
    assert by_tipo["Ultrapasteurizada"] > by_tipo["Pasteurizada"] + 1
    assert by_canal["Autoservicios"] > by_canal["Tiendas"]
    assert clean.groupby("Ciudad")["Precio"].mean().std() > 0.5


def test_eighteen_months_generate_in_well_under_a_second():
    start, end = default_demo_range(date(2026, 1, 15))
    began = time.perf_counter()
    frame = generate_demo_frame(start, end, seed=1)
    assert time.perf_counter() - began < 1.0
    assert frame["Fecha"].min() >= start.start and frame["Fecha"].max() <= end.end


def test_default_range_is_the_18_months_before_this_one():
    assert default_demo_range(date(2026, 11, 24)) == (Month(2025, 5), Month(2026, 10))
    assert default_demo_range(date(2025, 1, 1)) == (Month(2023, 7), Month(2024, 12))


def test_publication_dates_skip_holidays():
    dates = set(publication_dates(Month(2024, 1), Month(2025, 4)))
    for holiday in ["2024-02-05", "2024-03-29", "2024-05-01", "2024-09-16", "2024-12-25"]:
        assert pd.Timestamp(holiday) not in dates
    assert pd.Timestamp("2024-01-03") in dates
    assert 190 <= len(dates) <= 200  # the real publication has 196 dates in this range


def test_empty_range_is_refused():
    with pytest.raises(ValueError, match="before start"):
        generate_demo_frame(Month(2024, 5), Month(2024, 4))


def test_city_names_are_clean():
    assert len(set(CITIES)) == 54
    assert len({estado for estado, _ in CITIES}) == 32
    for estado, ciudad in CITIES:
        assert estado == estado.strip() and ciudad == ciudad.strip()
        assert "promedio" not in ciudad.lower()


@pytest.mark.realdata
def test_city_names_match_the_real_publication(real_data_dir):
    paths = sorted((real_data_dir / "monthly").glob("*/*/*-data.parquet"))
    real = pd.read_parquet(paths[-1], columns=["Estado", "Ciudad"]).drop_duplicates()
    real = real[~real["Ciudad"].str.lower().str.contains("promedio")]
    names = {(e.strip(), c.strip()) for e, c in real.itertuples(index=False)}
    assert names == set(CITIES)


def test_write_demo_lake_local_is_idempotent(local_lake):
    seen = []
    writes = write_demo_lake(
        local_lake, Month(2024, 11), Month(2025, 1), seed=3, on_write=seen.append
    )
    assert [w.month for w in writes] == [Month(2024, 11), Month(2024, 12), Month(2025, 1)]
    assert seen == writes
    assert all(w.changed for w in writes)
    assert local_lake.list_months() == [w.month for w in writes]
    frame, summary = local_lake.read_month(Month(2024, 12))
    assert summary.series == 216 and frame["Fecha"].dt.month.eq(12).all()
    again = write_demo_lake(local_lake, Month(2024, 11), Month(2025, 1), seed=3)
    assert not any(w.changed for w in again)


def test_write_demo_lake_to_s3_gives_the_same_bytes_as_local(s3_lake, local_lake):
    months = [Month(2025, 2), Month(2025, 3)]
    for lake in (s3_lake, local_lake):
        write_demo_lake(lake, months[0], months[-1], seed=5)
    assert s3_lake.list_months() == months
    for month in months:
        assert s3_lake.read_bytes(month) == local_lake.read_bytes(month)

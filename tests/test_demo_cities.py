"""The demo generator's ``cities`` parameter (scale benchmarks): more series, same structure."""

from __future__ import annotations

import pandas as pd
import pytest

from milkprice.data.demo import CITIES, demo_cities, generate_demo_frame
from milkprice.data.schema import validate_frame
from milkprice.months import Month

START, END = Month(2025, 1), Month(2025, 2)


def test_default_is_the_real_54_cities() -> None:
    pd.testing.assert_frame_equal(
        generate_demo_frame(START, END, 5), generate_demo_frame(START, END, 5, cities=len(CITIES))
    )
    assert demo_cities() == CITIES


def test_more_cities_add_synthetic_ones_in_the_real_states() -> None:
    frame = generate_demo_frame(START, END, 5, cities=120)
    keys = frame[["Estado", "Ciudad", "Tipo", "Canal"]].drop_duplicates()
    assert len(keys) == 480  # 4 series a city
    cities = set(map(tuple, keys[["Estado", "Ciudad"]].to_numpy()))
    assert set(CITIES) <= cities
    synthetic = cities - set(CITIES)
    assert len(synthetic) == 66 and all(c.startswith("Sintética ") for _, c in synthetic)
    assert {e for e, _ in synthetic} <= {e for e, _ in CITIES}
    clean, _ = validate_frame(frame, origin="demo")  # the lake accepts it
    share_missing = clean["Precio"].isna().mean()
    assert 0.08 < share_missing < 0.16  # about the real 12%, as with 54 cities
    assert frame.equals(generate_demo_frame(START, END, 5, cities=120))  # seeded


def test_cities_must_be_positive() -> None:
    with pytest.raises(ValueError, match="cities must be at least 1, got 0"):
        generate_demo_frame(START, END, 5, cities=0)

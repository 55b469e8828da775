"""Features and baselines checked against plain, independent computations on tiny frames."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from milkprice.model.features import (
    FEATURE_COLUMNS,
    QUALITY_COLUMNS,
    SERIES_KEYS,
    build_features,
    build_training_set,
    future_publication_dates,
    last_prices,
    publication_dates,
    target_horizon_end,
)
from milkprice.model.metrics import mae, mean_forecast, naive_forecast, rmse, score_forecasts
from milkprice.months import Month

ORIGIN = pd.Timestamp("2025-02-28")
TARGETS = [pd.Timestamp("2025-03-03"), pd.Timestamp("2025-03-05")]
DATES = [d for d in pd.date_range("2024-11-04", ORIGIN) if d.weekday() in (0, 2, 4)]
NAN = math.nan

A = ("E1", "C1", "Pasteurizada", "Tiendas")
B = ("E1", "C1", "Pasteurizada", "Autoservicios")
C = ("E1", "C2", "Pasteurizada", "Tiendas")
D = ("E2", "C3", "Pasteurizada", "Tiendas")
U = ("E2", "C3", "Ultrapasteurizada", "Tiendas")  # never reported: fallback anchor


def _price_a(i: int, day: pd.Timestamp) -> float:
    if day in (pd.Timestamp("2025-02-26"), pd.Timestamp("2025-02-28"), pd.Timestamp("2025-01-15")):
        return NAN
    return 20.0 if day < pd.Timestamp("2025-02-03") else 21.0


def _price_b(i: int, day: pd.Timestamp) -> float:
    return 21.5 if day == pd.Timestamp("2025-02-12") else 22.0 + 0.5 * (i % 7 == 0)


def _price_c(i: int, day: pd.Timestamp) -> float:
    return NAN if day < pd.Timestamp("2025-01-20") else 24.0 + (day >= pd.Timestamp("2025-02-20"))


def _price_d(i: int, day: pd.Timestamp) -> float:
    return 26.0 + 0.25 * (i // 5)


PRICES = {A: _price_a, B: _price_b, C: _price_c, D: _price_d, U: lambda i, day: NAN}


def tiny_history() -> pd.DataFrame:
    rows = [
        dict(zip(["Fecha", *SERIES_KEYS, "Precio"], [day, *key, price(i, day)], strict=True))
        for key, price in PRICES.items()
        for i, day in enumerate(DATES)
    ]
    return pd.DataFrame(rows)


# ---- plain reference computations (loops over dates, no vectorised tricks) -------------------


def observed(key: tuple) -> list[tuple[pd.Timestamp, float]]:
    return [
        (d, PRICES[key](i, d)) for i, d in enumerate(DATES) if not math.isnan(PRICES[key](i, d))
    ]


def last_obs(key: tuple) -> float:
    seen = observed(key)
    return seen[-1][1] if seen else NAN


def filled_at(key: tuple, when: pd.Timestamp) -> float:
    value = NAN
    for day, price in observed(key):
        if day <= when:
            value = price
    return value


def filled_series(key: tuple) -> list[float]:
    return [filled_at(key, d) for d in DATES]


def plain_features(key: tuple) -> dict[str, float]:
    seen = observed(key)
    last = last_obs(key)
    out: dict[str, float] = {"has_last": float(bool(seen))}
    out["days_since_obs"] = (ORIGIN - seen[-1][0]).days if seen else NAN
    change_day = seen[0][0] if seen else None
    for (_, before), (day, now) in itertools.pairwise(seen):
        if now != before:
            change_day = day
    out["days_since_change"] = (ORIGIN - change_day).days if change_day is not None else NAN
    for lag in (7, 14, 28, 56, 91):
        out[f"delta_{lag}d"] = last - filled_at(key, ORIGIN - pd.Timedelta(days=lag))
    recent = [p for d, p in seen if d > ORIGIN - pd.Timedelta(days=91)]
    out["rel_mean_91d"] = last - sum(recent) / len(recent) if recent else NAN
    out["rel_max_91d"] = last - max(recent) if recent else NAN
    out["rel_min_91d"] = last - min(recent) if recent else NAN
    filled = filled_series(key)
    steps = [
        filled[i] - filled[i - 1]
        for i in range(1, len(DATES))
        if DATES[i] > ORIGIN - pd.Timedelta(days=91)
        and not (math.isnan(filled[i]) or math.isnan(filled[i - 1]))
    ]
    out["vol_91d"] = float(np.std(steps)) if steps else NAN
    out["changes_91d"] = float(sum(1 for s in steps if s != 0))
    moves = [abs(s) for s in steps if s != 0]
    out["step_size_91d"] = sum(moves) / len(moves) if moves else NAN
    out.update(plain_previous_level(filled))
    last_month = [d for d in DATES if d > ORIGIN - pd.Timedelta(days=28)]
    gaps = [math.isnan(PRICES[key](DATES.index(d), d)) for d in last_month]
    out["missing_frac_28d"] = sum(gaps) / len(gaps)
    out["last_missing"] = float(gaps[-1])
    out["is_ultra"] = float(key[2] == "Ultrapasteurizada")
    out["is_autoservicio"] = float(key[3] == "Autoservicios")
    return out


def plain_previous_level(filled: list[float]) -> dict[str, float]:
    """The level before the last change, and the window's share of changes back to the level
    held before the change before them, by walking the filled prices."""
    changes = [
        i
        for i in range(1, len(filled))
        if not (math.isnan(filled[i]) or math.isnan(filled[i - 1])) and filled[i] != filled[i - 1]
    ]
    out = {"prev_level_delta": filled[changes[-1] - 1] - filled[-1] if changes else NAN}
    window = [i for i in changes if DATES[i] > ORIGIN - pd.Timedelta(days=91)]
    back = 0
    for i in window:
        earlier = [j for j in changes if j < i]
        if earlier and abs(filled[i] - filled[earlier[-1] - 1]) < 0.005:
            back += 1
    out["revert_share_91d"] = back / len(window) if window else NAN
    return out


def peers(key: tuple, same: list[int]) -> list[tuple]:
    return [k for k in PRICES if k != key and all(k[i] == key[i] for i in same)]


def plain_cross_section(key: tuple) -> dict[str, float]:
    last = last_obs(key)
    state = [last_obs(k) for k in [key, *peers(key, [0, 2, 3])] if not math.isnan(last_obs(k))]
    nation = [last_obs(k) for k in [key, *peers(key, [2, 3])] if not math.isnan(last_obs(k))]
    other = [last_obs(k) for k in peers(key, [0, 1, 2]) if not math.isnan(last_obs(k))]
    city = [plain_features(k)["delta_14d"] for k in peers(key, [0, 1])]
    city = [v for v in city if not math.isnan(v)]
    return {
        "rel_state": last - sum(state) / len(state) if state else NAN,
        "rel_national": last - sum(nation) / len(nation) if nation else NAN,
        "rel_national_pct": last / float(np.median(nation)) - 1 if nation else NAN,
        "rel_other_canal": last - sum(other) / len(other) if other else NAN,
        "city_delta_14d": sum(city) / len(city) if city else NAN,
    }


# ---- tests -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_frame() -> pd.DataFrame:
    from milkprice.data.demo import generate_demo_frame

    frame = generate_demo_frame(Month(2024, 1), Month(2024, 6), seed=7)
    frame = frame.loc[~frame["Ciudad"].str.contains("Promedio")].copy()
    frame.loc[frame["Precio"] <= 0, "Precio"] = np.nan
    return frame


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    return build_features(tiny_history(), ORIGIN, TARGETS)


def test_one_row_per_series_and_target_date(features: pd.DataFrame) -> None:
    assert len(features) == len(PRICES) * len(TARGETS)
    assert list(features.columns) == [*SERIES_KEYS, "Fecha", *FEATURE_COLUMNS, *QUALITY_COLUMNS]
    assert set(features["Fecha"]) == set(TARGETS)
    assert not features.duplicated([*SERIES_KEYS, "Fecha"]).any()


@pytest.mark.parametrize("key", [A, B, C, D, U], ids=["A", "B", "C", "D", "U"])
def test_features_match_plain_computation(features: pd.DataFrame, key: tuple) -> None:
    expected = {**plain_features(key), **plain_cross_section(key)}
    mask = np.logical_and.reduce([features[c] == v for c, v in zip(SERIES_KEYS, key, strict=True)])
    rows = features.loc[mask]
    assert len(rows) == len(TARGETS)
    for name, value in expected.items():
        got = rows[name].to_numpy(dtype=float)
        if math.isnan(value):
            assert np.isnan(got).all(), name
        else:
            np.testing.assert_allclose(got, value, rtol=1e-9, atol=1e-9, err_msg=name)
    horizons = sorted(rows["horizon_days"])
    assert horizons == [(t - ORIGIN).days for t in TARGETS]


def test_anchor_is_last_observation_with_documented_fallback(features: pd.DataFrame) -> None:
    anchors = features.groupby(SERIES_KEYS)["anchor"].first()
    for key in (A, B, C, D):
        assert anchors.loc[key] == last_obs(key)
    # U (Ultrapasteurizada/Tiendas in E2) has no peer of its Tipo/Canal anywhere: overall mean.
    overall = np.mean([last_obs(k) for k in (A, B, C, D)])
    assert anchors.loc[U] == pytest.approx(overall)
    assert features.loc[features["Ciudad"] == "C3", "has_last"].tolist().count(0.0) == 2


def test_state_fallback_before_national() -> None:
    history = tiny_history()
    new = history.loc[history["Ciudad"] == "C2"].assign(Ciudad="C9", Precio=np.nan)
    anchors = last_prices(pd.concat([history, new]), ORIGIN).set_index(SERIES_KEYS)["anchor"]
    state_mean = np.mean([last_obs(A), last_obs(C)])  # E1, Pasteurizada, Tiendas
    assert anchors.loc[("E1", "C9", "Pasteurizada", "Tiendas")] == pytest.approx(state_mean)


def test_no_leakage_rows_after_origin_change_nothing() -> None:
    history = tiny_history()
    later = pd.DataFrame(
        {
            "Fecha": np.repeat(TARGETS, len(PRICES)),
            "Estado": [k[0] for k in PRICES] * len(TARGETS),
            "Ciudad": [k[1] for k in PRICES] * len(TARGETS),
            "Tipo": [k[2] for k in PRICES] * len(TARGETS),
            "Canal": [k[3] for k in PRICES] * len(TARGETS),
            "Precio": 99.0,
        }
    )
    origin = pd.Timestamp("2025-02-14")
    targets = [pd.Timestamp("2025-02-17"), pd.Timestamp("2025-02-19")]
    with_future = build_features(pd.concat([history, later]), origin, targets)
    cut = build_features(history.loc[history["Fecha"] <= origin], origin, targets)
    pd.testing.assert_frame_equal(with_future, cut)


def test_no_leakage_on_a_full_synthetic_frame(demo_frame: pd.DataFrame) -> None:
    origin = Month(2024, 5).end
    targets = future_publication_dates(Month(2024, 6))
    full = build_features(demo_frame, origin, targets)
    cut = build_features(demo_frame.loc[demo_frame["Fecha"] <= origin], origin, targets)
    pd.testing.assert_frame_equal(full, cut)
    assert full["anchor"].notna().all()


def test_publication_dates() -> None:
    history = tiny_history()
    assert publication_dates(history, Month(2025, 2)) == [d for d in DATES if d.month == 2]
    future = future_publication_dates(Month(2025, 3))
    assert all(d.weekday() in (0, 2, 4) and d.month == 3 for d in future)
    assert len(future) == 13  # March 2025: 5 Mondays, 4 Wednesdays, 4 Fridays


def test_training_set_targets_are_the_actual_prices(demo_frame: pd.DataFrame) -> None:
    origins = [Month(2024, 3).end, pd.Timestamp("2024-04-15")]
    rows = build_training_set(demo_frame, origins)
    actual = demo_frame.set_index([*SERIES_KEYS, "Fecha"])["Precio"]
    joined = actual.reindex(pd.MultiIndex.from_frame(rows[[*SERIES_KEYS, "Fecha"]]))
    np.testing.assert_array_equal(rows["target"].to_numpy(), joined.to_numpy())
    assert rows["target"].notna().all()
    for origin, group in rows.groupby("origin"):
        assert (group["Fecha"] > origin).all()
        assert (group["Fecha"] <= target_horizon_end(origin)).all()
    april = rows.loc[rows["origin"] == Month(2024, 3).end, "Fecha"]
    assert set(april.dt.month) == {4}
    thinned = build_training_set(demo_frame, origins, date_stride=2)
    assert 0 < len(thinned) < len(rows)


def test_naive_and_mean_forecasts_match_plain_values() -> None:
    history = tiny_history()
    naive = naive_forecast(history, ORIGIN, TARGETS).set_index([*SERIES_KEYS, "Fecha"])
    mean = mean_forecast(history, ORIGIN, TARGETS).set_index([*SERIES_KEYS, "Fecha"])
    for key in (A, B, C, D):
        seen = [p for _, p in observed(key)]
        for target in TARGETS:
            assert naive.loc[(*key, target), "prediction"] == last_obs(key)
            assert mean.loc[(*key, target), "prediction"] == pytest.approx(np.mean(seen))
    # The never-reported series falls back to the naive anchor in both baselines.
    assert mean.loc[(*U, TARGETS[0]), "prediction"] == naive.loc[(*U, TARGETS[0]), "prediction"]


def test_rmse_and_mae() -> None:
    actual, predicted = np.array([1.0, 2.0, 4.0]), np.array([1.0, 3.0, 1.0])
    assert rmse(actual, predicted) == pytest.approx(math.sqrt((0 + 1 + 9) / 3))
    assert mae(actual, predicted) == pytest.approx((0 + 1 + 3) / 3)


def test_score_forecasts_uses_the_same_rows_for_every_forecast() -> None:
    keys = {"Estado": "E", "Ciudad": "C", "Tipo": "Pasteurizada", "Canal": "Tiendas"}
    dates = pd.to_datetime(["2025-03-03", "2025-03-05", "2025-03-07"])
    actual = pd.DataFrame({**keys, "Fecha": dates, "Precio": [10.0, np.nan, 12.0]})
    model = pd.DataFrame({**keys, "Fecha": dates, "prediction": [11.0, 0.0, 12.0]})
    naive = pd.DataFrame({**keys, "Fecha": dates[[0, 2]], "prediction": [10.0, 10.0]})
    scores = score_forecasts(actual, {"model": model, "naive": naive})
    assert scores["n_scored"] == 2
    assert scores["n_unscored"] == 0
    assert scores["val_mae"] == pytest.approx(0.5)
    assert scores["naive_val_rmse"] == pytest.approx(math.sqrt(2))
    short = naive.iloc[:1]
    partial = score_forecasts(actual, {"model": model, "naive": short})
    assert partial["n_scored"] == 1
    assert partial["n_unscored"] == 1
    assert partial["val_mae"] == pytest.approx(1.0)

"""Prediction intervals: the conformal table, its storage, and its use in the training run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from milkprice.model.calibration import RESIDUAL_COLUMNS, evaluation_residuals, fold_residuals
from milkprice.model.forecast import MilkForecaster
from milkprice.model.intervals import (
    HORIZON_EDGES,
    INTERVAL_COLUMNS,
    QUANTILE_METHOD,
    IntervalTable,
    interval_score,
)
from milkprice.model.training import build_window_rows, split_window, train_and_evaluate
from milkprice.months import Month

VALIDATION = Month(2024, 9)


def _heteroscedastic(
    n: int, seed: int, moving_share: float = 0.2, drift: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    """Residuals whose spread grows with the horizon, shifted by ``drift``, the rest zero."""
    rng = np.random.default_rng(seed)
    horizon = rng.integers(1, HORIZON_EDGES[-1] + 1, n).astype(float)
    moved = rng.random(n) < moving_share
    residual = np.where(moved, rng.normal(drift, 0.05 * horizon), 0.0)
    return residual, horizon


def _coverage_by_bucket(moving_share: float, drift: float) -> dict[int, list[float]]:
    table = IntervalTable.fit(*_heteroscedastic(60_000, 1, moving_share, drift))
    fresh, fresh_h = _heteroscedastic(60_000, 2, moving_share, drift)
    bounds = table.apply(np.zeros_like(fresh), fresh_h)
    bucket = table.bucket_of(fresh_h)
    out = {}
    for level in (80, 95):
        inside = (fresh >= bounds[f"lower_{level}"]) & (fresh <= bounds[f"upper_{level}"])
        out[level] = [inside[bucket == i].mean() for i in range(len(HORIZON_EDGES))]
    # Errors grow with the horizon: so do the intervals.
    assert np.all(np.diff(table.offsets["upper_95"]) > 0)
    return out


def test_intervals_cover_fresh_draws_at_their_level_in_every_bucket() -> None:
    # Centred continuous errors: nothing is clipped, so coverage is the nominal level.
    for level, coverages in _coverage_by_bucket(moving_share=1.0, drift=0.0).items():
        for coverage in coverages:
            assert level / 100 - 0.015 <= coverage <= level / 100 + 0.015, (level, coverages)


def test_sticky_prices_make_intervals_conservative_never_short() -> None:
    # With 80% of residuals exactly 0 the quantiles sit on that atom (and bounds are clipped
    # to keep the price inside): coverage can only be higher than nominal, never lower.
    for level, coverages in _coverage_by_bucket(moving_share=0.2, drift=0.3).items():
        assert min(coverages) >= level / 100 - 0.015, (level, coverages)


def test_bounds_are_nested_and_ordered_around_the_price() -> None:
    residual, horizon = _heteroscedastic(5_000, seed=3)
    table = IntervalTable.fit(residual, horizon)
    price = np.linspace(15, 30, 500)
    bounds = table.apply(price, np.arange(500) % HORIZON_EDGES[-1] + 1)
    assert np.all(bounds["lower_95"] <= bounds["lower_80"])
    assert np.all(bounds["lower_80"] <= price)
    assert np.all(price <= bounds["upper_80"])
    assert np.all(bounds["upper_80"] <= bounds["upper_95"])


def test_only_positive_residuals_still_keep_the_price_inside() -> None:
    table = IntervalTable.fit(np.full(400, 0.5), np.full(400, 3.0))
    bounds = table.apply(np.array([20.0]), np.array([3.0]))
    assert bounds["lower_95"][0] == bounds["lower_80"][0] == 20.0
    assert bounds["upper_80"][0] == pytest.approx(20.5)


def test_a_sparse_bucket_borrows_from_the_shorter_ones() -> None:
    residual = np.concatenate([np.linspace(-1, 1, 200), [5.0]])
    horizon = np.concatenate([np.full(200, 3.0), [60.0]])
    table = IntervalTable.fit(residual, horizon)
    assert table.counts[0] == 200
    assert table.counts[-1] == 201  # the last bucket pooled every shorter one plus its own
    assert table.offsets["upper_95"][-1] >= table.offsets["upper_95"][0]


def test_horizons_outside_the_table_are_refused() -> None:
    table = IntervalTable.fit(np.zeros(100), np.full(100, 5.0))
    with pytest.raises(ValueError, match=f"1..{HORIZON_EDGES[-1]} days"):
        table.apply(np.array([20.0]), np.array([HORIZON_EDGES[-1] + 1.0]))
    with pytest.raises(ValueError, match="horizons"):
        table.apply(np.array([20.0]), np.array([0.0]))
    with pytest.raises(ValueError, match="no out-of-sample residual"):
        IntervalTable.fit(np.array([np.nan]), np.array([3.0]))


def test_table_round_trips_through_json() -> None:
    residual, horizon = _heteroscedastic(3_000, seed=4)
    table = IntervalTable.fit(residual, horizon)
    again = IntervalTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert again.edges == table.edges
    assert again.counts == table.counts
    for name in INTERVAL_COLUMNS:
        assert np.allclose(again.offsets[name], table.offsets[name], atol=1e-6)
    broken = table.to_dict()
    broken["offsets"]["upper_80"] = broken["offsets"]["upper_80"][:-1]
    with pytest.raises(ValueError, match="one offset per horizon bucket"):
        IntervalTable.from_dict(broken)


def test_interval_score_matches_its_definition() -> None:
    actual = np.array([10.0, 12.0, 8.0])
    lower, upper = np.array([9.0, 9.0, 9.0]), np.array([11.0, 11.0, 11.0])
    # widths 2 each; misses: 12 is 1 above, 8 is 1 below; alpha = 0.2 -> penalty 2/0.2 = 10.
    expected = np.mean([2.0, 2.0 + 10.0, 2.0 + 10.0])
    assert interval_score(actual, lower, upper, 80) == pytest.approx(expected)


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    from milkprice.data.demo import generate_demo_frame

    data = generate_demo_frame(VALIDATION.shift(-12), VALIDATION, seed=5)
    data = data.loc[~data["Ciudad"].str.contains("Promedio")].copy()
    data.loc[data["Precio"] <= 0, "Precio"] = np.nan
    return data.reset_index(drop=True)


def test_fold_residuals_are_out_of_sample(frame: pd.DataFrame) -> None:
    split = split_window(frame, VALIDATION)
    rows = build_window_rows(frame, split)
    params = {"num_boost_round": 20}
    residuals = fold_residuals(frame, rows, params, split.validation_origin, seed=0)
    assert list(residuals.columns) == RESIDUAL_COLUMNS
    assert residuals["horizon_days"].between(1, HORIZON_EDGES[-1]).all()
    # Every residual is of a date after its origin and on or before the cut-off.
    dates = residuals["origin"] + pd.to_timedelta(residuals["horizon_days"], unit="D")
    assert (dates <= split.validation_origin).all()
    # Removing every row after the cut-off changes nothing (nothing later is read).
    cut = frame.loc[frame["Fecha"] <= split.validation_origin]
    again = fold_residuals(cut, rows, params, split.validation_origin, seed=0)
    pd.testing.assert_frame_equal(residuals, again)


def test_training_run_stores_intervals_and_scores_their_coverage(
    frame: pd.DataFrame, tmp_path: Path
) -> None:
    outcome = train_and_evaluate(frame, VALIDATION, seed=0, n_trials=1)
    for key in ("coverage_80", "coverage_95", "width_80", "width_95", "interval_score_80"):
        assert np.isfinite(outcome.metrics[key]), key
    assert outcome.metrics["coverage_95"] >= outcome.metrics["coverage_80"]
    assert outcome.metrics["width_95"] > outcome.metrics["width_80"] > 0
    predictions = outcome.evaluation.predictions
    assert (predictions["lower_95"] <= predictions["lower_80"]).all()
    assert (predictions["lower_80"] <= predictions["model"]).all()
    assert (predictions["model"] <= predictions["upper_80"]).all()
    assert (predictions["upper_80"] <= predictions["upper_95"]).all()
    # Conformalized quantiles: each bound is the distribution's quantile plus its offset.
    table = outcome.forecaster.intervals_
    assert table.method == QUANTILE_METHOD
    # The registered (refit) model's table also learnt from V's own out-of-sample residuals.
    own = evaluation_residuals(predictions, outcome.split.validation_origin)
    assert sum(outcome.forecaster.intervals_.counts) > 0
    assert len(own) == outcome.metrics["n_scored"]
    # Stored beside the booster as JSON, read back with the model.
    outcome.forecaster.to_artifacts(tmp_path / "model")
    stored = json.loads((tmp_path / "model" / "intervals.json").read_text())
    assert stored["edges"] == list(HORIZON_EDGES)
    loaded = MilkForecaster.from_artifacts(tmp_path / "model")
    for name in INTERVAL_COLUMNS:
        stored_offsets = loaded.intervals_.offsets[name]
        assert np.allclose(stored_offsets, outcome.forecaster.intervals_.offsets[name], atol=1e-6)
    # The dependence of the aggregate bands, estimated from the same residuals, travels too;
    # the evaluated model's (before V) is a metric of the run.
    dependence = outcome.forecaster.aggregate_dependence_
    assert 0.0 <= dependence <= 1.0
    assert loaded.aggregate_dependence_ == pytest.approx(dependence)
    assert 0.0 <= outcome.metrics["aggregate_dependence"] <= 1.0


def test_conformal_offsets_fix_a_miscalibrated_quantile_forecast() -> None:
    # Quantile forecasts that are too narrow (they claim 80% but cover 50%): the offsets widen
    # them until fresh draws are covered at the nominal level, per side.
    rng = np.random.default_rng(4)
    n = 40_000
    horizon = rng.integers(1, HORIZON_EDGES[-1] + 1, size=n).astype(float)
    scale = 1 + horizon / 20
    actual = rng.normal(size=n) * scale
    bases = {
        "lower_95": -1.0 * scale,
        "lower_80": -0.67 * scale,
        "upper_80": 0.67 * scale,
        "upper_95": 1.0 * scale,
    }
    table = IntervalTable.fit_quantiles(
        {name: actual - base for name, base in bases.items()}, horizon
    )
    assert table.method == QUANTILE_METHOD
    fresh = rng.normal(size=n) * scale
    bounds = table.apply_quantiles(np.zeros(n), bases, horizon)
    for level in (80, 95):
        inside = (fresh >= bounds[f"lower_{level}"]) & (fresh <= bounds[f"upper_{level}"])
        assert abs(inside.mean() - level / 100) < 0.01, (level, inside.mean())
    # bounds() picks the quantile path for such a table, the point path for a point table.
    point = IntervalTable.fit(actual, horizon)
    assert np.allclose(table.bounds(np.zeros(n), bases, horizon)["upper_80"], bounds["upper_80"])
    assert np.allclose(
        point.bounds(np.zeros(n), bases, horizon)["upper_80"],
        point.apply(np.zeros(n), horizon)["upper_80"],
    )

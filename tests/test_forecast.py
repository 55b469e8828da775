"""Model behaviour on a seeded synthetic frame: shapes, determinism, artifacts, window rules,
and the forecast distribution (median, mean, p_change, quantiles)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from milkprice.model.distribution import CHANGE_TOLERANCE, QUANTILE_LEVELS, Distribution
from milkprice.model.features import (
    SERIES_KEYS,
    build_features,
    future_publication_dates,
    publication_dates,
)
from milkprice.model.forecast import CLASSES, DEFAULT_PARAMS, MilkForecaster, outcome_classes
from milkprice.model.metrics import naive_forecast
from milkprice.model.training import (
    build_window_rows,
    evaluate_on_month,
    split_window,
    train_and_evaluate,
)
from milkprice.model.tuning import training_origins, tune_hyperparameters
from milkprice.months import Month, month_range

VALIDATION = Month(2024, 9)
FIRST = VALIDATION.shift(-12)
FAST = {"num_boost_round": 30, "learning_rate": 0.2}


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The project's seeded demo data for the window V-12..V, cleaned as the lake does."""
    from milkprice.data.demo import generate_demo_frame

    data = generate_demo_frame(FIRST, VALIDATION, seed=3)
    data = data.loc[~data["Ciudad"].str.contains("Promedio")].copy()
    data.loc[data["Precio"] <= 0, "Precio"] = np.nan
    return data.reset_index(drop=True)


@pytest.fixture(scope="module")
def training_frame(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame["Fecha"] <= VALIDATION.shift(-1).end]


@pytest.fixture(scope="module")
def origins(training_frame: pd.DataFrame) -> list[pd.Timestamp]:
    months = month_range(FIRST, VALIDATION.shift(-1))
    return training_origins(months, VALIDATION.shift(-1).end)


@pytest.fixture(scope="module")
def fitted(training_frame: pd.DataFrame, origins: list[pd.Timestamp]) -> MilkForecaster:
    return MilkForecaster(params=FAST, seed=11).fit(training_frame, origins, date_stride=3)


def _predict(model: MilkForecaster, frame: pd.DataFrame) -> pd.DataFrame:
    origin = VALIDATION.shift(-1).end
    return model.predict(frame, origin, future_publication_dates(VALIDATION))


def test_fit_sets_fitted_attributes(fitted: MilkForecaster, origins: list) -> None:
    assert fitted.n_training_rows_ > 1000
    assert fitted.origins_ == sorted(origins)
    assert fitted.classifier_.num_trees() == FAST["num_boost_round"] * len(CLASSES)
    assert fitted.size_.num_trees() == FAST["num_boost_round"]
    assert set(fitted.size_shape_) == {"up", "down"}
    assert all(0 <= rate <= 1 for rate in fitted.base_rates_.values())


def test_predict_shape_and_columns(fitted: MilkForecaster, training_frame: pd.DataFrame) -> None:
    predictions = _predict(fitted, training_frame)
    n_series = training_frame[SERIES_KEYS].drop_duplicates().shape[0]
    dates = future_publication_dates(VALIDATION)
    assert list(predictions.columns) == [*SERIES_KEYS, "Fecha", "prediction", "mean", "p_change"]
    assert len(predictions) == n_series * len(dates)
    assert predictions[["prediction", "mean", "p_change"]].notna().all().all()
    assert set(predictions["Fecha"]) == set(dates)
    # A forecast of a sticky price stays near the last price.
    naive = naive_forecast(training_frame, VALIDATION.shift(-1).end, dates)
    merged = predictions.merge(naive, on=[*SERIES_KEYS, "Fecha"], suffixes=("", "_naive"))
    assert (merged["prediction"] - merged["prediction_naive"]).abs().median() < 1.0


def test_same_seed_same_predictions(
    fitted: MilkForecaster, training_frame: pd.DataFrame, origins: list
) -> None:
    again = MilkForecaster(params=FAST, seed=11).fit(training_frame, origins, date_stride=3)
    pd.testing.assert_frame_equal(_predict(fitted, training_frame), _predict(again, training_frame))


def test_outcome_classes_follow_their_definition() -> None:
    rows = pd.DataFrame(
        {
            "anchor": [25.0, 25.0, 25.0, 25.0, 25.0],
            "target": [25.0, 25.004, 26.0, 24.0, 24.5],
            "prev_level_delta": [np.nan, -0.5, -0.5, -0.5, -0.5],
        }
    )
    names = [CLASSES[i] for i in outcome_classes(rows)]
    assert names == ["stay", "stay", "up", "down", "revert"]


def _distribution(fitted: MilkForecaster, training_frame: pd.DataFrame) -> tuple:
    origin = VALIDATION.shift(-1).end
    rows = build_features(training_frame, origin, future_publication_dates(VALIDATION))
    return rows, fitted.distribution(rows)


def test_the_distribution_is_a_proper_one(fitted, training_frame) -> None:
    rows, distribution = _distribution(fitted, training_frame)
    assert np.allclose(distribution.weights.sum(axis=1), 1.0)
    assert (distribution.weights >= 0).all()
    p_change = distribution.p_change()
    assert ((p_change >= 0) & (p_change <= 1)).all()
    quantiles = distribution.quantiles(QUANTILE_LEVELS)
    median = distribution.median()
    assert (quantiles["lower_95"] <= quantiles["lower_80"]).all()
    assert (quantiles["lower_80"] <= median).all()
    assert (median <= quantiles["upper_80"]).all()
    assert (quantiles["upper_80"] <= quantiles["upper_95"]).all()
    # The median is the anchor unless a move is more likely than not.
    stays = p_change < 0.5
    assert np.allclose(median[stays], rows["anchor"].to_numpy()[stays])


def test_median_and_mean_are_ordered_as_the_distribution_says(fitted, training_frame) -> None:
    _, distribution = _distribution(fitted, training_frame)
    median, mean = distribution.median(), distribution.mean()
    points, weights = distribution.points, distribution.weights
    mass_above = (weights * (points > median[:, None] + CHANGE_TOLERANCE)).sum(axis=1)
    mass_below = (weights * (points < median[:, None] - CHANGE_TOLERANCE)).sum(axis=1)
    above = (points - median[:, None]).clip(min=0)
    below = (median[:, None] - points).clip(min=0)
    # Where only moves up remain beside the median, the mean is above it, and vice versa.
    only_up = (mass_above > 0) & (mass_below == 0)
    only_down = (mass_below > 0) & (mass_above == 0)
    assert (mean[only_up] >= median[only_up]).all()
    assert (mean[only_down] <= median[only_down]).all()
    # The mean is the median plus the weighted distances on either side.
    expected = median + (weights * above).sum(axis=1) - (weights * below).sum(axis=1)
    assert np.allclose(mean, expected)


def test_a_hand_made_distribution_reads_off_as_computed_by_hand() -> None:
    points = np.array([[10.0, 11.0, 12.0, 9.0]])
    weights = np.array([[0.55, 0.2, 0.15, 0.1]])
    distribution = Distribution(points, weights, anchor=np.array([10.0]))
    assert distribution.median()[0] == 10.0
    assert np.isclose(distribution.mean()[0], 10.0 * 0.55 + 11 * 0.2 + 12 * 0.15 + 9 * 0.1)
    assert np.isclose(distribution.p_change()[0], 0.45)
    q = distribution.quantiles({"a": 0.05, "b": 0.10, "c": 0.66, "d": 0.9})
    assert [q[k][0] for k in "abcd"] == [9.0, 9.0, 11.0, 12.0]
    mixed = Distribution.mixture(
        distribution, Distribution(points - 1, weights, np.array([9.0])), np.array([0.7])
    )
    assert mixed.anchor[0] == 9.0  # the heavier component's anchor
    assert np.isclose(
        mixed.mean()[0], 0.3 * distribution.mean()[0] + 0.7 * (distribution.mean()[0] - 1)
    )


def test_a_suspect_anchor_moves_the_mean_by_its_p_glitch_and_the_median_past_half(
    fitted, training_frame
) -> None:
    rows, _ = _distribution(fitted, training_frame)
    features = rows[fitted.feature_names_].to_numpy(dtype=float)
    plain = fitted.distribution_of(features)
    previous = rows["anchor"].to_numpy() - 2.0
    for p_glitch in (0.2, 0.7):
        mixed = fitted.distribution_of(features, np.full(len(rows), p_glitch), previous)
        assert np.allclose(mixed.mean(), plain.mean() - 2.0 * p_glitch)
        # Rows confident of no change: the median goes to the level a glitch is more likely
        # than not to come back to, and stays at the anchor otherwise.
        calm = plain.p_change() <= 0.2
        assert calm.sum() > 10
        expected = previous if p_glitch > 0.5 else rows["anchor"].to_numpy()
        assert np.allclose(mixed.median()[calm], expected[calm])


def test_artifacts_round_trip(
    fitted: MilkForecaster, training_frame: pd.DataFrame, tmp_path: Path
) -> None:
    fitted.to_artifacts(tmp_path / "model")
    assert not list((tmp_path / "model").glob("*.pkl"))
    loaded = MilkForecaster.from_artifacts(tmp_path / "model")
    assert loaded.merged_params_ == fitted.merged_params_
    assert loaded.seed == fitted.seed
    pd.testing.assert_frame_equal(
        _predict(fitted, training_frame), _predict(loaded, training_frame)
    )


def test_from_artifacts_names_the_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"forecaster\.json"):
        MilkForecaster.from_artifacts(tmp_path)


def test_predict_before_fit_is_a_clear_error(training_frame: pd.DataFrame) -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        _predict(MilkForecaster(), training_frame)


def test_fewer_than_six_training_months_is_refused(frame: pd.DataFrame) -> None:
    kept = month_range(VALIDATION.shift(-5), VALIDATION)  # 5 training months + validation
    short = frame.loc[frame["Fecha"] >= kept[0].start]
    with pytest.raises(ValueError, match="only 5 of the 12") as error:
        split_window(short, VALIDATION)
    assert str(VALIDATION.shift(-12)) in str(error.value)
    assert str(VALIDATION.shift(-6)) in str(error.value)


def test_missing_validation_month_is_refused(training_frame: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=str(VALIDATION)):
        split_window(training_frame, VALIDATION)


def test_split_origins_never_reach_the_validation_month(frame: pd.DataFrame) -> None:
    split = split_window(frame, VALIDATION)
    assert split.validation_origin == VALIDATION.shift(-1).end
    assert max(split.train_origins) < split.validation_origin
    assert split.validation_origin in split.refit_origins
    rows = build_window_rows(frame, split)
    assert rows["Fecha"].max() <= VALIDATION.end


def test_tuning_is_deterministic_and_never_sees_validation(frame: pd.DataFrame) -> None:
    months = month_range(FIRST, VALIDATION.shift(-1))
    first = tune_hyperparameters(frame, months, n_trials=3, seed=5)
    second = tune_hyperparameters(frame, months, n_trials=3, seed=5)
    assert first.best_params == second.best_params
    assert first.best_score == second.best_score
    assert first.n_trials == 3
    assert len(first.trials) == 3
    assert max(first.fold_origins) < VALIDATION.shift(-1).end
    assert np.isfinite(first.best_score)
    assert set(first.best_params) == set(DEFAULT_PARAMS)


def test_fixed_settings_search_nothing(frame: pd.DataFrame) -> None:
    months = month_range(FIRST, VALIDATION.shift(-1))
    fixed = tune_hyperparameters(frame, months, n_trials=0, seed=5)
    assert fixed.n_trials == 0
    assert len(fixed.trials) == 1
    assert fixed.best_params == DEFAULT_PARAMS
    assert max(fixed.fold_origins) < VALIDATION.shift(-1).end
    with pytest.raises(ValueError, match="n_trials"):
        tune_hyperparameters(frame, months, n_trials=-1, seed=5)


def test_train_and_evaluate_with_missing_months(frame: pd.DataFrame) -> None:
    gaps = [VALIDATION.shift(-10), VALIDATION.shift(-7), VALIDATION.shift(-4)]
    holed = frame.loc[~frame["Fecha"].dt.to_period("M").astype(str).isin([str(m) for m in gaps])]
    outcome = train_and_evaluate(holed, VALIDATION, seed=1, n_trials=2)
    assert outcome.split.missing_months == gaps
    assert len(outcome.split.training_months) == 9
    metrics = outcome.metrics
    for key in (
        "val_rmse",
        "val_mae",
        "naive_val_rmse",
        "naive_val_mae",
        "trusted_val_rmse",
        "trusted_val_mae",
        "mean_val_rmse",
        "brier_change",
        "base_brier_change",
        "coverage_80",
        "coverage_95",
        "interval_score_80",
        "interval_score_95",
        "naive_interval_score_80",
        "naive_interval_score_95",
    ):
        assert np.isfinite(metrics[key]), key
    actual = holed.loc[holed["Fecha"].dt.to_period("M") == str(VALIDATION)]
    assert metrics["n_scored"] == actual["Precio"].notna().sum()
    assert metrics["n_unscored"] == 0
    table = outcome.evaluation.predictions
    assert {"actual", "model", "model_mean", "p_change", "naive", "trusted", "mean"} <= set(
        table.columns
    )
    scored = table.dropna(subset=["actual"])
    assert np.isclose(metrics["val_mae"], (scored["actual"] - scored["model"]).abs().mean())
    assert np.isclose(
        metrics["val_rmse"], np.sqrt(((scored["actual"] - scored["model_mean"]) ** 2).mean())
    )
    assert table.loc[table["actual"].notna(), ["model", "naive", "mean"]].notna().all().all()
    assert set(outcome.timings) >= {"tune", "fit", "evaluate", "refit", "total"}
    assert outcome.forecaster.origins_[-1] >= VALIDATION.shift(-1).end


def test_evaluation_covers_series_without_history(frame: pd.DataFrame, fitted) -> None:
    newcomer = frame.loc[frame["Fecha"].dt.to_period("M") == str(VALIDATION)].copy()
    newcomer = newcomer.loc[newcomer["Ciudad"] == newcomer["Ciudad"].iloc[0]]
    newcomer["Ciudad"] = "Nueva Ciudad"
    newcomer["Precio"] = newcomer["Precio"].fillna(30.0)
    evaluation = evaluate_on_month(fitted, pd.concat([frame, newcomer]), VALIDATION)
    new_rows = evaluation.predictions.loc[evaluation.predictions["Ciudad"] == "Nueva Ciudad"]
    assert len(new_rows) == len(newcomer)
    assert new_rows[["model", "naive", "mean"]].notna().all().all()
    assert evaluation.metrics["n_unscored"] == 0
    dates = publication_dates(frame, VALIDATION)
    assert set(evaluation.predictions["Fecha"]) == set(dates)

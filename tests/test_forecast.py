"""Model behaviour on a seeded synthetic frame: shapes, determinism, artifacts, window rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from milkprice.model.features import SERIES_KEYS, future_publication_dates, publication_dates
from milkprice.model.forecast import DEFAULT_PARAMS, MilkForecaster
from milkprice.model.metrics import naive_forecast
from milkprice.model.training import (
    build_window_rows,
    evaluate_on_month,
    split_window,
    train_and_evaluate,
)
from milkprice.model.tuning import (
    SHRINK_GRID,
    THRESHOLD_GRID,
    training_origins,
    tune_hyperparameters,
)
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
    assert fitted.booster_.num_trees() == FAST["num_boost_round"]


def test_predict_shape_and_columns(fitted: MilkForecaster, training_frame: pd.DataFrame) -> None:
    predictions = _predict(fitted, training_frame)
    n_series = training_frame[SERIES_KEYS].drop_duplicates().shape[0]
    dates = future_publication_dates(VALIDATION)
    assert list(predictions.columns) == [*SERIES_KEYS, "Fecha", "prediction"]
    assert len(predictions) == n_series * len(dates)
    assert predictions["prediction"].notna().all()
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


def test_zero_shrink_is_exactly_naive(training_frame: pd.DataFrame, origins: list) -> None:
    model = MilkForecaster(params={**FAST, "shrink": 0.0}, seed=0)
    model.fit(training_frame, origins, date_stride=3)
    dates = future_publication_dates(VALIDATION)
    origin = VALIDATION.shift(-1).end
    predicted = model.predict(training_frame, origin, dates)
    naive = naive_forecast(training_frame, origin, dates)
    pd.testing.assert_frame_equal(predicted, naive)


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
    assert {"shrink", "threshold"} <= set(first.best_params)


def test_fixed_settings_choose_only_the_dead_zone(frame: pd.DataFrame) -> None:
    months = month_range(FIRST, VALIDATION.shift(-1))
    fixed = tune_hyperparameters(frame, months, n_trials=0, seed=5)
    assert fixed.n_trials == 0
    assert len(fixed.trials) == 1
    tuned = {"shrink", "threshold"}
    assert {k: v for k, v in fixed.best_params.items() if k not in tuned} == {
        k: v for k, v in DEFAULT_PARAMS.items() if k not in tuned
    }
    assert fixed.best_params["shrink"] in SHRINK_GRID
    assert fixed.best_params["threshold"] in THRESHOLD_GRID
    assert max(fixed.fold_origins) < VALIDATION.shift(-1).end
    again = tune_hyperparameters(frame, months, n_trials=0, seed=5)
    assert again.best_params == fixed.best_params
    with pytest.raises(ValueError, match="n_trials"):
        tune_hyperparameters(frame, months, n_trials=-1, seed=5)


def test_train_and_evaluate_with_missing_months(frame: pd.DataFrame) -> None:
    gaps = [VALIDATION.shift(-10), VALIDATION.shift(-7), VALIDATION.shift(-4)]
    holed = frame.loc[~frame["Fecha"].dt.to_period("M").astype(str).isin([str(m) for m in gaps])]
    outcome = train_and_evaluate(holed, VALIDATION, seed=1, n_trials=2)
    assert outcome.split.missing_months == gaps
    assert len(outcome.split.training_months) == 9
    metrics = outcome.metrics
    for key in ("val_rmse", "val_mae", "naive_val_rmse", "naive_val_mae", "mean_val_rmse"):
        assert np.isfinite(metrics[key]), key
    actual = holed.loc[holed["Fecha"].dt.to_period("M") == str(VALIDATION)]
    assert metrics["n_scored"] == actual["Precio"].notna().sum()
    assert metrics["n_unscored"] == 0
    table = outcome.evaluation.predictions
    assert {"actual", "model", "naive", "mean"} <= set(table.columns)
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

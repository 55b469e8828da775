"""The promotion gate: each branch, pure and against a real MLflow store (SQLite)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from milkprice.data.demo import generate_demo_frame
from milkprice.model.answers import forecast_frame
from milkprice.model.features import SERIES_KEYS
from milkprice.model.forecast import MilkForecaster
from milkprice.months import Month
from milkprice.registry.promotion import (
    CHAMPION_ALIAS,
    Champion,
    current_champion,
    decide_promotion,
    gate_score,
    promote_if_better,
    register_version,
)
from milkprice.registry.tracking import configure_mlflow, log_training_run

MODEL = "milk-price-model"


def _metrics(rmse: float, naive: float) -> dict[str, float]:
    """Equal RMSE and MAE ratios: the gate score is rmse / naive."""
    return {"val_rmse": rmse, "naive_val_rmse": naive, "val_mae": rmse, "naive_val_mae": naive}


def _never(champion: Champion) -> float:
    raise AssertionError(f"champion {champion.version} must not be re-scored on this branch")


CHAMPION = Champion("3", Month(2025, 2), f"models:/{MODEL}/3")


def test_first_candidate_that_beats_naive_is_promoted():
    decision = decide_promotion(
        candidate_version="1",
        candidate_month=Month(2025, 1),
        candidate_metrics=_metrics(0.8, 1.0),
        champion=None,
        rescore_champion=_never,
    )
    assert decision.promoted
    assert "first champion" in decision.reason


@pytest.mark.parametrize("rmse", [1.0, 1.2])
def test_candidate_not_beating_naive_is_rejected_even_without_champion(rmse):
    decision = decide_promotion(
        candidate_version="1",
        candidate_month=Month(2025, 1),
        candidate_metrics=_metrics(rmse, 1.0),
        champion=None,
        rescore_champion=_never,
    )
    assert not decision.promoted
    assert "naive" in decision.reason


def test_a_lower_rmse_bought_with_a_higher_mae_does_not_beat_naive():
    metrics = {"val_rmse": 0.95, "naive_val_rmse": 1.0, "val_mae": 1.10, "naive_val_mae": 1.0}
    assert gate_score(metrics) == pytest.approx(1.025)
    decision = decide_promotion(
        candidate_version="1",
        candidate_month=Month(2025, 1),
        candidate_metrics=metrics,
        champion=None,
        rescore_champion=_never,
    )
    assert not decision.promoted
    assert "score 1.0250" in decision.reason


def test_gate_score_is_nan_when_naive_is_perfect():
    metrics = {"val_rmse": 0.1, "naive_val_rmse": 0.0, "val_mae": 0.1, "naive_val_mae": 0.0}
    assert np.isnan(gate_score(metrics))
    decision = decide_promotion(
        candidate_version="1",
        candidate_month=Month(2025, 1),
        candidate_metrics=metrics,
        champion=None,
        rescore_champion=_never,
    )
    assert not decision.promoted


def test_older_validation_month_never_takes_the_alias():
    decision = decide_promotion(
        candidate_version="4",
        candidate_month=Month(2025, 1),
        candidate_metrics=_metrics(0.1, 1.0),
        champion=CHAMPION,
        rescore_champion=_never,
    )
    assert not decision.promoted
    assert "older" in decision.reason
    assert "2025-02" in decision.reason


def test_candidate_worse_than_rescored_champion_is_rejected():
    seen: list[str] = []

    def rescore(champion: Champion) -> float:
        seen.append(champion.version)
        return 0.5

    decision = decide_promotion(
        candidate_version="4",
        candidate_month=Month(2025, 3),
        candidate_metrics=_metrics(0.6, 1.0),
        champion=CHAMPION,
        rescore_champion=rescore,
    )
    assert seen == ["3"]
    assert not decision.promoted
    assert decision.champion_score_on_month == 0.5
    assert "worse than champion version 3" in decision.reason


@pytest.mark.parametrize(("candidate", "promoted"), [(0.55, True), (0.65, False)])
def test_same_month_champion_is_judged_on_its_recorded_out_of_sample_score(candidate, promoted):
    """Its registered model was refit on that month: re-scoring there would be in-sample."""
    champion = Champion("3", Month(2025, 2), f"models:/{MODEL}/3", recorded_score=0.6)
    decision = decide_promotion(
        candidate_version="4",
        candidate_month=Month(2025, 2),
        candidate_metrics=_metrics(candidate, 1.0),
        champion=champion,
        rescore_champion=_never,
    )
    assert decision.promoted is promoted
    assert decision.champion_score_on_month == 0.6
    assert "recorded out-of-sample" in decision.reason


def test_same_month_champion_without_a_recorded_score_is_rescored():
    decision = decide_promotion(
        candidate_version="4",
        candidate_month=Month(2025, 2),
        candidate_metrics=_metrics(0.5, 1.0),
        champion=CHAMPION,
        rescore_champion=lambda _: 0.4,
    )
    assert not decision.promoted
    assert "re-scored" in decision.reason


def test_candidate_at_least_as_good_as_champion_is_promoted():
    decision = decide_promotion(
        candidate_version="4",
        candidate_month=Month(2025, 3),
        candidate_metrics=_metrics(0.5, 1.0),
        champion=CHAMPION,
        rescore_champion=lambda _: 0.5,
    )
    assert decision.promoted
    assert decision.previous_champion == "3"


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> str:
    folder = tmp_path_factory.mktemp("mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}"


@pytest.fixture(scope="module")
def tiny_model() -> tuple[MilkForecaster, pd.DataFrame]:
    frame = generate_demo_frame(Month(2024, 1), Month(2024, 4), seed=3)
    frame = frame.assign(Precio=frame["Precio"].where(frame["Precio"] > 0))
    origins = [Month(2024, m).end for m in (1, 2)]
    model = MilkForecaster(params={"num_boost_round": 5}, seed=0).fit(frame, origins)
    return model, frame


def _register(store: str, tiny_model, month: Month) -> str:
    model, frame = tiny_model
    experiment = configure_mlflow(store, "milk-price-test")
    logged = log_training_run(
        tracking_uri=store,
        experiment_id=experiment,
        run_name=f"train-{month}",
        forecaster=model,
        history=frame,
        params={"seed": 0},
        metrics={"val_rmse": 1.0},
        tags={"validation_month": str(month)},
    )
    return register_version(store, MODEL, logged, {"validation_month": str(month)})


def test_gate_on_a_real_registry_moves_alias_only_when_better(store, tiny_model):
    client = MlflowClient(tracking_uri=store)
    rescored: list[str] = []

    def rescore(champion: Champion) -> float:
        rescored.append(champion.version)
        return 0.5

    def gate(version: str, month: Month, rmse: float, naive: float):
        return promote_if_better(
            tracking_uri=store,
            model_name=MODEL,
            candidate_version=version,
            candidate_month=month,
            candidate_metrics=_metrics(rmse, naive),
            rescore_champion=rescore,
        )

    v1 = _register(store, tiny_model, Month(2024, 3))
    assert gate(v1, Month(2024, 3), 1.1, 1.0).promoted is False  # worse than naive
    assert current_champion(client, MODEL) is None

    assert gate(v1, Month(2024, 3), 0.9, 1.0).promoted  # first champion
    assert current_champion(client, MODEL).version == v1

    v2 = _register(store, tiny_model, Month(2024, 4))
    assert gate(v2, Month(2024, 4), 0.7, 1.0).promoted is False  # champion re-scores 0.5
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version) == v1

    v3 = _register(store, tiny_model, Month(2024, 2))
    assert gate(v3, Month(2024, 2), 0.1, 1.0).promoted is False  # older month, never re-scored
    assert rescored == [v1]

    v4 = _register(store, tiny_model, Month(2024, 4))
    decision = gate(v4, Month(2024, 4), 0.4, 1.0)
    assert decision.promoted
    assert str(client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS).version) == v4
    tags = client.get_model_version(MODEL, v3).tags
    assert tags["promotion"] == "rejected"
    assert "older" in tags["promotion_reason"]
    assert client.get_model_version(MODEL, v4).tags["promotion"] == "promoted"


def test_logged_pyfunc_model_forecasts_like_the_forecaster(store, tiny_model):
    import mlflow

    model, frame = tiny_model
    version = _register(store, tiny_model, Month(2024, 4))
    mlflow.set_tracking_uri(store)
    loaded = mlflow.pyfunc.load_model(f"models:/{MODEL}/{version}")
    history = frame[frame["Fecha"] <= Month(2024, 3).end]
    got = loaded.predict(history, params={"origin": "2024-03-31"})
    dates = sorted(got["Fecha"].unique())
    expected = forecast_frame(model, history, Month(2024, 3).end, dates)
    assert {pd.Timestamp(d).month for d in dates} == {4}
    assert {pd.Timestamp(d).dayofweek for d in dates} <= {0, 2, 4}
    # The pyfunc's output is every forecast's: the same names as the API's answers.
    assert list(got.columns) == [*SERIES_KEYS, "Fecha", "price", "mean", "p_change"]
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), expected.reset_index(drop=True), check_dtype=False
    )
    # The median is the forecaster's own, to the 4 decimals answers are rounded to.
    median = model.predict(history, Month(2024, 3).end, dates)
    assert np.allclose(got["price"], median["prediction"], atol=0.5e-4 + 1e-12)

"""A fresh registry whose first model fails the gate serves the baseline version (the trusted
last price with conformal intervals) through the API; a later model must beat it."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from mlflow import MlflowClient

from milkprice.data.demo import generate_demo_frame
from milkprice.data.lake import Lake
from milkprice.model.baseline import BaselineForecaster
from milkprice.months import Month, month_range
from milkprice.pipeline.training_run import run_training
from milkprice.registry.promotion import CHAMPION_ALIAS, baseline_score, decide_promotion
from milkprice.serving.api import create_app
from milkprice.serving.loader import load_predictor
from milkprice.settings import Settings

VALIDATION = Month(2025, 2)
MODEL = "milk-price-model"


def _frozen_lake(root: Path) -> Lake:
    """Demo months, except that in the validation month every price stays at its last value
    but one series' single jump: nothing a model predicts can beat "no change" there."""
    frame = generate_demo_frame(VALIDATION.shift(-12), VALIDATION, seed=2)
    frame = frame.loc[~frame["Ciudad"].str.contains("Promedio")].copy()
    frame.loc[frame["Precio"] <= 0, "Precio"] = np.nan
    keys = ["Estado", "Ciudad", "Tipo", "Canal"]
    before = frame.loc[frame["Fecha"] <= VALIDATION.shift(-1).end].dropna(subset=["Precio"])
    last = before.sort_values("Fecha").groupby(keys)["Precio"].last()
    inside = frame["Fecha"] >= VALIDATION.start
    frozen = frame.loc[inside, keys].merge(last.reset_index(), on=keys, how="left")["Precio"]
    frame.loc[inside, "Precio"] = frozen.to_numpy()
    jump = inside & (frame["Ciudad"] == frame["Ciudad"].iloc[0]) & (frame["Fecha"] > "2025-02-20")
    frame.loc[jump, "Precio"] = frame.loc[jump, "Precio"] + 1.0
    lake = Lake(str(root / "lake"))
    for month in month_range(VALIDATION.shift(-12), VALIDATION):
        rows = frame.loc[frame["Fecha"].dt.to_period("M") == str(month)]
        lake.write_month(month, rows.reset_index(drop=True))
    return lake


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    root = tmp_path_factory.mktemp("baseline")
    _frozen_lake(root)
    return Settings(
        data_root=root / "lake",
        mlflow_tracking_uri=f"sqlite:///{root / 'mlflow.db'}",
        registered_model=MODEL,
    )


def test_a_first_model_that_fails_the_gate_leaves_the_baseline_served(settings) -> None:
    result = run_training(settings, "local", VALIDATION.year, VALIDATION.month)
    assert not result.promoted
    assert "does not beat" in result.reason
    assert "baseline version" in result.reason
    client = MlflowClient(tracking_uri=settings.mlflow_tracking_uri)
    champion = client.get_model_version_by_alias(MODEL, CHAMPION_ALIAS)
    version = str(champion.version)
    assert version != result.model_version
    assert champion.tags["kind"] == "baseline"
    assert float(champion.tags["gate_score"]) == pytest.approx(baseline_score(result.metrics))

    predictor = load_predictor(settings)
    assert isinstance(predictor.forecaster, BaselineForecaster)
    assert predictor.info.version == version

    with TestClient(create_app(settings)) as api:
        deadline = time.monotonic() + 60
        while api.get("/readyz").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)  # the model loads in the background once the app starts
        model = api.get("/model").json()
        assert model["version"] == version
        row = predictor.series.iloc[0]
        day = (predictor.cutoff + pd.Timedelta(days=2)).date().isoformat()
        body = {
            "rows": [
                {
                    "estado": row["Estado"],
                    "ciudad": row["Ciudad"],
                    "tipo": row["Tipo"],
                    "canal": row["Canal"],
                    "fecha": day,
                }
            ]
        }
        answer = api.post("/predict", json=body)
        assert answer.status_code == 200, answer.text
        served = answer.json()["predictions"][0]
    # The baseline's forecast is the trusted last price, with an interval around it.
    assert served["price"] == pytest.approx(served["anchor"]) or served["suspect"]
    assert served["lower_95"] <= served["lower_80"] <= served["price"]
    assert served["price"] <= served["upper_80"] <= served["upper_95"]
    assert served["upper_95"] > served["lower_95"]


def test_a_candidate_must_beat_the_better_baseline() -> None:
    metrics = {
        "val_rmse": 0.95,
        "val_mae": 0.97,
        "naive_val_rmse": 1.0,
        "naive_val_mae": 1.0,
        "trusted_val_rmse": 0.94,
        "trusted_val_mae": 0.96,
    }
    assert baseline_score(metrics) == pytest.approx(0.95)
    decision = decide_promotion(
        candidate_version="3",
        candidate_month=VALIDATION,
        candidate_metrics=metrics,
        champion=None,
        rescore_champion=lambda _: 0.0,
    )
    assert not decision.promoted
    assert "does not beat the trusted last price (0.9500)" in decision.reason
    better = {**metrics, "val_rmse": 0.90, "val_mae": 0.95}
    decision = decide_promotion(
        candidate_version="3",
        candidate_month=VALIDATION,
        candidate_metrics=better,
        champion=None,
        rescore_champion=lambda _: 0.0,
    )
    assert decision.promoted

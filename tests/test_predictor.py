"""The predictor behind the batch forecast and the API: same numbers, no leakage, clear refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from milkprice.model.answers import ANSWER_COLUMNS, forecast_frame
from milkprice.model.features import SERIES_KEYS
from milkprice.model.forecast import MilkForecaster
from milkprice.model.training import train_and_evaluate
from milkprice.months import Month
from milkprice.serving.predictor import (
    FORECAST_COLUMNS,
    ModelInfo,
    PredictionInputError,
    Predictor,
    forecast_dates,
)

VALIDATION = Month(2024, 9)
CUTOFF = pd.Timestamp("2024-10-16")
INFO = ModelInfo(name="milk-price-model", version="7", validation_month="2024-09", run_id="r")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    from milkprice.data.demo import generate_demo_frame

    data = generate_demo_frame(VALIDATION.shift(-12), VALIDATION.shift(2), seed=8)
    data = data.loc[~data["Ciudad"].str.contains("Promedio")].copy()
    data.loc[data["Precio"] <= 0, "Precio"] = np.nan
    return data.reset_index(drop=True)


@pytest.fixture(scope="module")
def forecaster(frame: pd.DataFrame) -> MilkForecaster:
    window = frame.loc[frame["Fecha"] <= VALIDATION.end]
    return train_and_evaluate(window, VALIDATION, seed=0, n_trials=1).forecaster


@pytest.fixture(scope="module")
def predictor(frame: pd.DataFrame, forecaster: MilkForecaster) -> Predictor:
    return Predictor(forecaster, INFO, frame.loc[frame["Fecha"] <= CUTOFF], CUTOFF)


def test_forecast_dates_are_publication_days_to_the_end_of_next_month() -> None:
    dates = forecast_dates(pd.Timestamp("2025-03-12"))
    assert dates[0] == pd.Timestamp("2025-03-14")
    assert dates[-1] == pd.Timestamp("2025-04-30")
    assert {d.weekday() for d in dates} == {0, 2, 4}
    assert forecast_dates(pd.Timestamp("2025-03-31"))[0] == pd.Timestamp("2025-04-02")


def test_prices_equal_the_forecasters_own_path(predictor, forecaster, frame) -> None:
    # The predictor precomputes per-series features once; the forecaster builds them per call.
    # Both must give the same price for every (series, date).
    dates = forecast_dates(CUTOFF)
    served = predictor.forecast(dates)
    direct = forecast_frame(forecaster, frame, CUTOFF, dates, series=predictor.series)
    merged = served.merge(
        direct, on=[*SERIES_KEYS, "Fecha"], validate="one_to_one", suffixes=("", "_direct")
    )
    assert len(merged) == len(predictor.series) * len(dates)
    for column in ANSWER_COLUMNS:
        assert (merged[column] == merged[f"{column}_direct"]).all(), column
    # The median is the model's own median of the same rows (rounded to 4 decimals).
    median = forecaster.predict(frame, CUTOFF, dates, series=predictor.series)
    both = served.merge(median, on=[*SERIES_KEYS, "Fecha"])
    assert np.allclose(both["price"], both["prediction"], rtol=0, atol=0.5e-4 + 1e-12)


def test_rows_after_the_cutoff_change_nothing(frame, forecaster, predictor) -> None:
    with_future = Predictor(forecaster, INFO, frame, CUTOFF)
    dates = forecast_dates(CUTOFF)
    pd.testing.assert_frame_equal(with_future.forecast(dates), predictor.forecast(dates))


def test_intervals_are_nested_and_ordered(predictor) -> None:
    out = predictor.forecast(forecast_dates(CUTOFF))
    assert list(out.columns[5 : 5 + len(FORECAST_COLUMNS)]) == FORECAST_COLUMNS
    assert ((out["p_change"] >= 0) & (out["p_change"] <= 1)).all()
    assert ((out["p_glitch"] >= 0) & (out["p_glitch"] <= 1)).all()
    assert (out["suspect"] == (out["p_glitch"] > 0)).all()
    assert (out["anchor_date"] <= CUTOFF).all()
    assert (out["lower_95"] <= out["lower_80"]).all()
    assert (out["lower_80"] <= out["price"]).all()
    assert (out["price"] <= out["upper_80"]).all()
    assert (out["upper_80"] <= out["upper_95"]).all()
    assert (out["model_version"] == "7").all()
    assert (out["cutoff"] == CUTOFF).all()
    # Wider further out.
    first = out.loc[out["horizon_days"] == out["horizon_days"].min()]
    last = out.loc[out["horizon_days"] == out["horizon_days"].max()]
    assert (last["upper_95"] - last["lower_95"]).mean() > (
        first["upper_95"] - first["lower_95"]
    ).mean()


def test_stale_and_unknown_series_are_listed_and_refused(frame, forecaster) -> None:
    key = tuple(frame[SERIES_KEYS].iloc[0])
    mask = (frame[SERIES_KEYS].apply(tuple, axis=1) == key) & (
        frame["Fecha"] > CUTOFF - pd.Timedelta(days=70)
    )
    stale = frame.assign(Precio=frame["Precio"].mask(mask))
    predictor = Predictor(forecaster, INFO, stale.loc[stale["Fecha"] <= CUTOFF], CUTOFF)
    skipped = predictor.skipped.set_index(SERIES_KEYS)
    assert "no price in the 56 days" in skipped.loc[key, "reason"]
    assert key not in set(predictor.series[SERIES_KEYS].itertuples(index=False, name=None))
    day = forecast_dates(CUTOFF)[0]
    unknown = ("Nowhere", "Atlantis", "Pasteurizada", "Tiendas")
    with pytest.raises(PredictionInputError) as caught:
        predictor.predict_keys([unknown, key], [day, day])
    errors = caught.value.errors
    assert [(e.index, e.field) for e in errors] == [(0, "ciudad"), (1, "ciudad")]
    assert "unknown series Nowhere/Atlantis" in errors[0].message
    assert "is not forecast: no price in the 56 days" in errors[1].message


def test_dates_outside_the_horizon_are_refused_naming_the_row(predictor) -> None:
    key = next(iter(predictor.series[SERIES_KEYS].itertuples(index=False, name=None)))
    good = CUTOFF + pd.Timedelta(days=2)
    too_far = predictor.last_date + pd.Timedelta(days=1)
    with pytest.raises(PredictionInputError) as caught:
        predictor.predict_keys([key, key, key, key], [good, CUTOFF, good, too_far])
    errors = caught.value.errors
    assert [(e.index, e.field) for e in errors] == [(1, "fecha"), (3, "fecha")]
    assert "on or before the cut-off 2024-10-16" in errors[0].message
    assert "beyond the horizon" in errors[1].message
    assert "row 1 (fecha)" in str(caught.value)
    # The last allowed date is answered.
    answer = predictor.predict_keys([key], [predictor.last_date])
    assert np.isfinite(answer["price"]).all()


def test_a_model_without_intervals_is_refused(frame) -> None:
    bare = MilkForecaster(params={"num_boost_round": 5}).fit(
        frame.loc[frame["Fecha"] <= VALIDATION.end], [VALIDATION.shift(-1).end]
    )
    with pytest.raises(ValueError, match="has no interval table"):
        Predictor(bare, INFO, frame, CUTOFF)


def test_no_fresh_series_is_a_clear_error(frame, forecaster) -> None:
    old = frame.loc[frame["Fecha"] <= CUTOFF - pd.Timedelta(days=90)]
    with pytest.raises(ValueError, match="no series has a price in the 56 days"):
        Predictor(forecaster, INFO, old, CUTOFF)


def test_no_champion_says_to_train_first(mlflow_uri: str) -> None:
    from milkprice.serving.loader import NoChampionError, resolve_version
    from milkprice.settings import get_settings

    with pytest.raises(NoChampionError, match="run the training flow first"):
        resolve_version(get_settings(mlflow_tracking_uri=mlflow_uri))

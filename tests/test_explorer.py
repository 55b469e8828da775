"""The explorer's endpoints in process (TestClient): the page, its assets, the views, the CSV.

A champion is trained once on a seeded demo lake (2024-01..2025-03) and a monitoring run is
logged for it; the app is the real ``create_app`` over that store. A view's numbers are checked
against ``POST /predict`` (series) and against an independent computation from the lake and the
aggregate function (state, nation). The browser's view of the same page is in
``test_browser_explorer.py``.
"""

from __future__ import annotations

import csv
import importlib.resources
import io
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import training_env
from fastapi.testclient import TestClient

from milkprice.data.lake import Lake
from milkprice.months import Month, month_range
from milkprice.serving.explorer.views import BAND_COLUMNS, CSV_COLUMNS
from milkprice.serving.guards import CONTENT_SECURITY_POLICY
from milkprice.settings import get_settings

KEYS = ("estado", "ciudad", "tipo", "canal")
MONITORED = {"scored": 120.0, "mae_ratio": 0.91, "rmse_ratio": 0.87, "coverage_80": 0.78}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> dict[str, str]:
    """A demo lake, a champion (validation month 2025-02) and one monitoring run (2025-03)."""
    from milkprice.monitoring.report import log_monitoring_run
    from milkprice.pipeline.training_run import run_training

    root = tmp_path_factory.mktemp("explorer")
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")
    env = training_env(root, None)
    settings = get_settings(
        data_root=env["MILKPRICE_DATA_ROOT"],
        mlflow_tracking_uri=env["MLFLOW_TRACKING_URI"],
        n_trials=0,
    )
    result = run_training(settings, "local", 2025, 2)
    assert result.promoted, result.reason
    log_monitoring_run(settings, "2025-03", MONITORED, 0, b"<html></html>")
    return env


@pytest.fixture(scope="module")
def client(setup: dict[str, str]) -> Iterator[TestClient]:
    from milkprice.serving.api import create_app

    settings = get_settings(
        data_root=setup["MILKPRICE_DATA_ROOT"], mlflow_tracking_uri=setup["MLFLOW_TRACKING_URI"]
    )
    with TestClient(create_app(settings, "local"), raise_server_exceptions=False) as started:
        deadline = time.monotonic() + 120
        while started.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, started.get("/readyz").json()
            time.sleep(0.2)
        yield started


@pytest.fixture(scope="module")
def options(client: TestClient) -> dict:
    answer = client.get("/explorer/options")
    assert answer.status_code == 200, answer.text
    return answer.json()


@pytest.fixture(scope="module")
def lake_prices(setup: dict[str, str]) -> pd.DataFrame:
    """Every row of the demo lake, read independently of the explorer."""
    lake = Lake(setup["MILKPRICE_DATA_ROOT"])
    return lake.read_window(month_range(Month(2024, 1), Month(2025, 3))).frame


def _view(client: TestClient, **params: str) -> dict:
    answer = client.get("/explorer/view", params=params)
    assert answer.status_code == 200, answer.text
    return answer.json()


def _series_params(series: dict) -> dict[str, str]:
    return {"scope": "series", **{k: series[k] for k in KEYS}}


# --- the page and its assets --------------------------------------------------------------


def test_page_and_its_assets_come_from_the_api_itself(client: TestClient):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert page.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", page.text)
    assert "/explorer/static/plotly.min.js" in assets
    assert all(a.startswith("/") and not a.startswith("//") for a in assets if a != "#"), assets
    for asset in assets:
        if asset == "#":
            continue
        answer = client.get(asset)
        assert answer.status_code == 200, asset
        assert answer.headers["x-content-type-options"] == "nosniff"
        kinds = {".css": "text/css", ".svg": "image/svg+xml", ".js": "text/javascript"}
        kind = kinds[asset[asset.rfind(".") :]]
        assert answer.headers["content-type"].startswith(kind), asset
    bundled = (importlib.resources.files("plotly") / "package_data" / "plotly.min.js").read_bytes()
    plotly = client.get("/explorer/static/plotly.min.js")
    assert plotly.content == bundled
    again = client.get(
        "/explorer/static/plotly.min.js", headers={"If-None-Match": plotly.headers["etag"]}
    )
    assert again.status_code == 304
    assert client.get("/explorer/static/secrets.txt").status_code == 404
    assert client.get("/explorer/static/..%2Fviews.py").status_code == 404


def test_the_page_is_not_in_the_openapi_document_but_its_data_is(client: TestClient):
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths
    assert {"/explorer/options", "/explorer/view", "/explorer/view.csv"} <= set(paths)


# --- options: series and the model in service -----------------------------------------------


def test_options_list_the_served_series_and_describe_the_model(client, options):
    served = client.get("/series").json()["series"]
    assert options["series"] == served
    assert options["estados"] == sorted({s["estado"] for s in served})
    assert set(options["tipos"]) == {s["tipo"] for s in served}
    model = client.get("/model").json()
    card = options["model"]
    assert card["version"] == model["version"]
    assert card["validation_month"] == "2025-02"
    assert card["cutoff"] == model["cutoff"]
    assert card["validation"] == model["metrics"]
    assert card["trained_at"] is not None
    assert {"data_fingerprint", "training_months", "source"} <= set(card["trained_on"])
    assert card["trained_on"]["source"] == "local"
    assert 0.0 <= card["aggregate_dependence"] <= 1.0


def test_options_show_the_months_the_monitoring_scored(options):
    (month,) = options["accuracy"]
    assert month["month"] == "2025-03"
    assert month["scored"] == int(MONITORED["scored"])
    assert month["mae_ratio"] == MONITORED["mae_ratio"]
    assert month["rmse_ratio"] == MONITORED["rmse_ratio"]
    assert month["coverage_80"] == MONITORED["coverage_80"]
    assert month["coverage_95"] is None  # not logged: shown as unknown, not as 0
    assert options["accuracy_note"] is None


# --- a series: the numbers /predict answers ---------------------------------------------------


def test_series_view_shows_what_predict_answers(client, options):
    series = options["series"][3]
    view = _view(client, **_series_params(series))
    assert view["n_series"] == 1
    rows = [{**{k: series[k] for k in KEYS}, "fecha": p["fecha"]} for p in view["forecast"]]
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    predicted = answer.json()["predictions"]
    assert [p["fecha"] for p in view["forecast"]] == [p["fecha"] for p in predicted]
    for shown, expected in zip(view["forecast"], predicted, strict=True):
        assert {k: shown[k] for k in [*BAND_COLUMNS, "p_change"]} == {
            k: expected[k] for k in [*BAND_COLUMNS, "p_change"]
        }
    first = predicted[0]
    assert view["anchor"] == {k: first[k] for k in ("anchor", "anchor_date", "suspect", "p_glitch")}
    # To the end of the month after the cut-off, inside the model's horizon.
    cutoff = pd.Timestamp(view["cutoff"])
    last = pd.Timestamp(view["forecast"][-1]["fecha"])
    assert last.month == (cutoff + pd.offsets.MonthEnd(0) + pd.Timedelta(days=1)).month
    assert last <= pd.Timestamp(options["model"]["last_date"])


def test_series_history_is_the_last_six_months_of_published_prices(client, options, lake_prices):
    series = options["series"][0]
    view = _view(client, **_series_params(series))
    own = lake_prices.loc[
        (lake_prices["Estado"] == series["estado"])
        & (lake_prices["Ciudad"] == series["ciudad"])
        & (lake_prices["Tipo"] == series["tipo"])
        & (lake_prices["Canal"] == series["canal"])
    ]
    cutoff = pd.Timestamp(view["cutoff"])
    window = own.loc[
        (own["Fecha"] > cutoff - pd.DateOffset(months=6))
        & (own["Fecha"] <= cutoff)
        & (own["Precio"] > 0)
    ].sort_values("Fecha")
    assert [p["fecha"] for p in view["history"]] == window["Fecha"].dt.strftime("%Y-%m-%d").tolist()
    assert [p["precio"] for p in view["history"]] == window["Precio"].tolist()
    assert all(p["n_series"] == 1 for p in view["history"])
    for point in view["history"]:
        assert (point["p_glitch"] is not None) == (point["suspect"] == 1)


def test_suspect_readings_are_marked_as_the_quality_checks_find_them(client, options, setup):
    from milkprice.data.quality import assess_readings
    from milkprice.serving.explorer.views import read_recent_history

    cutoff = pd.Timestamp(options["model"]["cutoff"])
    lake = Lake(setup["MILKPRICE_DATA_ROOT"])
    verdicts = assess_readings(read_recent_history(lake, cutoff))
    suspect = verdicts.loc[
        (verdicts["verdict"] == "suspect") & (verdicts["Fecha"] > cutoff - pd.DateOffset(months=6))
    ]
    served = {tuple(s[k] for k in KEYS) for s in options["series"]}
    suspect = suspect.loc[[tuple(r) in served for r in suspect[list(map(str.title, KEYS))].values]]
    assert len(suspect), "the demo lake has suspect readings in the last six months"
    row = suspect.iloc[0]
    view = _view(
        client,
        scope="series",
        estado=row["Estado"],
        ciudad=row["Ciudad"],
        tipo=row["Tipo"],
        canal=row["Canal"],
    )
    marked = {p["fecha"]: p for p in view["history"] if p["suspect"]}
    day = row["Fecha"].strftime("%Y-%m-%d")
    assert day in marked
    assert marked[day]["p_glitch"] == round(float(row["p_glitch"]), 4)


# --- a state and the nation: the aggregate's interval ---------------------------------------


def _forecast_frame(client: TestClient, options: dict, view: dict) -> pd.DataFrame:
    """``/predict`` for every served series at the view's dates, as a forecast frame."""
    dates = [p["fecha"] for p in view["forecast"]]
    rows = [{**{k: s[k] for k in KEYS}, "fecha": d} for s in options["series"] for d in dates]
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 200, answer.text
    frame = pd.DataFrame(answer.json()["predictions"])
    frame = frame.rename(columns={k: k.title() for k in KEYS} | {"fecha": "Fecha"})
    frame["Fecha"] = pd.to_datetime(frame["Fecha"])
    return frame


@pytest.mark.parametrize("scope", ["nation", "state"])
def test_aggregate_views_show_the_aggregate_interval(client, options, lake_prices, scope):
    from milkprice.model.aggregate import aggregate_forecast

    # The series of the state with the most cities for one Tipo x Canal: an average of several.
    served = pd.DataFrame(options["series"])
    sizes = served.groupby(["estado", "tipo", "canal"]).size()
    estado, tipo, canal = sizes.idxmax()
    first = {"estado": estado, "tipo": tipo, "canal": canal}
    params = {"scope": scope, "tipo": first["tipo"], "canal": first["canal"]}
    by = ["Tipo", "Canal"]
    if scope == "state":
        params["estado"] = first["estado"]
        by = ["Estado", *by]
    view = _view(client, **params)
    frame = _forecast_frame(client, options, view)
    chosen = frame.loc[(frame["Tipo"] == first["tipo"]) & (frame["Canal"] == first["canal"])]
    if scope == "state":
        chosen = chosen.loc[chosen["Estado"] == first["estado"]]
    expected = aggregate_forecast(
        chosen, by, dependence=options["model"]["aggregate_dependence"], draws=2000, seed=0
    ).sort_values("Fecha")
    assert view["n_series"] == chosen[["Estado", "Ciudad"]].drop_duplicates().shape[0] > 1
    for name in BAND_COLUMNS:
        shown = [p[name] for p in view["forecast"]]
        assert shown == pytest.approx(expected[name].round(4).tolist(), abs=1e-4), name
    assert all(p["p_change"] is None for p in view["forecast"])
    # Not the mean of the series' bounds, unless the series move in lockstep.
    mean_of_bounds = chosen.groupby("Fecha")["upper_95"].mean().to_numpy()
    widths = np.array([p["upper_95"] for p in view["forecast"]])
    if options["model"]["aggregate_dependence"] < 1:
        assert (widths < mean_of_bounds).all()
    # The history is the mean of the published prices of the scope's series, day by day.
    served = pd.DataFrame(options["series"]).rename(columns={k: k.title() for k in KEYS})
    prices = lake_prices.merge(served[["Estado", "Ciudad", "Tipo", "Canal"]])
    prices = prices.loc[
        (prices["Tipo"] == first["tipo"])
        & (prices["Canal"] == first["canal"])
        & (prices["Precio"] > 0)
    ]
    if scope == "state":
        prices = prices.loc[prices["Estado"] == first["estado"]]
    cutoff = pd.Timestamp(view["cutoff"])
    prices = prices.loc[
        (prices["Fecha"] > cutoff - pd.DateOffset(months=6)) & (prices["Fecha"] <= cutoff)
    ]
    daily = prices.groupby("Fecha")["Precio"].agg(["mean", "size"])
    assert [p["precio"] for p in view["history"]] == pytest.approx(daily["mean"].tolist(), abs=1e-4)
    assert [p["n_series"] for p in view["history"]] == daily["size"].tolist()


# --- bad parameters: 422 naming the parameter ------------------------------------------------


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"estado": "Atlantis"}, "estado"),
        ({"ciudad": "Nowhere"}, "ciudad"),
        ({"ciudad": None}, "ciudad"),
        ({"estado": None}, "estado"),
        ({"tipo": "Deslactosada"}, "tipo"),
        ({"canal": "Online"}, "canal"),
        ({"scope": "planet"}, "scope"),
        ({"tipo": None}, "tipo"),
    ],
)
def test_unknown_or_missing_parameters_are_422_naming_them(client, options, change, param):
    params = {**_series_params(options["series"][0]), **change}
    params = {k: v for k, v in params.items() if v is not None}
    for path in ("/explorer/view", "/explorer/view.csv"):
        answer = client.get(path, params=params)
        assert answer.status_code == 422, answer.text
        assert any(error["loc"] == ["query", param] for error in answer.json()["detail"]), (
            answer.text
        )


def test_a_state_without_that_tipo_and_canal_names_the_parameter(client, options):
    served = pd.DataFrame(options["series"])
    pairs = {(t, c) for t in options["tipos"] for c in options["canales"]}
    for estado, group in served.groupby("estado"):
        absent = pairs - set(zip(group["tipo"], group["canal"], strict=True))
        if absent:
            tipo, canal = sorted(absent)[0]
            answer = client.get(
                "/explorer/view",
                params={"scope": "state", "estado": estado, "tipo": tipo, "canal": canal},
            )
            assert answer.status_code == 422
            (error,) = answer.json()["detail"]
            assert error["loc"][-1] in {"tipo", "canal"} and estado in error["msg"]
            return
    pytest.skip("every state of the demo lake has every Tipo x Canal")


# --- the CSV download --------------------------------------------------------------------------


@pytest.mark.parametrize("scope", ["series", "state", "nation"])
def test_csv_download_is_the_view_shown(client, options, scope):
    params = _series_params(options["series"][1])
    params["scope"] = scope
    if scope == "nation":
        params.pop("estado")
    if scope != "series":
        params.pop("ciudad")
    view = _view(client, **params)
    answer = client.get("/explorer/view.csv", params=params)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert "attachment" in answer.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(answer.text)))
    assert list(rows[0]) == CSV_COLUMNS
    history = [r for r in rows if r["kind"] == "history"]
    forecast = [r for r in rows if r["kind"] == "forecast"]
    assert len(history) == len(view["history"]) and len(forecast) == len(view["forecast"])
    for row, point in zip(history, view["history"], strict=True):
        assert row["fecha"] == point["fecha"]
        assert float(row["precio"]) == point["precio"]
        assert int(row["suspect"]) == point["suspect"]
    for row, point in zip(forecast, view["forecast"], strict=True):
        assert row["fecha"] == point["fecha"]
        for name in BAND_COLUMNS:
            assert float(row[name]) == point[name], name
        assert (row["p_change"] == "") == (point["p_change"] is None)
        assert row["scope"] == scope and row["tipo"] == view["tipo"]

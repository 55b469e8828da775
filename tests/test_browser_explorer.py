"""The forecast explorer as a user meets it: `milkprice api` on loopback, its page in chromium.

A champion is trained on a seeded demo lake (2024-01..2025-03) by a separate process; the real
server (``milkprice api``, uvicorn) serves it on a free loopback port. The page is driven as a
user would (choose a series, then the nation); what it draws (the Plotly graph div's ``data``)
and its table are compared with what ``POST /predict`` answers and with the aggregate interval
computed here from those answers. Every request the page makes is recorded: all go to the
API's own origin. Screenshots go to ``test-output/browser/``.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pandas as pd
import pytest
from browser_pages import same_value, table_texts
from conftest import free_port, start_background, stop_process_group, training_env, wait_for_http

pytestmark = pytest.mark.e2e

MILKPRICE = Path(sys.executable).parent / "milkprice"
KEYS = ("estado", "ciudad", "tipo", "canal")
BANDS = {
    "median (price)": "price",
    "mean": "mean",
    "lower 80%": "lower_80",
    "upper 80%": "upper_80",
    "lower 95%": "lower_95",
    "upper 95%": "upper_95",
}
_TRAIN = """
from milkprice.pipeline.training_run import run_training
from milkprice.settings import get_settings
result = run_training(get_settings(), "local", 2025, 2)
assert result.promoted, result
"""


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory, mlflow_db_template: Path) -> Iterator[str]:
    """`milkprice api` serving a champion trained on the demo lake, once it is ready."""
    root = tmp_path_factory.mktemp("explorer-browser")
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")
    env = training_env(root, None)
    done = subprocess.run(
        [sys.executable, "-c", _TRAIN], env=env, cwd=root, capture_output=True, text=True,
        timeout=600, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    port = free_port()
    log = root / "api.log"
    process = start_background([str(MILKPRICE), "api", "--port", str(port)], env, root, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/livez", timeout_s=60)
        deadline = time.monotonic() + 120
        while httpx.get(f"{url}/readyz", timeout=10).status_code != 200:
            assert time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.3)
        yield url
    finally:
        stop_process_group(process)


def _wait_shown(page, params: dict[str, str]) -> None:
    """Wait until the page shows the view of ``params`` (the query it asked for)."""
    page.wait_for_function(
        """(wanted) => {
            if (document.body.dataset.state !== "ready") return false;
            const shown = new URLSearchParams(document.body.dataset.view || "");
            const keys = Object.keys(wanted);
            return [...shown.keys()].length === keys.length
                && keys.every((key) => shown.get(key) === wanted[key]);
        }""",
        arg=params,
    )


def _traces(page) -> dict[str, dict]:
    """The Plotly graph's traces by name, as the chart holds them."""
    data = page.evaluate(
        "() => document.getElementById('chart').data.map(t => ({name: t.name, x: t.x, y: t.y}))"
    )
    return {trace["name"]: trace for trace in data}


def _predict(api_url: str, series: list[dict], dates: list[str]) -> list[dict]:
    rows = [{**{k: s[k] for k in KEYS}, "fecha": d} for s in series for d in dates]
    answer = httpx.post(f"{api_url}/predict", json={"rows": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    return answer.json()["predictions"]


def test_explorer_shows_predict_numbers_and_the_aggregate_band(api_url: str, screens):
    from milkprice.model.aggregate import aggregate_forecast

    page = screens.page
    requests: list[str] = []
    problems: list[str] = []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(message.text) if message.type == "error" else None,
    )
    options = httpx.get(f"{api_url}/explorer/options", timeout=60).json()
    page.goto(f"{api_url}/")
    page.wait_for_function("() => document.body.dataset.state === 'ready'")
    screens.shot("first-view")

    # Choose a series other than the first one shown, as a user would.
    series = options["series"][len(options["series"]) // 2]
    page.select_option("#scope", "series")
    page.select_option("#estado", series["estado"])
    page.select_option("#ciudad", series["ciudad"])
    page.select_option("#tipo", series["tipo"])
    page.select_option("#canal", series["canal"])
    params = {"scope": "series", **{k: series[k] for k in KEYS}}
    _wait_shown(page, params)
    screens.shot("series")
    traces = _traces(page)
    dates = traces["median (price)"]["x"]
    assert dates, traces.keys()
    predicted = _predict(api_url, [series], dates)
    for name, column in BANDS.items():
        assert traces[name]["x"] == dates, name
        assert traces[name]["y"] == [p[column] for p in predicted], name
    anchor = next(t for n, t in traces.items() if n.startswith("anchor"))
    assert anchor["x"] == [predicted[0]["anchor_date"]]
    assert anchor["y"] == [predicted[0]["anchor"]]
    assert traces["published"]["x"] and max(traces["published"]["x"]) <= options["model"]["cutoff"]

    # The table shows the same numbers, column by column.
    headers, cells = table_texts(page.locator("#forecast-table"))
    assert [row[headers.index("fecha")] for row in cells] == dates
    for row, answer in zip(cells, predicted, strict=True):
        for column in ("price", "mean", "p_change", *(BANDS[n] for n in BANDS)):
            assert same_value(row[headers.index(column)], answer[column]), (column, row, answer)
    page.locator("#forecast-table").scroll_into_view_if_needed()
    screens.shot("series-table", full_page=False)

    # The CSV download is the view shown.
    with page.expect_download() as download:
        page.click("#csv")
    saved = pd.read_csv(download.value.path())
    ahead = saved.loc[saved["kind"] == "forecast"]
    assert ahead["price"].tolist() == [p["price"] for p in predicted]

    # The nation: the band is the interval of the national average, from every series.
    page.select_option("#scope", "nation")
    _wait_shown(page, {"scope": "nation", "tipo": series["tipo"], "canal": series["canal"]})
    screens.shot("nation")
    traces = _traces(page)
    dates = traces["median (price)"]["x"]
    chosen = [
        s for s in options["series"] if (s["tipo"], s["canal"]) == (series["tipo"], series["canal"])
    ]
    frame = pd.DataFrame(_predict(api_url, chosen, dates))
    frame = frame.rename(columns={k: k.title() for k in KEYS} | {"fecha": "Fecha"})
    frame["Fecha"] = pd.to_datetime(frame["Fecha"])
    dependence = options["model"]["aggregate_dependence"]
    expected = aggregate_forecast(
        frame, ["Tipo", "Canal"], dependence=dependence, draws=2000, seed=0
    ).sort_values("Fecha")
    assert expected["Fecha"].dt.strftime("%Y-%m-%d").tolist() == dates
    for name, column in BANDS.items():
        assert traces[name]["y"] == pytest.approx(expected[column].round(4).tolist(), abs=1e-4)
    if dependence < 1:  # narrower than the mean of the series' bounds
        means = frame.groupby("Fecha")[["lower_95", "upper_95"]].mean()
        shown = np.array(traces["upper 95%"]["y"]) - np.array(traces["lower 95%"]["y"])
        assert (shown < (means["upper_95"] - means["lower_95"]).to_numpy()).all()
    headers, cells = table_texts(page.locator("#forecast-table"))
    assert [float(row[headers.index("n_series")]) for row in cells] == [len(chosen)] * len(dates)

    # Nothing but the API's own origin, and nothing the browser refused.
    origin = urlsplit(api_url)
    outside = [u for u in requests if urlsplit(u)[:2] != origin[:2]]
    assert not outside, outside
    assert any(u.endswith("/explorer/static/plotly.min.js") for u in requests)
    assert not problems, problems

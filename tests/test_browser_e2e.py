"""The product as an operator meets it: the Prefect UI, the API's /docs and the MLflow UI in chromium.

One real ``prefect server start`` (session), one ``milkprice serve`` and one ``mlflow server``
over a seeded demo lake (2024-01..2025-03) for the module. The training run is started from the
Prefect UI's own form; its champion is what the API's /docs and the MLflow UI then show.
Screenshots of every step go to ``test-output/browser/`` (see ``fixtures_browser``).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from browser_pages import (
    flow_runs,
    registry,
    same_value,
    table_artifact_rows,
    table_texts,
    wait_for_flow_run,
    wait_visible,
)
from conftest import (
    free_port,
    http_json,
    start_background,
    stop_process_group,
    training_env,
    wait_deployment_polled,
    wait_flow_run_final,
    wait_for_http,
)

from orchestration.names import TRAIN_DEPLOYMENT as TRAIN

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent
FORECAST = "milk-price-forecast/daily-forecast"
MODEL = "milk-price-model"
FORECAST_TABLE = "milk-price-forecast"
YEAR, MONTH = 2025, 2  # a validation month of the demo lake, with 12 months before it
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class Stack:
    """The servers of this module and where they answer."""

    api_url: str  # Prefect REST API
    ui_url: str  # Prefect UI, served by the same server
    mlflow_url: str
    predict_url: str  # `milkprice api`
    env: dict[str, str]
    root: Path

    def log(self, name: str) -> str:
        """The end of a server's log (``serve``, ``mlflow``, ``api``)."""
        return (self.root / f"{name}.log").read_text(errors="replace")[-3000:]


@pytest.fixture(scope="module")
def stack(prefect_server, mlflow_db_template, tmp_path_factory) -> Iterator[Stack]:
    """`milkprice serve`, `mlflow server` and `milkprice api` over one demo lake and SQLite
    store, started at once (they boot in parallel), stopped after the module.

    The API starts before any champion exists: it answers 503 until one is registered, then
    loads it (the alias is checked every 3 s).
    """
    root = tmp_path_factory.mktemp("browser-stack")
    shutil.copyfile(mlflow_db_template, root / "mlflow.db")  # skip the migrations
    env = training_env(root, prefect_server)
    since = time.time()
    mlflow_port, api_port = free_port(), free_port()
    commands = {
        "serve": ([str(BIN / "milkprice"), "serve"], env),
        "mlflow": (
            [
                *(str(BIN / "mlflow"), "server", "--backend-store-uri", env["MLFLOW_TRACKING_URI"]),
                *("--host", "127.0.0.1", "--port", str(mlflow_port), "--workers", "1"),
            ],
            # No GenAI job runner: it forks seven huey consumers this UI check never uses.
            {**env, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        ),
        "api": (
            [str(BIN / "milkprice"), "api", "--port", str(api_port)],
            {**env, "MILKPRICE_API_RELOAD_SECONDS": "3"},
        ),
    }
    processes = []
    try:
        for name, (command, process_env) in commands.items():
            processes.append(start_background(command, process_env, root, root / f"{name}.log"))
        wait_deployment_polled(prefect_server, TRAIN, since)
        wait_deployment_polled(prefect_server, FORECAST, since)
        mlflow_url = f"http://127.0.0.1:{mlflow_port}"
        wait_for_http(f"{mlflow_url}/health", timeout_s=180)
        yield Stack(
            api_url=prefect_server,
            ui_url=prefect_server.removesuffix("/api"),
            mlflow_url=mlflow_url,
            predict_url=f"http://127.0.0.1:{api_port}",
            env=env,
            root=root,
        )
    finally:
        for process in reversed(processes):
            stop_process_group(process)


def _deployment(stack: Stack, name: str) -> dict:
    found = http_json(f"{stack.api_url}/deployments/name/{name}")
    assert isinstance(found, dict)
    return found


def _triggered_forecast(stack: Stack, deployment_id: str, known: set[str]) -> dict:
    """The first run of ``daily-forecast`` not in ``known`` that its schedule did not make."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = flow_runs(stack.api_url, deployment_id={"any_": [deployment_id]})
        fresh = [r for r in runs if r["id"] not in known and not r.get("auto_scheduled")]
        if fresh:
            return fresh[0]
        time.sleep(1)
    raise TimeoutError(f"no {FORECAST} run was triggered within 180s:\n{stack.log('serve')}")


@pytest.fixture(scope="module")
def champion(stack: Stack) -> int:
    """The champion's version. The UI test trains it; run alone, this trains through the API."""
    if not registry(stack.env, stack.root, MODEL)["champion"]:
        deployment = _deployment(stack, TRAIN)
        body = {"parameters": {"source": "local", "year": YEAR, "month": MONTH}}
        run = http_json(f"{stack.api_url}/deployments/{deployment['id']}/create_flow_run", body)
        final = wait_flow_run_final(stack.api_url, run["id"], timeout_s=RUN_TIMEOUT_S)
        assert final["state"]["type"] == "COMPLETED", (final["state"], stack.log("serve"))
    return registry(stack.env, stack.root, MODEL)["champion"]


# --- the Prefect UI ----------------------------------------------------------------------------


def _open_deployment(screens, stack: Stack, name: str) -> None:
    page = screens.page
    page.goto(f"{stack.ui_url}/")
    page.get_by_role("link", name="Deployments", exact=True).first.click()
    page.get_by_role("link", name=name, exact=True).click()
    page.get_by_role("button", name="Run", exact=True).wait_for()
    page.get_by_text(name, exact=True).first.wait_for()


def test_prefect_ui_shows_the_training_schedule(stack: Stack, screens):
    settings = http_json(f"{stack.ui_url}/ui-settings")
    # The UI calls the API of this server's port, not the default 4200.
    assert settings["api_url"] == stack.api_url, settings
    page = screens.page
    page.goto(f"{stack.ui_url}/")
    page.get_by_role("link", name="Deployments", exact=True).first.wait_for()
    screens.shot("dashboard")
    page.get_by_role("link", name="Deployments", exact=True).first.click()
    listed = page.get_by_role("link", name="train-milk-model", exact=True)
    listed.wait_for()
    screens.shot("deployments")

    schedule = _deployment(stack, TRAIN)["schedules"][0]["schedule"]
    assert schedule["cron"] == "0 6 2 * *"
    listed.click()
    # The UI words the cron; the words must say 06:00 on day 2 of every month.
    worded = page.get_by_text(re.compile(r"^At 06:00 AM,? on day 2 of the month$"))
    worded.wait_for()
    screens.shot("train-milk-model")

    # The schedule's own form shows the cron itself. Closed again without saving.
    page.get_by_text(re.compile(r"on day 2 of the month")).locator(
        "xpath=ancestor::*[.//button[normalize-space()='Open menu']][1]"
    ).get_by_role("button", name="Open menu").click()
    page.get_by_role("menuitem", name="Edit").click()
    dialog = page.get_by_role("dialog")
    cron = dialog.locator("input[name='schedule.cron']")
    cron.wait_for()
    screens.shot("schedule-cron")
    assert cron.input_value() == schedule["cron"]
    # The UI writes the zone spaced out: America/Mexico_City reads "America / Mexico City".
    zone = (schedule.get("timezone") or "UTC").replace("/", " / ").replace("_", " ")
    assert zone in dialog.inner_text()
    dialog.get_by_role("button", name="Close", exact=True).first.click()
    dialog.wait_for(state="hidden")
    assert _deployment(stack, TRAIN)["schedules"][0]["schedule"] == schedule


def test_prefect_ui_custom_run_completes_and_its_champion_is_forecast(stack: Stack, screens):
    page = screens.page
    train = _deployment(stack, TRAIN)
    forecast = _deployment(stack, FORECAST)
    known_forecasts = {
        r["id"] for r in flow_runs(stack.api_url, deployment_id={"any_": [forecast["id"]]})
    }
    _open_deployment(screens, stack, "train-milk-model")
    page.get_by_role("button", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Custom run").click()
    submit = page.get_by_role("button", name="Submit", exact=True)
    submit.wait_for()
    screens.shot("custom-run-form")

    # The form is built from the flow's signature: source is a choice of two lakes.
    page.get_by_label("Select source").click()
    options = [o.strip() for o in page.get_by_role("option").all_inner_texts()]
    assert options == ["local", "s3"]
    page.get_by_role("option", name="local", exact=True).click()
    year, month = page.get_by_label("year (Optional)"), page.get_by_label("month (Optional)")
    year.fill(str(YEAR))
    month.fill("13")
    runs_before = flow_runs(stack.api_url, deployment_id={"any_": [train["id"]]})
    submit.click()
    assert "12" in month.evaluate("e => e.validationMessage")  # the browser refuses month 13
    screens.shot("month-13-refused")
    assert page.url.split("?")[0].endswith("/run")
    assert flow_runs(stack.api_url, deployment_id={"any_": [train["id"]]}) == runs_before

    name = f"browser-{YEAR}-{MONTH:02d}-{uuid.uuid4().hex[:6]}"
    page.get_by_label("Run Name").fill(name)
    month.fill(str(MONTH))
    screens.shot("custom-run-filled")
    submit.click()
    page.get_by_text(f"{name} scheduled to start now").wait_for()
    screens.shot("custom-run-submitted")

    run = wait_for_flow_run(stack.api_url, 60, name={"any_": [name]})
    assert run["deployment_id"] == train["id"]
    # The form sends every field, force included (left off: train even a month done before).
    assert run["parameters"] == {"source": "local", "year": YEAR, "month": MONTH, "force": False}
    page.goto(f"{stack.ui_url}/v2/runs/flow-run/{run['id']}")
    page.get_by_text(name, exact=True).first.wait_for()
    state = page.get_by_text("Completed", exact=True)
    wait_visible(
        page, state.or_(page.get_by_text(re.compile(r"^(Failed|Crashed)$"))), RUN_TIMEOUT_S
    )
    final = wait_flow_run_final(stack.api_url, run["id"], timeout_s=60)
    assert final["state"]["type"] == "COMPLETED", (final["state"], stack.log("serve"))
    assert state.first.is_visible()
    # The run's logs, as the UI shows them, end with the flow's final state.
    page.get_by_text(re.compile(r"Finished in state Completed")).first.wait_for()
    screens.shot("custom-run-final")

    # The promotion's event started a forecast run at once (not the 23:00 schedule).
    triggered = _triggered_forecast(stack, forecast["id"], known_forecasts)
    _open_deployment(screens, stack, "daily-forecast")
    trigger = f"forecast when {MODEL} gets a new champion"
    page.get_by_role("link", name=trigger).wait_for()
    listed = page.get_by_role("link", name=triggered["name"], exact=True)
    wait_visible(page, listed, 120)
    screens.shot("daily-forecast")
    listed.first.click()
    state = page.get_by_text("Completed", exact=True)
    wait_visible(page, state, 300)
    screens.shot("forecast-run")
    done = wait_flow_run_final(stack.api_url, triggered["id"], timeout_s=60)
    assert done["state"]["type"] == "COMPLETED", (done["state"], stack.log("serve"))
    assert done["parameters"] == {"source": "local"}

    page.get_by_role("tab", name="Artifacts").click()
    page.get_by_role("link", name=re.compile(rf"^TABLE\s+{FORECAST_TABLE}\s")).click()
    table = page.get_by_role("table")
    table.get_by_role("cell").first.wait_for()
    screens.shot("forecast-table")
    rows = table_artifact_rows(stack.api_url, triggered["id"], FORECAST_TABLE)
    headers, shown = table_texts(table)
    assert headers == list(rows[0])
    assert 0 < len(shown) <= len(rows)
    for cells, row in zip(shown, rows, strict=False):
        assert all(same_value(c, v) for c, v in zip(cells, row.values(), strict=True)), (cells, row)
    pages = math.ceil(len(rows) / len(shown))
    assert page.get_by_text(f"Page 1 of {pages}").is_visible()


# --- the prediction API's /docs ----------------------------------------------------------------


@pytest.fixture(scope="module")
def api_server(stack: Stack, champion: int) -> str:
    """The module's `milkprice api` once it serves the champion (real uvicorn, its own port)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            ready = httpx.get(f"{stack.predict_url}/readyz", timeout=5)
            if ready.status_code == 200 and ready.json()["model_version"] == str(champion):
                return stack.predict_url
        time.sleep(0.5)
    raise TimeoutError(f"`milkprice api` did not serve version {champion}: {stack.log('api')}")


def _execute(operation, expect, timeout_ms: int = 60_000) -> tuple[int, object]:
    """Press Execute in an operation of Swagger UI; the answer's status and JSON body as shown."""
    answer = operation.locator("table.live-responses-table")
    previous = answer.inner_text() if answer.count() else None
    operation.get_by_role("button", name="Execute").click()
    expect(answer.get_by_role("cell").first).to_be_visible(timeout=timeout_ms)
    if previous is not None:
        expect(answer).not_to_have_text(previous, timeout=timeout_ms)
    answer.scroll_into_view_if_needed()
    status = answer.locator("tbody tr").first.get_by_role("cell").first.inner_text().strip()
    body = answer.get_by_text("Response body").locator("xpath=following::pre[1]").inner_text()
    return int(status), json.loads(body)


def test_api_docs_try_predict_answers_prices(stack: Stack, champion: int, api_server: str, screens):
    from playwright.sync_api import expect

    page = screens.page
    page.goto(f"{api_server}/docs")
    html = httpx.get(f"{api_server}/docs", timeout=30).text
    assets = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    remote = [a for a in assets if re.match(r"(https?:)?//", a) and not a.startswith(api_server)]
    assert not remote, (
        f"/docs loads Swagger UI from {remote}: on a machine without internet the page stays "
        "blank; serve its JS/CSS from the app itself (e.g. fastapi-offline)"
    )
    summary = page.get_by_role("button", name=re.compile(r"POST\s+\/predict\s"))
    summary.wait_for()
    screens.shot("docs")
    summary.click()
    operation = page.locator(".opblock").filter(has=summary)
    operation.get_by_role("button", name="Try it out").click()
    editor = operation.get_by_role("textbox")
    example = json.loads(editor.input_value())
    assert set(example["rows"][0]) == {"estado", "ciudad", "tipo", "canal", "fecha"}

    # The example as the page offers it: the page shows exactly what the API answers.
    status, shown = _execute(operation, expect)
    screens.shot("predict-example", full_page=False)
    direct = httpx.post(f"{api_server}/predict", json=example, timeout=30)
    assert (status, shown) == (direct.status_code, direct.json())

    # A filled body for real series, at dates inside the model's horizon.
    served = httpx.get(f"{api_server}/model", timeout=30).json()
    series = httpx.get(f"{api_server}/series", timeout=30).json()["series"][:2]
    cutoff = dt.date.fromisoformat(served["cutoff"])
    dates = [cutoff + dt.timedelta(days=7), dt.date.fromisoformat(served["last_date"])]
    keys = ("estado", "ciudad", "tipo", "canal")
    body = {
        "rows": [{**{k: s[k] for k in keys}, "fecha": d.isoformat()} for s in series for d in dates]
    }
    editor.fill(json.dumps(body, indent=2))
    status, shown = _execute(operation, expect)
    screens.shot("predict-filled", full_page=False)
    assert status == 200, shown
    assert shown == httpx.post(f"{api_server}/predict", json=body, timeout=30).json()
    assert shown["model_version"] == str(champion) == served["version"]
    assert [(p["ciudad"], p["fecha"]) for p in shown["predictions"]] == [
        (r["ciudad"], r["fecha"]) for r in body["rows"]
    ]
    for p in shown["predictions"]:
        bounds = [p["lower_95"], p["lower_80"], p["price"], p["upper_80"], p["upper_95"]]
        assert bounds == sorted(bounds) and p["lower_95"] > 0, p


# --- the MLflow UI ------------------------------------------------------------------------------


def test_mlflow_ui_shows_the_champion_alias_on_its_version(stack: Stack, champion: int, screens):
    # A newer version without the alias: the alias must stay on the champion's row.
    facts = registry(stack.env, stack.root, MODEL, "add")
    newest = facts["versions"][-1]
    assert facts["champion"] == champion != newest
    page = screens.page
    page.goto(f"{stack.mlflow_url}/#/models/{MODEL}")
    page.get_by_role("link", name=f"Version {newest}", exact=True).wait_for()
    screens.shot("registered-model")
    headers, rows = table_texts(page.get_by_role("table").filter(has_text="Aliases"))
    version_at, aliases_at = headers.index("Version"), headers.index("Aliases")
    aliases = {
        int(row[version_at].removeprefix("Version ")): " ".join(row[aliases_at].split())
        for row in rows
    }
    assert sorted(aliases) == facts["versions"]
    assert aliases[champion] == "@ champion"
    assert all("champion" not in text for version, text in aliases.items() if version != champion)


# --- the set-up's own failure ------------------------------------------------------------------


def test_missing_chromium_names_the_set_up_step_and_the_package(monkeypatch, tmp_path):
    import fixtures_browser

    monkeypatch.setattr(fixtures_browser, "CHROMIUM", tmp_path / "chromium")
    with pytest.raises(
        pytest.fail.Exception,
        match=r"chromium is missing.*make system-packages.*apt-get install -y chromium",
    ):
        fixtures_browser.ensure_chromium()

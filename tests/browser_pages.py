"""What the browser tests read from pages, and the server-side truths they compare it with.

No asyncio here (Prefect's client included): while Playwright's sync API runs, the main thread
has a running event loop. The Prefect REST API is read with plain HTTP (``conftest.http_json``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from conftest import http_json

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

# Registry facts, read (or changed) by a separate process with the stack's environment, as an
# operator would: argv[1] is "read" or "add" (a new version of the champion's model, no alias);
# without a champion, ``{"champion": null, "versions": []}``.
_REGISTRY = """
import json, sys
from mlflow import MlflowClient
client, name = MlflowClient(), sys.argv[2]
try:
    champion = client.get_model_version_by_alias(name, "champion")
except Exception:  # no model or no alias yet
    print(json.dumps({"champion": None, "versions": []}))
    raise SystemExit(0)
if sys.argv[1] == "add":
    client.create_model_version(name, source=champion.source, run_id=champion.run_id,
                                tags={"made_by": "browser test, no alias"})
versions = sorted(int(v.version) for v in client.search_model_versions(f"name='{name}'"))
print(json.dumps({"champion": int(champion.version), "versions": versions}))
"""


def registry(env: dict[str, str], cwd: Path, model: str, action: str = "read") -> dict:
    """``{"champion": version, "versions": [...]}`` of ``model`` (``action="add"``: add one)."""
    done = subprocess.run(
        [sys.executable, "-c", _REGISTRY, action, model],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def flow_runs(api_url: str, **flow_run_filter: object) -> list[dict]:
    """Flow runs matching a ``/flow_runs/filter`` criterion, e.g. ``name={"any_": [...]}``."""
    found = http_json(f"{api_url}/flow_runs/filter", {"flow_runs": flow_run_filter})
    assert isinstance(found, list)
    return found


def wait_for_flow_run(api_url: str, timeout_s: float, **flow_run_filter: object) -> dict:
    """The first flow run matching ``flow_run_filter`` once one exists."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = flow_runs(api_url, **flow_run_filter)
        if found:
            return found[0]
        time.sleep(1)
    raise TimeoutError(f"no flow run matching {flow_run_filter} within {timeout_s}s")


def table_artifact_rows(api_url: str, flow_run_id: str, key: str) -> list[dict]:
    """The rows of the table artifact ``key`` that one flow run created."""
    body = {"artifacts": {"key": {"any_": [key]}, "flow_run_id": {"any_": [flow_run_id]}}}
    found = http_json(f"{api_url}/artifacts/filter", body)
    assert isinstance(found, list) and len(found) == 1, found
    data = found[0]["data"]
    return json.loads(data) if isinstance(data, str) else data


def wait_visible(page: Page, locator: Locator, timeout_s: float, poll_s: float = 15) -> None:
    """Wait until ``locator`` shows, reloading the page every ``poll_s`` in case it stopped polling."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            locator.first.wait_for(state="visible", timeout=poll_s * 1000)
            return
        except Exception:
            if time.monotonic() >= deadline:
                raise
            page.reload()


def table_texts(table: Locator) -> tuple[list[str], list[list[str]]]:
    """Column headers and the cells' texts, row by row, of one rendered table."""
    headers = [text.strip() for text in table.get_by_role("columnheader").all_inner_texts()]
    rows = [
        [text.strip() for text in row.get_by_role("cell").all_inner_texts()]
        for row in table.get_by_role("row").all()
    ]
    return headers, [row for row in rows if row]


def same_value(shown: str, value: object) -> bool:
    """Whether a table cell's text shows ``value`` (numbers as numbers: ``28`` shows ``28.0``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return shown == str(value)
    return re.fullmatch(r"-?\d+(\.\d+)?", shown) is not None and float(shown) == float(value)

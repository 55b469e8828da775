"""The API's guards in process: strict JSON bodies, response headers, the admin token, binds.

No model is needed: bodies are validated before the endpoint runs, and the admin endpoint's
token is checked before it tries to reload (an authorised reload with no champion is a 503).
The real server's answers to the same bodies are in ``test_api.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port
from fastapi.testclient import TestClient
from pydantic import SecretStr

from milkprice.serving.api import create_app
from milkprice.serving.guards import (
    CONTENT_SECURITY_POLICY,
    ExposureError,
    check_exposure,
    is_loopback,
    strict_json_loads,
)
from milkprice.settings import get_settings

TOKEN = "s3cr3t-admin-token"
ROW = '{{"estado": {estado}, "ciudad": "B", "tipo": "Pasteurizada", "canal": "Tiendas", "fecha": {fecha}}}'
# Bodies Python's json module accepts but strict JSON does not, and where the bad value sits.
NOT_STRICT = [
    ('{"rows": [' + ROW.format(estado="NaN", fecha='"2025-03-03"') + "]}", "NaN at rows.0.estado"),
    ('{"rows": [' + ROW.format(estado='"A"', fecha="NaN") + "]}", "NaN at rows.0.fecha"),
    ('{"rows": [' + ROW.format(estado='"A"', fecha="Infinity") + "]}", "Infinity at rows.0.fecha"),
    (
        '{"rows": [' + ROW.format(estado='"A"', fecha="-Infinity") + "]}",
        "-Infinity at rows.0.fecha",
    ),
    ('{"rows": [' + ROW.format(estado='"A"', fecha="1e400") + "]}", "a number at rows.0.fecha"),
    ('{"rows": NaN}', "NaN at rows"),
    ("NaN", "NaN at the top level"),
    ('{"rows": [' + ROW.format(estado='"A"', fecha="9" * 5000) + "]}", "number out of range"),
    ('{"rows": [' + "[" * 5000 + "]" * 5000 + "]}", "nested too deeply"),
]
# Strict JSON with wrong types or values at any depth: pydantic names the field.
WRONG = [
    ('{"rows": [' + ROW.format(estado="[1, [2, {}]]", fecha='"2025-03-03"') + "]}", "estado"),
    ('{"rows": [' + ROW.format(estado='"A"', fecha="1e300") + "]}", "fecha"),
    ('{"rows": [' + ROW.format(estado='"A"', fecha="-99999999999999999999") + "]}", "fecha"),
    ('{"rows": [' + ROW.format(estado='"A"', fecha='{"a": {"b": null}}') + "]}", "fecha"),
    ('{"rows": {"0": 1}}', "rows"),
]


def _client(tmp_path: Path, token: str | None = None) -> TestClient:
    settings = get_settings(
        data_root=str(tmp_path / "lake"),
        mlflow_tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
        api_admin_token=SecretStr(token) if token else None,
    )
    return TestClient(create_app(settings, "local"), raise_server_exceptions=False)


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with _client(tmp_path_factory.mktemp("guards"), TOKEN) as started:
        yield started


def _post(client: TestClient, body: str) -> tuple[int, dict]:
    answer = client.post("/predict", content=body, headers={"Content-Type": "application/json"})
    return answer.status_code, answer.json()


@pytest.mark.parametrize(("body", "named"), NOT_STRICT)
def test_bodies_that_are_not_strict_json_are_422_naming_where(client, body, named):
    status, answer = _post(client, body)
    assert status == 422, answer
    (error,) = answer["detail"]
    assert error["type"] == "json_invalid"
    assert named in error["ctx"]["error"]
    assert client.get("/livez").status_code == 200


@pytest.mark.parametrize(("body", "field"), WRONG)
def test_wrong_types_at_any_depth_are_422_naming_the_field(client, body, field):
    status, answer = _post(client, body)
    assert status == 422, answer
    assert any(field in error["loc"] for error in answer["detail"]), answer


def test_strict_parser_reads_what_json_reads():
    document = '{"a": [1, 2.5, -3e2, "NaN", {"b": null, "c": true}], "d": "Infinity"}'
    assert strict_json_loads(document) == json.loads(document)
    assert strict_json_loads(document.encode()) == json.loads(document)
    with pytest.raises(json.JSONDecodeError, match=r"NaN at a\.1 "):
        strict_json_loads('{"a": [1, NaN]}')
    with pytest.raises(json.JSONDecodeError, match="not UTF-8"):
        strict_json_loads(b'{"a": "\xff"}')


@pytest.mark.parametrize("path", ["/livez", "/openapi.json", "/docs", "/nowhere"])
def test_every_response_carries_the_security_headers(client, path):
    answer = client.get(path)
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert answer.headers["x-frame-options"] == "DENY"
    assert answer.headers["content-type"].startswith(
        "text/html" if path == "/docs" else "application/json"
    )


def test_docs_page_loads_nothing_from_another_origin(client):
    page = client.get("/docs").text
    assert "http://" not in page.replace("http://testserver", "")
    assert "https://" not in page
    assert "default-src 'self'" in CONTENT_SECURITY_POLICY
    assert "*" not in CONTENT_SECURITY_POLICY


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": f"Basic {TOKEN}"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 503),  # authorised; no champion to load
    ],
)
def test_admin_reload_needs_the_token_when_one_is_set(client, headers, status):
    answer = client.post("/admin/reload", headers=headers)
    assert answer.status_code == status, answer.text
    assert TOKEN not in answer.text
    if status == 401:
        assert answer.headers["www-authenticate"] == "Bearer"


def test_admin_reload_is_open_on_loopback_without_a_token(tmp_path: Path):
    with _client(tmp_path) as open_client:
        assert open_client.post("/admin/reload").status_code == 503  # tried: no champion


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.0.0.2", True),
        ("localhost", True),
        ("::1", True),
        ("[::1]", True),
        ("0.0.0.0", False),
        ("::", False),
        ("192.168.1.10", False),
        ("api.example.org", False),
    ],
)
def test_binds_beyond_loopback_need_a_token(host, loopback):
    assert is_loopback(host) is loopback
    check_exposure(host, SecretStr(TOKEN))
    if loopback:
        check_exposure(host, None)
        return
    for missing in (None, SecretStr("")):
        with pytest.raises(ExposureError, match="MILKPRICE_API_ADMIN_TOKEN"):
            check_exposure(host, missing)


def test_the_api_command_refuses_a_public_bind_without_a_token(tmp_path: Path):
    port = free_port()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "MILKPRICE_DATA_ROOT": str(tmp_path / "lake"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    milkprice = Path(sys.executable).parent / "milkprice"
    done = subprocess.run(
        [str(milkprice), "api", "--host", "0.0.0.0", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode != 0
    assert "MILKPRICE_API_ADMIN_TOKEN" in done.stderr + done.stdout
    assert "0.0.0.0" in done.stderr + done.stdout

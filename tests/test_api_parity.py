"""The API and the batch forecast give the same numbers for the same cut-off (real uvicorn)."""

from __future__ import annotations

import io
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pandas as pd
import pytest
from conftest import free_port, start_background, stop_process_group, training_env, wait_for_http

pytestmark = pytest.mark.e2e

MILKPRICE = str(Path(sys.executable).parent / "milkprice")


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from milkprice.pipeline.training_run import run_training
    from milkprice.settings import get_settings

    root = tmp_path_factory.mktemp("parity")
    env = training_env(root, None, "2024-01", "2025-03")
    settings = get_settings(
        data_root=env["MILKPRICE_DATA_ROOT"],
        mlflow_tracking_uri=env["MLFLOW_TRACKING_URI"],
        n_trials=0,
    )
    result = run_training(settings, "local", 2025, 3)
    assert result.promoted, result.reason
    return env


@pytest.fixture(scope="module")
def batch(setup: dict[str, str]) -> pd.DataFrame:
    """The batch forecast at the lake's newest date, read back from the parquet it wrote."""
    from milkprice.data.lake import Lake
    from milkprice.pipeline.forecast_run import forecast_keys, run_forecast
    from milkprice.settings import get_settings

    settings = get_settings(
        data_root=setup["MILKPRICE_DATA_ROOT"], mlflow_tracking_uri=setup["MLFLOW_TRACKING_URI"]
    )
    result = run_forecast(settings, "local")
    data = Lake.from_settings(settings, "local").get_object(
        forecast_keys(pd.Timestamp(result.cutoff)).parquet
    )
    assert data is not None
    return pd.read_parquet(io.BytesIO(data))


@pytest.fixture(scope="module")
def api(setup: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = free_port()
    log = tmp_path_factory.mktemp("api-log") / "api.log"
    process = start_background(
        [MILKPRICE, "api", "--port", str(port)], setup, Path(log.parent), log
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/livez", timeout_s=60)
        with httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(300):
                if client.get("/readyz").status_code == 200:
                    break
                time.sleep(0.2)
        yield url
    finally:
        stop_process_group(process)


def test_api_answers_every_batch_row_with_the_same_numbers(batch: pd.DataFrame, api: str) -> None:
    rows = [
        {
            "estado": r.Estado,
            "ciudad": r.Ciudad,
            "tipo": r.Tipo,
            "canal": r.Canal,
            "fecha": r.Fecha.date().isoformat(),
        }
        for r in batch.itertuples()
    ]
    assert 1000 < len(rows) <= 10_000
    response = httpx.post(f"{api}/predict", json={"rows": rows}, timeout=60)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_version"] == batch["model_version"].iloc[0]
    assert pd.Timestamp(body["cutoff"]) == pd.Timestamp(batch["cutoff"].iloc[0])
    answered = pd.DataFrame(body["predictions"])
    assert len(answered) == len(batch)
    for column in ("price", "lower_80", "upper_80", "lower_95", "upper_95"):
        # JSON floats round-trip exactly: the same code path gives the same bits.
        assert answered[column].tolist() == batch[column].tolist(), column
    assert answered["ciudad"].tolist() == batch["Ciudad"].tolist()
    assert answered["fecha"].tolist() == [d.date().isoformat() for d in batch["Fecha"]]

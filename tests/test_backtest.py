"""`milkprice backtest`: a rolling-origin evaluation whose files agree with a hand computation."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from milkprice.data.demo import write_demo_lake
from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.pipeline.backtest import backtest_keys, parse_models, run_backtest

MILKPRICE = str(Path(sys.executable).parent / "milkprice")
FIRST, LAST = Month(2025, 2), Month(2025, 3)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("backtest")
    write_demo_lake(Lake(str(root / "lake")), Month(2024, 1), LAST, seed=4)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("MILKPRICE_", "MLFLOW_"))},
        "MILKPRICE_DATA_ROOT": str(root / "lake"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "MILKPRICE_N_TRIALS": "1",
    }
    return env


def _milkprice(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MILKPRICE, "backtest", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.fixture(scope="module")
def cli_run(setup: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Two months, two at a time (separate processes), as a user runs it."""
    return _milkprice(setup, "--start", str(FIRST), "--end", str(LAST), "--jobs", "2")


def _read(setup: dict[str, str], key: str) -> bytes:
    data = Lake(setup["MILKPRICE_DATA_ROOT"]).get_object(key)
    assert data is not None, key
    return data


def test_command_prints_the_table_and_writes_every_file(setup, cli_run) -> None:
    assert cli_run.returncode == 0, cli_run.stderr
    assert "2025-02" in cli_run.stdout and "worst" in cli_run.stdout
    keys = backtest_keys(FIRST, LAST)
    assert _read(setup, keys["plot"]).startswith(b"\x89PNG")
    table = pd.read_csv(io.BytesIO(_read(setup, keys["table"])))
    assert table["month"].tolist() == ["2025-02", "2025-03", "mean", "worst"]
    for key in keys.values():
        assert key in cli_run.stdout


def test_table_agrees_with_a_hand_computation_from_the_rows(setup, cli_run) -> None:
    assert cli_run.returncode == 0, cli_run.stderr
    keys = backtest_keys(FIRST, LAST)
    rows = pd.read_parquet(io.BytesIO(_read(setup, keys["rows"])))
    table = pd.read_csv(io.BytesIO(_read(setup, keys["table"]))).set_index("month")
    for month, part in rows.groupby("month"):
        scored = part.dropna(subset=["actual"])
        error = scored["actual"] - scored["model"]  # the median: MAE
        mean_error = scored["actual"] - scored["model_mean"]  # the mean: RMSE
        naive_error = scored["actual"] - scored["naive"]
        inside = (scored["actual"] >= scored["lower_80"]) & (scored["actual"] <= scored["upper_80"])
        expected = {
            "model_rmse": np.sqrt(np.mean(mean_error**2)),
            "model_mae": np.mean(np.abs(error)),
            "naive_mae": np.mean(np.abs(naive_error)),
            "rmse_ratio": np.sqrt(np.mean(mean_error**2)) / np.sqrt(np.mean(naive_error**2)),
            "coverage_80": inside.mean(),
        }
        for column, value in expected.items():
            assert table.loc[month, column] == pytest.approx(value, abs=1e-4), (month, column)
    months = table.drop(index=["mean", "worst"])
    assert table.loc["mean", "mae_ratio"] == pytest.approx(months["mae_ratio"].mean(), abs=1e-4)
    assert table.loc["worst", "mae_ratio"] == pytest.approx(months["mae_ratio"].max(), abs=1e-4)


def test_mlflow_run_holds_the_summary_and_the_files(setup, cli_run) -> None:
    assert cli_run.returncode == 0, cli_run.stderr
    client = MlflowClient(tracking_uri=setup["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("milk-price")
    (run,) = client.search_runs([experiment.experiment_id], filter_string="tags.kind = 'backtest'")
    assert run.info.run_name == f"backtest-{FIRST}..{LAST}"
    assert 0 < run.data.metrics["mean_rmse_ratio"] <= run.data.metrics["worst_rmse_ratio"]
    names = {a.path for a in client.list_artifacts(run.info.run_id, "backtest")}
    assert names == {"backtest/table.csv", "backtest/forecasts.parquet", "backtest/ratios.png"}


def test_one_process_gives_the_same_table_as_two(setup, cli_run) -> None:
    assert cli_run.returncode == 0, cli_run.stderr
    lake = Lake(setup["MILKPRICE_DATA_ROOT"])
    report = run_backtest(lake, [FIRST, LAST], seed=0, n_trials=1, jobs=1)
    here = report.table().set_index("month")
    there = pd.read_csv(io.BytesIO(_read(setup, backtest_keys(FIRST, LAST)["table"])))
    there = there.set_index("month")
    for column in ("model_rmse", "rmse_ratio", "mae_ratio", "coverage_95"):
        assert np.allclose(here[column].astype(float), there[column], atol=1e-4), column
    assert [m.training_months for m in report.months] == [12, 12]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--start", "2025-02", "--end", "2025-03", "--models", "model,prophet"], "prophet"),
        (["--start", "2025-03", "--end", "2025-02"], "before --start"),
        (["--start", "2025-13", "--end", "2025-14"], "--start"),
        (["--start", "2025-03", "--end", "2025-05"], "2025-04"),
    ],
)
def test_bad_input_is_one_clear_error(setup, args: list[str], message: str) -> None:
    result = _milkprice(setup, *args)
    assert result.returncode == 1
    assert message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_naive_is_always_scored() -> None:
    assert parse_models("model") == ("model", "naive")
    assert parse_models("mean,naive") == ("mean", "naive")
    with pytest.raises(ValueError, match="choose from model, naive, mean"):
        parse_models("arima")

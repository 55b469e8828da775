"""The ``milkprice`` command line, driven as a user would (in process and as the real script)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sniim_workbook import write_leche_workbook
from typer.testing import CliRunner

from milkprice.data.demo import generate_demo_frame, write_demo_lake
from milkprice.data.lake import Lake
from milkprice.months import Month
from milkprice.settings import get_settings
from milkprice_cli.data import app

runner = CliRunner()


@pytest.fixture
def lake_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "lake"
    monkeypatch.setenv("MILKPRICE_DATA_ROOT", str(root))
    monkeypatch.delenv("MILKPRICE_SOURCE", raising=False)
    monkeypatch.delenv("MILKPRICE_SEED", raising=False)
    return root


def test_demo_then_ls(lake_root):
    result = runner.invoke(app, ["data", "demo", "--start", "2024-01", "--end", "2024-03"])
    assert result.exit_code == 0, result.output
    assert Lake(str(lake_root)).list_months() == [Month(2024, 1), Month(2024, 2), Month(2024, 3)]
    listed = runner.invoke(app, ["data", "ls"])
    assert listed.exit_code == 0, listed.output
    for month in ("2024-01", "2024-02", "2024-03"):
        assert month in listed.stdout
    assert "2024-04" not in listed.stdout
    assert "216" in listed.stdout  # series column


def test_demo_if_empty_leaves_a_filled_lake_alone(lake_root):
    runner.invoke(app, ["data", "demo", "--start", "2024-01", "--end", "2024-01", "--seed", "1"])
    before = Lake(str(lake_root)).read_bytes(Month(2024, 1))
    result = runner.invoke(
        app, ["data", "demo", "--start", "2024-01", "--end", "2024-01", "--seed", "2", "--if-empty"]
    )
    assert result.exit_code == 0, result.output
    assert "nothing written" in result.stdout
    assert Lake(str(lake_root)).read_bytes(Month(2024, 1)) == before


def test_ls_of_an_empty_lake_says_what_to_do(lake_root):
    result = runner.invoke(app, ["data", "ls"])
    assert result.exit_code == 0
    assert "no partitions" in result.stdout and "milkprice data demo" in result.stdout


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--start", "2024-13"], ["--start", "2024-13"]),
        (["--end", "march"], ["--end", "march"]),
        (["--start", "2024-05", "--end", "2024-04"], ["--end", "2024-04", "before"]),
    ],
)
def test_bad_months_exit_1_naming_the_option(lake_root, args, expected):
    result = runner.invoke(app, ["data", "demo", *args])
    assert result.exit_code == 1
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.output
    assert not lake_root.exists()


def test_ls_s3_with_a_missing_bucket_exits_1_naming_it(s3_env, monkeypatch):
    monkeypatch.setenv("S3_BUCKET", "no-such-milk-bucket")
    result = runner.invoke(app, ["data", "ls", "--source", "s3"])
    assert result.exit_code == 1
    assert "no-such-milk-bucket" in result.stderr
    assert "Traceback" not in result.output


def test_push_to_moto(lake_root, s3_env):
    write_demo_lake(Lake(str(lake_root)), Month(2024, 1), Month(2024, 2), seed=4)
    first = runner.invoke(app, ["data", "push"])
    assert first.exit_code == 0, first.output
    assert "pushed 2, skipped 0" in first.stdout
    remote = Lake.from_settings(get_settings(), "s3")
    assert remote.list_months() == [Month(2024, 1), Month(2024, 2)]
    second = runner.invoke(app, ["data", "push"])
    assert second.exit_code == 0, second.output
    assert "pushed 0, skipped 2" in second.stdout
    listed = runner.invoke(app, ["data", "ls", "--source", "s3"])
    assert listed.exit_code == 0 and "2024-02" in listed.stdout


def test_ingest_a_publication_and_print_its_report(lake_root, tmp_path):
    rows = generate_demo_frame(Month(2025, 4), Month(2025, 4), seed=2)
    dates = sorted(rows["Fecha"].unique())[:2]
    workbook = write_leche_workbook(rows[rows["Fecha"].isin(dates)], tmp_path / "leche.xlsx")
    result = runner.invoke(app, ["data", "ingest", str(workbook)])
    assert result.exit_code == 0, result.output
    assert "rows_parsed" in result.stdout and "2025-04" in result.stdout
    frame, _ = Lake(str(lake_root)).read_month(Month(2025, 4))
    assert sorted(frame["Fecha"].unique()) == dates


def test_ingest_of_a_file_that_is_not_a_publication_exits_1(lake_root, tmp_path):
    bogus = tmp_path / "notes.xlsx"
    bogus.write_text("not a workbook")
    result = runner.invoke(app, ["data", "ingest", str(bogus)])
    assert result.exit_code == 1
    assert "notes.xlsx" in result.stderr and "Traceback" not in result.output
    missing = runner.invoke(app, ["data", "ingest", str(tmp_path / "absent.xlsx")])
    assert missing.exit_code == 1 and "absent.xlsx" in missing.stderr
    assert not lake_root.exists()


def test_ingest_without_the_ingest_module_exits_1(lake_root, monkeypatch):
    monkeypatch.setitem(sys.modules, "milkprice.data.ingest", None)  # import raises ImportError
    result = runner.invoke(app, ["data", "ingest", "leche.xlsx"])
    assert result.exit_code == 1
    assert "ingestion is not available" in result.stderr


def test_installed_console_script(lake_root):
    write_demo_lake(Lake(str(lake_root)), Month(2025, 3), Month(2025, 4), seed=9)
    script = Path(sys.executable).with_name("milkprice")
    assert script.exists(), f"console script not installed at {script}; run pip install -e ."
    env = {**os.environ, "MILKPRICE_DATA_ROOT": str(lake_root)}
    listed = subprocess.run(
        [str(script), "data", "ls"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr
    assert "2025-03" in listed.stdout and "2025-04" in listed.stdout
    bad = subprocess.run(
        [str(script), "data", "demo", "--start", "2024-13"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1
    assert "--start" in bad.stderr and "Traceback" not in bad.stderr

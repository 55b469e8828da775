"""The `real_data_dir` fixture as a newcomer, a developer and CI meet it (pytest in a subprocess).

A throwaway test folder re-exports the project's own fixture (loaded from tests/conftest.py)
and holds two tests that use it; pytest runs there with a chosen environment. Without the data
each test is skipped with one line naming the folder and the variable, unless CI or
MILKPRICE_REQUIRE_REAL_DATA asks for the data, which turns the same absence into a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")
_LOADER = f"""
import importlib.util

_spec = importlib.util.spec_from_file_location("milkprice_tests_conftest", {str(CONFTEST)!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
real_data_dir = _module.real_data_dir
"""
_TESTS = """
def test_reads_the_data(real_data_dir):
    assert (real_data_dir / "monthly").is_dir()


def test_second_user(real_data_dir):
    assert real_data_dir.name
"""
_FLAGS = ("CI", "MILKPRICE_REQUIRE_REAL_DATA", "MILKPRICE_REAL_DATA")


def _run(folder: Path, data: Path, **flags: str) -> subprocess.CompletedProcess[str]:
    project = folder / "project"
    project.mkdir(exist_ok=True)
    (project / "conftest.py").write_text(_LOADER)
    (project / "test_uses_real_data.py").write_text(_TESTS)
    env = {key: value for key, value in os.environ.items() if key not in _FLAGS}
    env.update({"MILKPRICE_REAL_DATA": str(data), **flags})
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-ra", "-p", "no:cacheprovider", str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def _lines_naming(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


@pytest.mark.parametrize("flags", [{}, {"CI": "false"}, {"MILKPRICE_REQUIRE_REAL_DATA": "0"}])
def test_missing_data_skips_with_one_line_saying_where(tmp_path: Path, flags: dict[str, str]):
    absent = tmp_path / "no-such-sniim"
    done = _run(tmp_path, absent, **flags)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 skipped" in output
    # pytest reports a fixture's skip at each test's own location: one line per test, and
    # each is the same single line saying where the data goes.
    lines = _lines_naming(output, "real SNIIM data not found")
    assert len(lines) == 2
    reasons = {line.split(": ", 1)[1] for line in lines}
    assert len(reasons) == 1
    [reason] = reasons
    assert all(line.startswith("SKIPPED [1] test_uses_real_data.py:") for line in lines)
    assert f"not found at {absent}:" in reason and "set MILKPRICE_REAL_DATA" in reason


@pytest.mark.parametrize(
    "flags", [{"CI": "true"}, {"CI": "1"}, {"MILKPRICE_REQUIRE_REAL_DATA": "1"}]
)
def test_missing_data_fails_under_ci_or_when_required(tmp_path: Path, flags: dict[str, str]):
    absent = tmp_path / "no-such-sniim"
    done = _run(tmp_path, absent, **flags)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "2 errors" in output and "skipped" not in output
    assert f"real SNIIM data not found at {absent}" in output
    [(name, value)] = flags.items()
    assert f"(required: {name}={value})" in output


@pytest.mark.parametrize("flags", [{}, {"CI": "true", "MILKPRICE_REQUIRE_REAL_DATA": "1"}])
def test_present_data_runs_the_tests(tmp_path: Path, flags: dict[str, str]):
    data = tmp_path / "sniim"
    (data / "monthly").mkdir(parents=True)
    done = _run(tmp_path, data, **flags)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "2 passed" in output
    assert not _lines_naming(output, "real SNIIM data not found")


def test_ci_script_requires_the_real_data():
    script = (CONFTEST.parents[1] / ".ci" / "run").read_text()
    assert "export MILKPRICE_REQUIRE_REAL_DATA=1" in script
    assert script.index("export MILKPRICE_REQUIRE_REAL_DATA=1") < script.rindex("\nmake test")

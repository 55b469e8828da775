"""The set-up step that installs the Debian packages the tests and the cluster stack drive."""

from __future__ import annotations

import subprocess

from conftest import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "system-packages.sh"


def _run(*packages: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *packages], capture_output=True, text=True, check=False, timeout=1800
    )


def test_an_unknown_package_is_refused_by_name():
    done = _run("chromium", "no-such-thing")
    assert done.returncode == 2
    assert "unknown package 'no-such-thing'" in done.stderr


def test_packages_already_there_are_left_alone():
    # `make test` ran the step first, so both are present and nothing is installed again.
    done = _run("chromium", "postgresql")
    assert done.returncode == 0, done.stderr
    assert "installing" not in done.stdout + done.stderr
    assert "missing" not in done.stderr


def test_make_test_and_the_cluster_stack_run_the_step():
    makefile = (REPO_ROOT / "Makefile").read_text()
    assert "test: .venv system-packages" in makefile
    assert "scripts/system-packages.sh postgresql" in makefile

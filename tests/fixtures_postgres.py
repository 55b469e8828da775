"""A private PostgreSQL cluster on loopback (initdb in a temporary folder).

Built with the project's own :mod:`stack.postgres`, as ``make up STACK=cluster`` does:
the Debian package comes from the set-up step (``make system-packages``), the cluster runs as the ``postgres`` OS user when
the tests run as root, and the server is stopped and its folder removed at the end.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port

from stack.postgres import (
    STOP_SIGNAL,
    ensure_postgresql,
    init_cluster,
    owned_dir,
    run_as,
    server_command,
    wait_ready,
)

_READY_TIMEOUT_S = 180


def _stop(process: subprocess.Popen) -> None:
    """Fast shutdown (SIGINT), then SIGKILL if it hangs."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(STOP_SIGNAL)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture(scope="session")
def postgres_port() -> Iterator[int]:
    """Port of a real PostgreSQL server on 127.0.0.1 (superuser ``postgres``, trust auth).

    The cluster lives in a fresh folder under the system temp folder, not under pytest's
    ``tmp_path`` (mode 0700, owned by root: the ``postgres`` OS user could not enter it).
    """
    ensure_postgresql()
    base = owned_dir(Path(tempfile.mkdtemp(prefix="milkprice-pg-")))
    data_dir = base / "data"
    socket_dir = owned_dir(base / "run")
    port = free_port()
    log_path = base / "postgres.log"
    process = None
    try:
        init_cluster(data_dir)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                server_command(data_dir, port, socket_dir),
                cwd=base,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                **run_as(),
            )
        try:
            wait_ready(port, _READY_TIMEOUT_S)
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}\n{log_path.read_text()[-3000:]}") from exc
        yield port
    finally:
        if process is not None:
            _stop(process)
        shutil.rmtree(base, ignore_errors=True)

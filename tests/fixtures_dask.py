"""A real Dask scheduler and workers on loopback.

The session fixture ``dask_scheduler_address`` starts ``dask scheduler`` and two ``dask worker``
processes (one process, one thread each: the same coarse, one-month-at-a-time tasks a 2-machine
cluster would run), each in its own process group, waits until the scheduler sees both workers,
yields the scheduler's address and stops exactly those processes at the end.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT, free_port, start_background, stop_process_group

__all__ = ["DASK_WORKERS", "dask_scheduler_address", "start_dask_cluster", "stop_dask_cluster"]

DASK_WORKERS = 2
_READY_TIMEOUT_S = 240.0


def _dask_command() -> str:
    return str(Path(sys.executable).parent / "dask")


def start_dask_cluster(
    folder: Path, workers: int = DASK_WORKERS, env: dict[str, str] | None = None
) -> tuple[str, list[subprocess.Popen]]:
    """Start a scheduler and ``workers`` single-threaded workers; return address and processes.

    Logs go to ``folder`` (scheduler.log, worker-N.log); the caller stops the processes with
    :func:`stop_dask_cluster`, also when waiting for the workers fails.
    """
    from distributed import Client

    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    environment = {**os.environ, **(env or {})}
    dask = _dask_command()
    processes = [
        start_background(
            [dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
            environment,
            REPO_ROOT,
            folder / "scheduler.log",
        )
    ]
    try:
        for index in range(workers):
            space = folder / f"worker-{index}"
            space.mkdir(parents=True, exist_ok=True)
            command = [
                dask, "worker", address, "--nworkers", "1", "--nthreads", "1",
                "--host", "127.0.0.1", "--no-dashboard", "--name", f"worker-{index}",
                "--local-directory", str(space),
            ]  # fmt: skip
            processes.append(
                start_background(command, environment, REPO_ROOT, folder / f"worker-{index}.log")
            )
        with Client(address, timeout=_READY_TIMEOUT_S) as client:
            client.wait_for_workers(workers, timeout=_READY_TIMEOUT_S)
    except BaseException:
        stop_dask_cluster(processes)
        raise
    return address, processes


def stop_dask_cluster(processes: list[subprocess.Popen]) -> None:
    """Stop the workers, then the scheduler (each process group, SIGTERM then SIGKILL)."""
    for process in reversed(processes):
        stop_process_group(process)


@pytest.fixture(scope="session")
def dask_scheduler_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``tcp://127.0.0.1:PORT`` of a real scheduler with two workers, stopped after the session."""
    folder = tmp_path_factory.mktemp("dask")
    address, processes = start_dask_cluster(folder)
    try:
        yield address
    finally:
        stop_dask_cluster(processes)

"""A private PostgreSQL cluster on loopback, made with ``initdb`` in a folder of ours.

The cluster topology (issue G) keeps the Prefect server's and MLflow's stores in PostgreSQL. In
tests and in ``make up STACK=cluster`` the server is not a system service but a private cluster in
a state or temporary folder, on a free port, the way ``pytest-postgresql`` does it: ``initdb``
once, then ``postgres`` in the foreground under a process manager (supervisord, or ``Popen``).

PostgreSQL refuses to run as root. When we are root, :func:`pg_os_user` names the OS user that
runs ``initdb`` and ``postgres`` (``postgres``, which the Debian package creates); the data and
socket folders must belong to it (:func:`owned_dir`) and :func:`run_as` gives the ``Popen``
keyword arguments that switch to it. Authentication is ``trust``, and the server listens on
127.0.0.1 only: a private cluster for this machine's processes, not a shared service.

Stop the server with SIGINT (PostgreSQL's "fast" shutdown): SIGTERM is a "smart" shutdown that
waits for every client (a Prefect server's connection pool) to disconnect first.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_delay, wait_fixed

__all__ = [
    "PG_SUPERUSER",
    "STOP_SIGNAL",
    "create_database",
    "ensure_postgresql",
    "find_pg_bin",
    "init_cluster",
    "owned_dir",
    "pg_os_user",
    "run_as",
    "server_command",
    "url",
    "wait_ready",
]

PG_SUPERUSER = "postgres"
STOP_SIGNAL = signal.SIGINT
_DEBIAN_ROOT = Path("/usr/lib/postgresql")
_OS_USER = "postgres"
_HOST = "127.0.0.1"
_INITDB_TIMEOUT_S = 300


def _has_server(bin_dir: Path) -> bool:
    return (bin_dir / "initdb").is_file() and (bin_dir / "postgres").is_file()


def _major(bin_dir: Path) -> tuple[int, ...]:
    """Version of ``/usr/lib/postgresql/<version>/bin`` as numbers (15 -> (15,))."""
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name)) or (0,)


def find_pg_bin() -> Path | None:
    """The PostgreSQL server's bin folder (the newest Debian one, else ``pg_config --bindir``).

    Returns:
        The folder holding ``initdb`` and ``postgres``, or ``None`` when there is none.
    """
    debian = [path for path in _DEBIAN_ROOT.glob("*/bin") if _has_server(path)]
    if debian:
        return max(debian, key=_major)
    pg_config = shutil.which("pg_config")
    if pg_config:
        found = subprocess.run(
            [pg_config, "--bindir"], capture_output=True, text=True, check=False, timeout=30
        )
        bin_dir = Path(found.stdout.strip())
        if found.returncode == 0 and _has_server(bin_dir):
            return bin_dir
    on_path = shutil.which("initdb")
    if on_path and _has_server(Path(on_path).parent):
        return Path(on_path).parent
    return None


def ensure_postgresql() -> Path:
    """The PostgreSQL bin folder, or a clear error saying how to install the server.

    Nothing is installed from here: the set-up step does that (``make system-packages``, which
    ``make test`` and ``make up STACK=cluster`` run).

    Raises:
        RuntimeError: no PostgreSQL server; the message says what to install.
    """
    found = find_pg_bin()
    if found is None:
        raise RuntimeError(
            "PostgreSQL server binaries (initdb, postgres) not found under "
            f"{_DEBIAN_ROOT}/*/bin nor by `pg_config --bindir`: run `make system-packages` "
            "(Debian: `sudo apt-get install -y postgresql`; elsewhere put its bin folder, with "
            "initdb and postgres, on PATH)"
        )
    return found


def pg_os_user() -> str | None:
    """The OS user that runs ``initdb`` and ``postgres`` when we are root, else ``None``.

    PostgreSQL refuses to start as root; the Debian package creates the ``postgres`` user.
    """
    return _OS_USER if os.geteuid() == 0 else None


def run_as() -> dict[str, Any]:
    """``subprocess.Popen``/``run`` keyword arguments that run a command as :func:`pg_os_user`.

    Empty when we are not root (the command runs as ourselves).
    """
    user = pg_os_user()
    if user is None:
        return {}
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        raise RuntimeError(
            f"running as root, PostgreSQL must run as the OS user {user!r}, which does not "
            "exist: install the Debian package `postgresql` (it creates the user) or "
            f"`useradd --system {user}`"
        ) from None
    return {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}


def _check_reachable(path: Path, user: str) -> None:
    """Fail early, naming the folder, when the OS ``user`` cannot reach ``path``."""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for folder in [*reversed(path.resolve().parents), path.resolve()]:
        mode = folder.stat()
        reachable = (
            mode.st_uid == entry.pw_uid
            or mode.st_mode & stat.S_IXOTH
            or (mode.st_mode & stat.S_IXGRP and mode.st_gid in groups)
        )
        if not reachable:
            raise RuntimeError(
                f"the OS user {user!r} cannot enter {folder} (mode "
                f"{stat.filemode(mode.st_mode)}), so PostgreSQL cannot use {path}: put the "
                "cluster in a folder every user can traverse (e.g. under /tmp or the project)"
            )


def owned_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and, as root, hand it to :func:`pg_os_user`.

    For the data and socket folders: PostgreSQL writes there as its own user.

    Raises:
        RuntimeError: the OS user could not reach ``path``; the message names the folder.
    """
    path.mkdir(parents=True, exist_ok=True)
    kwargs = run_as()
    user = pg_os_user()
    if kwargs and user:
        os.chown(path, kwargs["user"], kwargs["group"])
        _check_reachable(path, user)
    return path


def init_cluster(data_dir: Path) -> None:
    """``initdb`` a cluster in ``data_dir`` unless one is there (trust auth, UTF8, ``postgres``).

    Raises:
        RuntimeError: ``data_dir`` holds something that is not a cluster, or ``initdb`` failed
            (its output is in the message; it removes what it wrote).
    """
    if (data_dir / "PG_VERSION").is_file():
        return
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise RuntimeError(
            f"{data_dir} is not empty and holds no PostgreSQL cluster (no PG_VERSION): "
            "remove it or choose another folder"
        )
    bin_dir = ensure_postgresql()
    owned_dir(data_dir)
    command = [
        str(bin_dir / "initdb"),
        "--pgdata",
        str(data_dir),
        "--username",
        PG_SUPERUSER,
        "--encoding",
        "UTF8",
        "--locale",
        "C",
        "--auth-host",
        "trust",
        "--auth-local",
        "trust",
    ]
    # cwd: initdb looks up the current folder, which root's home would hide from the OS user.
    done = subprocess.run(
        command,
        cwd=data_dir,
        capture_output=True,
        text=True,
        check=False,
        timeout=_INITDB_TIMEOUT_S,
        **run_as(),
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"initdb of {data_dir} failed (exit {done.returncode}): "
            f"{(done.stderr or done.stdout).strip()[-2000:]}"
        )


def server_command(data_dir: Path, port: int, socket_dir: Path) -> list[str]:
    """The foreground ``postgres`` command serving ``data_dir`` on 127.0.0.1:``port``.

    Run it as :func:`pg_os_user` (``Popen(..., **run_as())``, or supervisord's ``user=``) and stop
    it with :data:`STOP_SIGNAL`. ``socket_dir`` holds the Unix socket (see :func:`owned_dir`).
    """
    bin_dir = find_pg_bin() or ensure_postgresql()
    return [
        str(bin_dir / "postgres"),
        "-D",
        str(data_dir),
        "-p",
        str(port),
        "-h",
        _HOST,
        "-k",
        str(socket_dir),
    ]


def _connect(port: int, database: str = "postgres", timeout_s: int = 5) -> Any:
    import psycopg2  # noqa: PLC0415 - the [cluster] extra; only the cluster stack needs it

    return psycopg2.connect(
        host=_HOST, port=port, user=PG_SUPERUSER, dbname=database, connect_timeout=timeout_s
    )


def wait_ready(port: int, timeout_s: float) -> None:
    """Wait until the server on 127.0.0.1:``port`` answers a query.

    Raises:
        TimeoutError: it did not within ``timeout_s``; the message has the last error.
    """
    import psycopg2  # noqa: PLC0415

    def answer() -> None:
        with _connect(port, timeout_s=2) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        connection.close()

    # A refused or not-yet-accepting server is an OperationalError: ask again; anything else
    # (a wrong driver, a bug) ends the wait at once.
    answering = Retrying(
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.2),
        retry=retry_if_exception_type(psycopg2.OperationalError),
    )
    try:
        answering(answer)
    except RetryError as exc:
        last = exc.last_attempt.exception()
        raise TimeoutError(
            f"PostgreSQL on {_HOST}:{port} did not answer within {timeout_s}s: {last}"
        ) from None


def create_database(port: int, name: str) -> None:
    """Create database ``name`` on the server at 127.0.0.1:``port`` unless it exists."""
    import psycopg2  # noqa: PLC0415
    from psycopg2 import errors, sql  # noqa: PLC0415

    connection = _connect(port)
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
            if cursor.fetchone():
                return
            try:
                cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            except (errors.DuplicateDatabase, psycopg2.errors.UniqueViolation):
                return  # another process created it between our check and our CREATE
    finally:
        connection.close()


def url(port: int, database: str, driver: str = "postgresql+psycopg2") -> str:
    """SQLAlchemy URL of ``database`` on 127.0.0.1:``port`` as ``postgres`` (trust auth).

    ``url(port, "prefect", "postgresql+asyncpg")`` for the Prefect server,
    ``url(port, "mlflow")`` for MLflow's tracking store. The default names psycopg2 (the
    ``[cluster]`` extra) because SQLAlchemy 2.1 reads a bare ``postgresql://`` as psycopg 3.
    ``driver="postgresql"`` gives the plain libpq URI (``psql``, ``psycopg2.connect``).
    """
    return f"{driver}://{PG_SUPERUSER}@{_HOST}:{port}/{database}"

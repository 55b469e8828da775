"""The private PostgreSQL cluster: binaries found, a real server, databases made idempotently."""

from __future__ import annotations

import os
import re
import subprocess

import psycopg2
import pytest

from stack.postgres import (
    create_database,
    ensure_postgresql,
    find_pg_bin,
    init_cluster,
    owned_dir,
    pg_os_user,
    server_command,
    url,
)


def test_missing_postgresql_names_the_set_up_step(monkeypatch):
    import stack.postgres

    monkeypatch.setattr(stack.postgres, "find_pg_bin", lambda: None)
    with pytest.raises(RuntimeError, match=r"make system-packages.*apt-get install -y postgresql"):
        stack.postgres.ensure_postgresql()


def test_ensure_postgresql_finds_the_server_binaries():
    bin_dir = ensure_postgresql()
    assert bin_dir == find_pg_bin()
    for program in ("initdb", "postgres"):
        assert os.access(bin_dir / program, os.X_OK), program
    version = subprocess.run(
        [str(bin_dir / "postgres"), "--version"], capture_output=True, text=True, check=True
    )
    assert "PostgreSQL" in version.stdout


def test_server_command_and_urls_name_loopback_and_the_port(tmp_path):
    command = server_command(tmp_path / "data", 5999, tmp_path / "run")
    assert command[0].endswith("/postgres")
    assert command[1:] == [
        "-D",
        str(tmp_path / "data"),
        "-p",
        "5999",
        "-h",
        "127.0.0.1",
        "-k",
        str(tmp_path / "run"),
    ]
    assert url(5999, "prefect", "postgresql+asyncpg") == (
        "postgresql+asyncpg://postgres@127.0.0.1:5999/prefect"
    )
    assert url(5999, "mlflow") == "postgresql+psycopg2://postgres@127.0.0.1:5999/mlflow"
    assert url(5999, "x", "postgresql") == "postgresql://postgres@127.0.0.1:5999/x"


def test_init_cluster_refuses_a_folder_that_is_not_a_cluster(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError, match=r"not empty and holds no PostgreSQL cluster"):
        init_cluster(folder)
    assert (folder / "notes.txt").read_text() == "mine"


@pytest.mark.skipif(pg_os_user() is None, reason="only root hands folders to another user")
def test_owned_dir_names_a_folder_the_postgres_user_cannot_enter(tmp_path):
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    with pytest.raises(RuntimeError, match=re.escape(str(private))):
        owned_dir(private / "pg" / "data")


@pytest.mark.e2e
def test_the_fixture_serves_a_database_created_idempotently(postgres_port):
    import sqlalchemy

    create_database(postgres_port, "milk_test")
    create_database(postgres_port, "milk_test")  # a second call is a no-op
    connection = psycopg2.connect(url(postgres_port, "milk_test", "postgresql"))
    try:
        with connection, connection.cursor() as cursor:
            cursor.execute("CREATE TABLE prices (month text PRIMARY KEY, price numeric)")
            cursor.execute("INSERT INTO prices VALUES ('2025-01', 27.5), ('2025-02', 28.0)")
            cursor.execute("SELECT current_database(), current_user, sum(price) FROM prices")
            assert cursor.fetchone() == ("milk_test", "postgres", pytest.approx(55.5))
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = 'milk_test'")
            assert cursor.fetchone() == (1,)
    finally:
        connection.close()
    # The default URL is the one MLflow's SQLAlchemy store opens.
    engine = sqlalchemy.create_engine(url(postgres_port, "milk_test"))
    try:
        with engine.connect() as conn:
            assert conn.execute(sqlalchemy.text("SELECT count(*) FROM prices")).scalar() == 2
    finally:
        engine.dispose()

"""Locks around MLflow writes: one machine (a file lock) or every machine (the store's own).

Two needs, two locks:

- :func:`mlflow_lock` serializes *writes* to a local store (an SQLite file, a ``file:`` folder),
  which does not take concurrent writers well ("database is locked"). A database server or a
  tracking server takes them, so the lock is then a no-op: serializing every run's logging
  across a pool of workers would only slow them down.
- :func:`registry_lock` makes a *read-decide-write* on one registered model (register a
  version, move the ``champion`` alias) exclusive for every process that shares the store,
  on any host:

  - ``sqlite:``/``file:`` stores: the file lock (one machine is all such a store serves);
  - ``postgresql://`` stores: a PostgreSQL advisory lock on the tracking database, released
    by the server when the holder's connection ends, so a crashed worker never leaves it held;
  - ``http(s)://`` tracking servers (and other databases): workers know only the server's
    URL, and MLflow's API has no conditional write (an alias is set, not compared-and-set).
    Its one atomic test-and-set is that a registered model's name is unique in the server's
    database: creating the entry ``<model>.promotion-lock`` succeeds for exactly one process
    at a time. That entry is a lease: it names its owner and an expiry, its owner deletes it
    when done, and a lease left behind by a crashed worker is taken over once expired.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from filelock import FileLock
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

__all__ = [
    "LOCK_SUFFIX",
    "StoreKind",
    "lease_lock",
    "mlflow_lock",
    "registry_lock",
    "store_kind",
]

LOCK_SUFFIX = ".promotion-lock"
LOCK_TIMEOUT_S = 600.0
LEASE_S = 900.0  # longer than any promotion (re-scoring the champion takes seconds to minutes)
_OWNER_TAG = "milkprice.lock.owner"
_EXPIRES_TAG = "milkprice.lock.expires_at"
_POLL_S = (0.1, 0.5)

StoreKind = Literal["local", "postgresql", "server"]

_logger = logging.getLogger(__name__)


def store_kind(tracking_uri: str) -> StoreKind:
    """``local`` (SQLite file, folder), ``postgresql`` (the database itself) or ``server``.

    ``server``: an HTTP tracking server, or a database other than PostgreSQL; both take
    concurrent writers and are reached only through MLflow's API.
    """
    scheme = urlsplit(tracking_uri).scheme.split("+", 1)[0].lower()
    if scheme in {"postgresql", "postgres"}:
        return "postgresql"
    if scheme in {"http", "https", "mysql", "mssql", "databricks"}:
        return "server"
    return "local"


def _file_lock(tracking_uri: str) -> FileLock:
    digest = hashlib.sha256(tracking_uri.encode()).hexdigest()[:16]
    return FileLock(Path(tempfile.gettempdir()) / f"milkprice-mlflow-{digest}.lock")


@contextmanager
def _local_lock(tracking_uri: str, timeout_s: float) -> Iterator[None]:
    with _file_lock(tracking_uri).acquire(timeout=timeout_s):
        yield


def mlflow_lock(
    tracking_uri: str, timeout_s: float = LOCK_TIMEOUT_S
) -> AbstractContextManager[None]:
    """Serialize writes to a local store across threads and processes of this machine.

    Parallel backfill runs share the SQLite store: writing under one file lock keeps SQLite
    from "database is locked". A no-op for database and HTTP stores, which take concurrent
    writers. Not re-entrant: never nest it, nor nest it with :func:`registry_lock`.
    """
    if store_kind(tracking_uri) == "local":
        return _local_lock(tracking_uri, timeout_s)
    return nullcontext()


def registry_lock(
    tracking_uri: str, model_name: str, timeout_s: float = LOCK_TIMEOUT_S
) -> AbstractContextManager[None]:
    """Exclusive access to ``model_name``'s registry entries for every process of the store.

    See the module docstring for the lock each kind of store gets. For a local store this is
    :func:`mlflow_lock` (writes inside need it), so do not nest the two.

    Raises:
        TimeoutError: the lock was not free within ``timeout_s``; the message names its holder
            when known.
    """
    kind = store_kind(tracking_uri)
    if kind == "postgresql":
        return _advisory_lock(tracking_uri, model_name, timeout_s)
    if kind == "server":
        return lease_lock(tracking_uri, model_name, timeout_s)
    return _local_lock(tracking_uri, timeout_s)


def _advisory_key(model_name: str) -> int:
    """A signed 64-bit key for ``pg_advisory_lock``, the same on every host."""
    digest = hashlib.sha256(f"milkprice-registry:{model_name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def _advisory_lock(tracking_uri: str, model_name: str, timeout_s: float) -> Iterator[None]:
    import sqlalchemy  # noqa: PLC0415 - MLflow's own dependency; only PostgreSQL stores need it
    from sqlalchemy.pool import NullPool  # noqa: PLC0415

    key = _advisory_key(model_name)
    engine = sqlalchemy.create_engine(tracking_uri, poolclass=NullPool)
    try:
        # Autocommit: the lock belongs to the session, and no transaction stays open meanwhile.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            try_lock = sqlalchemy.text("SELECT pg_try_advisory_lock(:key)")
            deadline = time.monotonic() + timeout_s
            while not connection.execute(try_lock, {"key": key}).scalar():
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"the registry lock of {model_name!r} (PostgreSQL advisory lock {key} "
                        f"on {_without_password(tracking_uri)}) was not free within {timeout_s}s"
                    )
                time.sleep(random.uniform(*_POLL_S))
            try:
                yield
            finally:
                connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    finally:
        engine.dispose()


def _without_password(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


def _lease_holder(client: MlflowClient, name: str) -> tuple[str, float] | None:
    """Owner and expiry (epoch s) of the lease entry, ``None`` when there is none."""
    try:
        entry = client.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return entry.tags.get(_OWNER_TAG, "?"), float(entry.tags.get(_EXPIRES_TAG, "0") or 0)


def _delete_lease(client: MlflowClient, name: str) -> None:
    try:
        client.delete_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise


def _acquire_lease(
    client: MlflowClient, name: str, owner: str, timeout_s: float, lease_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client.create_registered_model(
                name,
                tags={_OWNER_TAG: owner, _EXPIRES_TAG: f"{time.time() + lease_s:.3f}"},
                description=f"milkprice: held by {owner} while it registers or promotes a "
                f"version of {name.removesuffix(LOCK_SUFFIX)!r}; deleted when it is done.",
            )
            return
        except MlflowException as exc:
            # Already exists: someone holds it. Does not exist: it was deleted while the
            # server reported the clash. Either way, look again.
            if exc.error_code not in {"RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST"}:
                raise
        holder = _lease_holder(client, name)
        if holder is not None:
            holder_owner, expires_at = holder
            if holder_owner == owner:  # our create went through; its answer was lost
                return
            if expires_at < time.time():
                _logger.warning("taking over %s: the lease of %s expired", name, holder_owner)
                _delete_lease(client, name)
                continue
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the registry lock {name!r} is held by {holder_owner} (lease until "
                    f"{time.ctime(expires_at)}) and was not freed within {timeout_s}s; if that "
                    "process is gone, delete the registered model "
                    f"{name!r} in the MLflow UI"
                )
        time.sleep(random.uniform(*_POLL_S))


@contextmanager
def lease_lock(
    tracking_uri: str,
    model_name: str,
    timeout_s: float = LOCK_TIMEOUT_S,
    lease_s: float = LEASE_S,
) -> Iterator[None]:
    """The registry lease of ``model_name`` (the lock of HTTP tracking servers; see above).

    Works against any MLflow store: it needs only the API and a unique registered-model name.

    Raises:
        TimeoutError: another owner held a live lease for ``timeout_s``; the message names it.
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    name = f"{model_name}{LOCK_SUFFIX}"
    owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    _acquire_lease(client, name, owner, timeout_s, lease_s)
    try:
        yield
    finally:
        holder = _lease_holder(client, name)
        if holder is not None and holder[0] == owner:
            _delete_lease(client, name)
        else:
            _logger.warning("%s lost the lease %s before releasing it", owner, name)

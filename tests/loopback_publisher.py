"""A loopback SNIIM publisher for the fetch tests: the demo publisher's app with faults injected.

The good days are served by :func:`milkprice.data.publisher.publisher_app` (the project's own
writer); a pure ASGI wrapper in front of it counts the requests per day and, for chosen days,
answers 404, a 500 before the first 200, a slow answer (past the client's timeout) or bytes that
are not a workbook. uvicorn serves it from a thread on a free port; leaving the context stops it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime

import pandas as pd
import uvicorn
from conftest import free_port

from milkprice.data.publisher import SNIIM_PATH_TEMPLATE, local_url_template, publisher_app

__all__ = ["CORRUPT_BYTES", "Faults", "Publisher", "dates_of", "days", "loopback_publisher"]

CORRUPT_BYTES = b"PK\x03\x04 this is not a workbook"


@dataclass
class Faults:
    """Days (by fault) the publisher mistreats; ``slow_s`` is how long a slow day stalls."""

    missing: set[date] = field(default_factory=set)
    fail_once: set[date] = field(default_factory=set)
    slow: set[date] = field(default_factory=set)
    corrupt: set[date] = field(default_factory=set)
    slow_s: float = 1.5


@dataclass
class Publisher:
    """A running publisher: its URL template and the requests it got, per day."""

    template: str
    requests: Counter = field(default_factory=Counter)

    def url(self, day: date) -> str:
        return self.template.format(day=day)


def _day_of(path: str) -> date | None:
    prefix, suffix = SNIIM_PATH_TEMPLATE.split("{day:%d%m%Y}")
    if not (path.startswith(prefix) and path.endswith(suffix)):
        return None
    try:
        return datetime.strptime(path[len(prefix) : len(path) - len(suffix)], "%d%m%Y").date()
    except ValueError:
        return None


def _faulty(app, faults: Faults, requests: Counter):
    failed: set[date] = set()

    async def send_plain(send, status: int, body: bytes) -> None:
        headers = [(b"content-type", b"application/octet-stream")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def wrapped(scope, receive, send):
        day = _day_of(scope.get("path", "")) if scope["type"] == "http" else None
        if day is None:
            return await app(scope, receive, send)
        requests[day] += 1
        if day in faults.missing:
            return await send_plain(send, 404, b"not found")
        if day in faults.fail_once and day not in failed:
            failed.add(day)
            return await send_plain(send, 500, b"try again")
        if day in faults.slow:
            await asyncio.sleep(faults.slow_s)
        if day in faults.corrupt:
            return await send_plain(send, 200, CORRUPT_BYTES)
        return await app(scope, receive, send)

    return wrapped


@contextmanager
def loopback_publisher(frame: pd.DataFrame, faults: Faults | None = None) -> Iterator[Publisher]:
    """Serve ``frame``'s publication dates (with ``faults``) on 127.0.0.1 while in the context."""
    port = free_port()
    publisher = Publisher(local_url_template("127.0.0.1", port))
    app = _faulty(publisher_app(frame), faults or Faults(), publisher.requests)
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError(f"the loopback publisher did not start on port {port}")
        time.sleep(0.05)
    try:
        yield publisher
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def days(*texts: str) -> set[date]:
    return {date.fromisoformat(text) for text in texts}


def dates_of(values: Iterable[pd.Timestamp]) -> set[date]:
    return {pd.Timestamp(value).date() for value in values}

"""What makes the prediction API safe to expose: body limits, strict JSON, headers, the admin token.

- :class:`BodySizeLimit` refuses bodies over a size with 413 before any parsing.
- :class:`StrictJSONRoute` parses request bodies as strict JSON (RFC 8259): the ``NaN`` and
  ``Infinity`` literals Python's parser accepts, numbers that overflow a float, integers of more
  digits than Python converts, and nesting deeper than the parser's recursion are JSON decode
  errors, which FastAPI answers with 422 (``json_invalid``, with the position) instead of
  failing later while it renders the error (a 500).
- :class:`SecurityHeaders` adds the standard headers for responses a browser may read
  (``nosniff``, a content security policy allowing only the API's own assets, no framing).
- :func:`admin_guard` protects ``/admin/*`` with a bearer token (``MILKPRICE_API_ADMIN_TOKEN``);
  :func:`check_exposure` refuses to bind beyond loopback without one.
"""

from __future__ import annotations

import ipaddress
import json
import math
import secrets
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from typing import Any

from fastapi import Depends, HTTPException, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "MAX_BODY_BYTES",
    "SECURITY_HEADERS",
    "BodySizeLimit",
    "ExposureError",
    "SecurityHeaders",
    "StrictJSONRoute",
    "admin_guard",
    "check_exposure",
    "is_loopback",
    "strict_json_loads",
]

# 10,000 rows are about 1.3 MB of JSON; anything far beyond is refused before parsing.
MAX_BODY_BYTES = 4 * 1024 * 1024

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# Swagger UI and ReDoc (served by the API itself, fastapi-offline) start from one inline
# script and use inline styles and data: images; nothing may come from another origin.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS: dict[str, str] = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Resource-Policy": "same-origin",
}


# --- body size limit ------------------------------------------------------------------------


class _BodyTooLargeError(HTTPException):
    """Raised from ``receive`` once a streamed body passes the limit (FastAPI re-raises it)."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            status_code=413,
            detail=f"request body larger than {limit} bytes",
            # The rest of the body is never read: the connection cannot serve another request.
            headers={"Connection": "close"},
        )


class BodySizeLimit:
    """Pure ASGI middleware: refuse bodies over ``max_bytes`` with 413 before any parsing.

    The declared ``Content-Length`` is checked first; a body without one (chunked) is counted
    as it streams in and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, counting its body's bytes."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit():
                await _send_json(send, 400, {"detail": "invalid Content-Length header"})
                return
            if int(declared) > self.max_bytes:
                await _send_json(send, 413, {"detail": _BodyTooLargeError(self.max_bytes).detail})
                return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _BodyTooLargeError as exc:
            if started:
                raise
            await _send_json(send, 413, {"detail": exc.detail})


async def _send_json(send: Send, status: int, content: dict[str, Any]) -> None:
    response = JSONResponse(content, status_code=status, headers={"Connection": "close"})
    await send({"type": "http.response.start", "status": status, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})


# --- response headers -----------------------------------------------------------------------


class SecurityHeaders:
    """Pure ASGI middleware: add :data:`SECURITY_HEADERS` to every HTTP response."""

    def __init__(self, app: ASGIApp, headers: dict[str, str] | None = None) -> None:
        self.app = app
        self.headers = [
            (name.lower().encode("latin-1"), value.encode("latin-1"))
            for name, value in (headers or SECURITY_HEADERS).items()
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on; add the headers a response does not set itself."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(n, v) for n, v in self.headers if n not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


# --- strict JSON bodies -----------------------------------------------------------------------


def _non_finite_path(value: Any, path: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where the first non-finite float sits in a parsed document (``None``: nowhere)."""
    if isinstance(value, float):
        return None if math.isfinite(value) else path
    if isinstance(value, dict | list):
        children = value.items() if isinstance(value, dict) else enumerate(value)
        for key, child in children:
            found = _non_finite_path(child, (*path, key))
            if found is not None:
                return found
    return None


def strict_json_loads(document: str | bytes) -> Any:
    """``json.loads`` that accepts only RFC 8259 JSON with finite numbers.

    Raises:
        json.JSONDecodeError: for a ``NaN``/``Infinity`` literal or a number that overflows a
            float (the message names where it sits, e.g. ``rows.0.fecha``), an integer too
            long to convert, or nesting too deep to parse.
    """
    try:
        text = document.decode("utf-8") if isinstance(document, bytes) else document
    except UnicodeDecodeError as exc:
        raise json.JSONDecodeError(f"body is not UTF-8 ({exc.reason})", "", exc.start) from None
    seen: list[str] = []  # literals that may not be finite: walk the document only then

    def constant(name: str) -> float:
        seen.append(name)
        return float(name)

    def number(literal: str) -> float:
        value = float(literal)
        if not math.isfinite(value):
            seen.append(literal)
        return value

    try:
        parsed = json.loads(text, parse_constant=constant, parse_float=number)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None
    except json.JSONDecodeError:
        raise
    except ValueError as exc:  # an integer literal of more digits than int() converts
        raise json.JSONDecodeError(f"number out of range ({exc})", text, 0) from None
    if seen:
        try:
            where = _non_finite_path(parsed)
        except RecursionError:
            where = None
        field = ".".join(str(part) for part in where) if where else "the top level"
        literal = seen[0] if seen[0] in {"NaN", "Infinity", "-Infinity"} else "a number"
        raise json.JSONDecodeError(
            f"{literal} at {field} is not valid JSON (strict JSON numbers are finite)",
            text,
            max(text.find(seen[0]), 0),
        )
    return parsed


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = strict_json_loads(await self.body())
        return self._json


class StrictJSONRoute(APIRoute):
    """An API route whose JSON body is parsed by :func:`strict_json_loads`."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """FastAPI's handler, given a request whose ``json()`` is strict."""
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


# --- the admin token --------------------------------------------------------------------------


class ExposureError(ValueError):
    """The API would be reachable beyond loopback with an unprotected admin endpoint."""


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API on this machine."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name other than localhost may resolve anywhere


def check_exposure(host: str, token: SecretStr | None) -> None:
    """Refuse to bind beyond loopback unless ``/admin/*`` is protected by a token.

    Raises:
        ExposureError: ``host`` is not a loopback address and ``token`` is unset or empty.
    """
    if is_loopback(host) or (token is not None and token.get_secret_value()):
        return
    raise ExposureError(
        f"refusing to serve the API on {host!r} (beyond loopback) without an admin token: "
        "/admin/reload would be open to anyone who reaches the port; set "
        "MILKPRICE_API_ADMIN_TOKEN or bind to 127.0.0.1"
    )


def admin_guard(token: SecretStr | None) -> Any:
    """A FastAPI dependency: with ``token`` set, ``Authorization: Bearer <token>`` is required.

    Without a token (loopback only, see :func:`check_exposure`) the admin endpoints are open.
    A missing or wrong token is a 401 with ``WWW-Authenticate: Bearer``; the token is compared
    in constant time and never echoed or logged.
    """
    expected = token.get_secret_value().encode() if token is not None else b""
    bearer = HTTPBearer(
        auto_error=False,
        description="MILKPRICE_API_ADMIN_TOKEN (required when the API binds beyond loopback).",
    )

    async def guard(
        credentials: HTTPAuthorizationCredentials | None = Depends(bearer),  # noqa: B008
    ) -> None:
        if not expected:
            return
        given = credentials.credentials.encode() if credentials is not None else b""
        if not secrets.compare_digest(given, expected):
            raise HTTPException(
                status_code=401,
                detail="admin endpoints need 'Authorization: Bearer <MILKPRICE_API_ADMIN_TOKEN>'",
                headers={"WWW-Authenticate": "Bearer"},
            )

    return Depends(guard)

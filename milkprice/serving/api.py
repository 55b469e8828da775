"""The prediction API: FastAPI over the one :class:`~milkprice.serving.predictor.Predictor`.

The served model is one immutable :class:`_Served` behind one reference, swapped atomically:
a request takes the reference once and answers from it, so a reload never mixes two models in
one response. Loading (registry, artifacts, lake) runs in a worker thread, never on the event
loop: the process answers ``/livez`` at once and keeps serving the old model while a new one
loads. A background task checks the ``champion`` alias every ``api_reload_seconds``; a failed
reload keeps the old model and is reported by ``/model`` (``reload_error``).

The request path builds two lists (series keys, dates) and calls
:meth:`Predictor.predict_keys`, the same code path as the batch forecast; no pandas frames.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import anyio.to_thread
import pandas as pd
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError
from fastapi_offline import FastAPIOffline

from milkprice.serving.explorer import build_explorer
from milkprice.serving.guards import (
    MAX_BODY_BYTES,
    BodySizeLimit,
    SecurityHeaders,
    StrictJSONRoute,
    admin_guard,
)
from milkprice.serving.loader import NoChampionError, load_predictor, resolve_version
from milkprice.serving.predictor import PredictionInputError, Predictor
from milkprice.serving.schemas import (
    ErrorResponse,
    ModelResponse,
    Prediction,
    PredictRequest,
    PredictResponse,
    SeriesItem,
    SeriesResponse,
    SkippedItem,
)
from milkprice.settings import Settings, Source

__all__ = ["MAX_BODY_BYTES", "BodySizeLimit", "create_app"]

log = logging.getLogger(__name__)


# --- the served model and its reloads ----------------------------------------------------


@dataclass(frozen=True)
class _Served:
    """A predictor with the answers that do not change while it is served (built once)."""

    predictor: Predictor
    loaded_at: datetime
    cutoff: date
    last_date: date
    series: SeriesResponse
    example: dict[str, Any]

    @classmethod
    def of(cls, predictor: Predictor) -> _Served:
        def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
            return [
                {k.lower(): v for k, v in row.items()} for row in frame.to_dict(orient="records")
            ]

        series = SeriesResponse(
            series=[SeriesItem(**row) for row in rows(predictor.series)],
            skipped=[SkippedItem(**row) for row in rows(predictor.skipped)],
        )
        cutoff, last_date = predictor.cutoff.date(), predictor.last_date.date()
        return cls(
            predictor=predictor,
            loaded_at=datetime.now(UTC),
            cutoff=cutoff,
            last_date=last_date,
            series=series,
            example=_example(series, cutoff, last_date),
        )


def _example(series: SeriesResponse, cutoff: date, last_date: date) -> dict[str, Any]:
    """A valid ``/predict`` body for this model: its first series, a week after the cut-off."""
    if not series.series:
        return {}
    first = series.series[0]
    when = min(cutoff + timedelta(days=7), last_date)
    keys = {k: getattr(first, k) for k in ("estado", "ciudad", "tipo", "canal")}
    return {"rows": [{**keys, "fecha": when.isoformat()}]}


class _ModelState:
    """The one reference to the served model, and how to replace it."""

    def __init__(self, settings: Settings, source: Source | None) -> None:
        self.settings = settings
        self.source = source
        self.served: _Served | None = None
        self.unavailable = f"loading model {settings.registered_model!r}; retry in a moment"
        self.reload_error: str | None = None
        # Run on each new predictor in the loading thread, before it is swapped in.
        self.prepare: list[Callable[[Predictor], None]] = []
        self._lock = asyncio.Lock()

    def _load(self) -> Predictor:
        predictor = load_predictor(self.settings, self.source)
        for prepare in self.prepare:
            try:
                prepare(predictor)
            except Exception as exc:  # the model still serves /predict; retried on use
                log.warning("preparing version %s: %s", predictor.info.version, exc)
        return predictor

    async def reload(self) -> _Served | None:
        """Load the champion and the newest data in a worker thread; swap only on success."""
        async with self._lock:
            try:
                predictor = await anyio.to_thread.run_sync(self._load, abandon_on_cancel=True)
                fresh = _Served.of(predictor)
            except Exception as exc:  # a reload must never take the process down
                self._failed(exc)
                return None
            previous = self.served
            self.served, self.reload_error = fresh, None  # one assignment: the atomic swap
            log.info(
                "serving %s version %s (was %s), cut-off %s",
                predictor.info.name,
                predictor.info.version,
                previous.predictor.info.version if previous else "nothing",
                fresh.cutoff,
            )
            return fresh

    async def check_alias(self) -> None:
        """Reload when the champion alias names another version than the one served."""
        try:
            registered = await anyio.to_thread.run_sync(
                resolve_version, self.settings, abandon_on_cancel=True
            )
        except Exception as exc:
            self._failed(exc)
            return
        if self.served is None or registered.version != self.served.predictor.info.version:
            await self.reload()
        else:
            self.reload_error = None  # a transient failure of an earlier check is over

    async def watch(self) -> None:
        """Load at start-up, then check the alias every ``api_reload_seconds``, forever."""
        await self.reload()
        while True:
            await asyncio.sleep(self.settings.api_reload_seconds)
            await self.check_alias()

    def _failed(self, exc: Exception) -> None:
        message = str(exc) if isinstance(exc, NoChampionError) else f"{type(exc).__name__}: {exc}"
        # Logged once per new message: the watcher retries every api_reload_seconds.
        if self.served is None:
            if message != self.unavailable:
                log.warning("no model to serve: %s", message)
            self.unavailable = message
        else:
            version = self.served.predictor.info.version
            error = f"{message} (still serving version {version})"
            if error != self.reload_error:
                log.warning("reload failed: %s", error)
            self.reload_error = error

    def require(self) -> _Served:
        """The served model, or 503 with why there is none."""
        served = self.served
        if served is None:
            raise HTTPException(status_code=503, detail=self.unavailable)
        return served

    def describe(self, served: _Served) -> ModelResponse:
        """``GET /model`` for ``served``."""
        predictor = served.predictor
        info = predictor.info
        return ModelResponse(
            name=info.name,
            version=info.version,
            validation_month=info.validation_month,
            run_id=info.run_id,
            metrics=info.metrics,
            cutoff=served.cutoff,
            last_date=served.last_date,
            interval_method=str(predictor.intervals.method),
            max_horizon_days=predictor.max_horizon_days,
            series=len(served.series.series),
            loaded_at=served.loaded_at,
            reload_error=self.reload_error,
        )


# --- the app ----------------------------------------------------------------------------------

# Requests up to this many rows are answered on the event loop (a thread hop costs more).
_INLINE_ROWS = 256
_UNAVAILABLE = {503: {"model": ErrorResponse, "description": "No model loaded (yet)."}}


def _predict(served: _Served, request: PredictRequest) -> PredictResponse:
    rows = request.rows
    keys = [(r.estado, r.ciudad, r.tipo, r.canal) for r in rows]
    # Few distinct dates per request: convert each once.
    stamps = {d: pd.Timestamp(d) for d in {r.fecha for r in rows}}
    try:
        out = served.predictor.predict_keys(keys, [stamps[r.fecha] for r in rows])
    except PredictionInputError as exc:
        raise RequestValidationError(
            [
                {
                    "loc": ("body", "rows", e.index, e.field),
                    "msg": e.message,
                    "type": "series_not_forecast" if e.field == "ciudad" else "date_out_of_range",
                }
                for e in exc.errors
            ]
        ) from None
    columns = {name: values.tolist() for name, values in out.items()}
    predictions = [
        Prediction.model_construct(
            estado=r.estado,
            ciudad=r.ciudad,
            tipo=r.tipo,
            canal=r.canal,
            fecha=r.fecha,
            **{name: values[i] for name, values in columns.items()},
        )
        for i, r in enumerate(rows)
    ]
    return PredictResponse.model_construct(
        model_version=served.predictor.info.version, cutoff=served.cutoff, predictions=predictions
    )


def create_app(settings: Settings, source: Source | None = None) -> FastAPI:
    """The prediction API serving the champion of ``settings.registered_model``.

    Args:
        settings: Where the registry and the lake are; ``api_reload_seconds`` sets how often
            the champion alias is checked.
        source: Which lake to read the history from (default: ``settings.source``).

    Returns:
        The FastAPI application; the model loads in the background once it starts.
    """
    state = _ModelState(settings, source)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        watcher = asyncio.create_task(state.watch(), name="milkprice-model-watcher")
        try:
            yield
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    # FastAPIOffline: the same FastAPI app, with Swagger UI and ReDoc assets served by the API
    # itself, so /docs works on a machine with no route to a CDN.
    app = FastAPIOffline(
        title="milkprice prediction API",
        description=(
            "Forecasts of Mexican retail milk prices (SNIIM, pesos per litre) with 80 % and "
            "95 % prediction intervals, from the registered model holding the `champion` "
            "alias. Forecasts use the prices in the lake up to the data cut-off (`GET /model`); "
            "ask for dates after it, within the model's horizon, for series in `GET /series`."
        ),
        version="1",
        lifespan=lifespan,
    )
    # Routes added below parse their JSON bodies strictly (NaN, Infinity: 422, not 500).
    app.router.route_class = StrictJSONRoute
    app.add_middleware(BodySizeLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(SecurityHeaders)
    app.state.model = state
    _document_examples(app, state)

    @app.get("/livez", tags=["health"], summary="The process runs")
    async def livez() -> dict[str, str]:
        return {"status": "alive"}

    @app.get(
        "/readyz",
        tags=["health"],
        summary="A model and its history are loaded",
        responses=_UNAVAILABLE,
    )
    async def readyz() -> dict[str, str]:
        served = state.require()
        return {"status": "ready", "model_version": served.predictor.info.version}

    @app.get("/model", tags=["model"], summary="The model served", responses=_UNAVAILABLE)
    async def model() -> ModelResponse:
        return state.describe(state.require())

    @app.get(
        "/series", tags=["model"], summary="Series that can be forecast", responses=_UNAVAILABLE
    )
    async def series() -> SeriesResponse:
        return state.require().series

    @app.post(
        "/predict",
        tags=["predict"],
        summary="Forecast prices with intervals",
        responses={
            **_UNAVAILABLE,
            413: {"model": ErrorResponse, "description": "Request body over 4 MB."},
        },
    )
    async def predict(request: PredictRequest) -> PredictResponse:
        served = state.require()
        if len(request.rows) <= _INLINE_ROWS:
            return _predict(served, request)  # well under a millisecond: no thread hop
        # A large request must not hold the event loop (health checks, other requests).
        return await anyio.to_thread.run_sync(_predict, served, request)

    @app.post(
        "/admin/reload",
        tags=["admin"],
        summary="Reload the champion and the newest data now",
        responses={
            401: {"model": ErrorResponse, "description": "Missing or wrong admin token."},
            503: {"model": ErrorResponse, "description": "The reload failed."},
        },
        dependencies=[admin_guard(settings.api_admin_token)],
    )
    async def admin_reload() -> ModelResponse:
        started = time.perf_counter()
        fresh = await state.reload()
        if fresh is None:
            raise HTTPException(status_code=503, detail=state.reload_error or state.unavailable)
        log.info("reload took %.2fs", time.perf_counter() - started)
        return state.describe(fresh)

    # The forecast explorer: the page at / and its JSON/CSV endpoints, from the same predictor,
    # its data built before a new model is swapped in.
    explorer = build_explorer(lambda: state.require().predictor, settings, source)
    state.prepare.append(explorer.prepare)
    app.include_router(explorer.router)
    return app


def _document_examples(app: FastAPI, state: _ModelState) -> None:
    """Make ``/predict``'s OpenAPI example a valid request for the model in service.

    FastAPI builds (and caches) the document once; each ``/openapi.json`` gets a copy with the
    served model's example, so Swagger UI's "Try it out" answers 200 as it comes, after every
    reload too.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        document = build()
        served = state.served
        if served is None or not served.example:
            return document
        document = copy.deepcopy(document)
        body = document["paths"]["/predict"]["post"]["requestBody"]["content"]
        body["application/json"]["example"] = served.example
        return document

    app.openapi = openapi  # type: ignore[method-assign]

"""The explorer's HTTP face: the page at ``/``, its assets, and its JSON and CSV endpoints.

Everything the page loads comes from this process: the HTML, its script and style, and
Plotly's bundled ``plotly.min.js`` read from the installed ``plotly`` package (no CDN; the
page works offline and the content security policy allows only the API's own assets).

The views of one served model are cut from one :class:`~milkprice.serving.explorer.views.
ExplorerData`, built in a worker thread on the first request after a model is loaded and kept
until the next one; each view is computed once. The monitoring's scored months are read from
MLflow at most every :data:`ACCURACY_TTL_S`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError

from milkprice.data.lake import Lake
from milkprice.registry.monitoring_runs import scored_months
from milkprice.serving.explorer.schemas import (
    ExplorerSeries,
    ModelCard,
    OptionsResponse,
    Scope,
    ScoredMonthItem,
    ViewResponse,
)
from milkprice.serving.explorer.views import (
    ExplorerData,
    ViewError,
    build_view,
    explorer_data,
    read_recent_history,
    view_csv,
)
from milkprice.serving.predictor import Predictor
from milkprice.serving.schemas import Canal, Tipo
from milkprice.settings import Settings, Source

__all__ = ["ACCURACY_TTL_S", "STATIC_FILES", "Explorer", "build_explorer"]

ACCURACY_TTL_S = 60.0
_MAX_VIEWS = 1024
# Models whose explorer data is kept: the one served and the one a reload is replacing.
_KEPT_MODELS = 2
# Registered-version tags that say what a model was trained on.
_TRAINED_ON = (
    "source",
    "training_months",
    "missing_months",
    "data_fingerprint",
    "code_version",
)
_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
}
STATIC_FILES = ("explorer.js", "explorer.css", "favicon.svg", "plotly.min.js")
# Query parameters of a view (module level: the annotations are resolved from here).
ScopeQuery = Annotated[Scope, Query(description="series, state (its cities) or nation.")]
TipoQuery = Annotated[Tipo, Query()]
CanalQuery = Annotated[Canal, Query()]
EstadoQuery = Annotated[str | None, Query(description="State (scope series or state).")]
CiudadQuery = Annotated[str | None, Query(description="City (scope series).")]


@cache
def _asset(name: str) -> tuple[bytes, str]:
    """An asset's bytes and ETag (read once per process)."""
    if name == "plotly.min.js":
        data = (importlib.resources.files("plotly") / "package_data" / name).read_bytes()
    else:
        data = (importlib.resources.files(__package__) / "static" / name).read_bytes()
    return data, f'"{hashlib.sha256(data).hexdigest()[:20]}"'


def _asset_response(request: Request, name: str, max_age: int) -> Response:
    data, etag = _asset(name)
    headers = {"ETag": etag, "Cache-Control": f"public, max-age={max_age}"}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    suffix = name[name.rfind(".") :]
    return Response(data, media_type=_TYPES[suffix], headers=headers)


@dataclass
class _Entry:
    """One served model's explorer data, its options and the views computed so far."""

    data: ExplorerData
    options: OptionsResponse | None = None
    views: dict[tuple[object, ...], ViewResponse] = field(default_factory=dict)


class _Cache:
    """Explorer data, options and views of the served model and the one before; scored months.

    Two models are kept: while a reload prepares the new one, the old one still answers.
    """

    def __init__(self, settings: Settings, source: Source | None) -> None:
        self.settings = settings
        self.source = source
        self._build_lock = threading.Lock()
        self._entries: dict[int, _Entry] = {}  # by id(predictor), newest last
        self._accuracy: tuple[float, list[ScoredMonthItem], str | None] | None = None

    def entry(self, predictor: Predictor) -> _Entry:
        """The entry of ``predictor``, built (once, in the calling thread) when missing."""
        found = self._entries.get(id(predictor))
        if found is not None and found.data.predictor is predictor:
            return found
        with self._build_lock:
            found = self._entries.get(id(predictor))
            if found is None or found.data.predictor is not predictor:
                try:
                    lake = Lake.from_settings(self.settings, self.source)
                    prices = read_recent_history(lake, predictor.cutoff)
                    found = _Entry(explorer_data(predictor, prices))
                except Exception as exc:  # the lake unreadable now: /predict still answers
                    raise HTTPException(
                        status_code=503,
                        detail=f"explorer data unavailable ({type(exc).__name__}: {exc})",
                    ) from exc
                kept = list(self._entries.items())[-(_KEPT_MODELS - 1) :]
                self._entries = {**dict(kept), id(predictor): found}
            return found

    def view(self, predictor: Predictor, key: tuple[object, ...]) -> ViewResponse:
        entry = self.entry(predictor)
        found = entry.views.get(key)
        if found is None:
            scope, estado, ciudad, tipo, canal = key
            found = build_view(
                entry.data,
                scope,  # type: ignore[arg-type]
                estado=estado,  # type: ignore[arg-type]
                ciudad=ciudad,  # type: ignore[arg-type]
                tipo=tipo,  # type: ignore[arg-type]
                canal=canal,  # type: ignore[arg-type]
            )
            if len(entry.views) >= _MAX_VIEWS:
                entry.views.clear()
            entry.views[key] = found
        return found

    def accuracy(self) -> tuple[list[ScoredMonthItem], str | None]:
        now = time.monotonic()
        cached = self._accuracy
        if cached is not None and now - cached[0] < ACCURACY_TTL_S:
            return cached[1], cached[2]
        try:
            months = scored_months(
                self.settings.mlflow_tracking_uri, self.settings.mlflow_experiment
            )
            items = [ScoredMonthItem(**vars(m)) for m in months]
            note = None if items else "no month scored yet: run the monitoring flow"
        except Exception as exc:  # the page still shows the forecast without them
            items, note = [], f"scored months unavailable ({type(exc).__name__}: {exc})"
        self._accuracy = (now, items, note)
        return items, note

    def options(self, predictor: Predictor) -> OptionsResponse:
        entry = self.entry(predictor)
        if entry.options is None:
            entry.options = _options(entry.data)
        accuracy, note = self.accuracy()
        return entry.options.model_copy(update={"accuracy": accuracy, "accuracy_note": note})


def _options(data: ExplorerData) -> OptionsResponse:
    predictor = data.predictor
    info = predictor.info
    series = predictor.series
    card = ModelCard(
        name=info.name,
        version=info.version,
        validation_month=info.validation_month,
        run_id=info.run_id,
        trained_at=info.trained_at,
        trained_on={k: info.tags[k] for k in _TRAINED_ON if info.tags.get(k)},
        validation=info.metrics,
        cutoff=predictor.cutoff.date(),
        last_date=predictor.last_date.date(),
        interval_method=str(predictor.intervals.method),
        max_horizon_days=predictor.max_horizon_days,
        aggregate_dependence=data.dependence,
    )
    return OptionsResponse(
        model=card,
        accuracy=[],
        accuracy_note=None,
        series=[
            ExplorerSeries(
                estado=row.Estado,
                ciudad=row.Ciudad,
                tipo=row.Tipo,
                canal=row.Canal,
                last_price=float(row.last_price),
            )
            for row in series.itertuples(index=False)
        ],
        estados=sorted(series["Estado"].unique().tolist()),
        tipos=sorted(series["Tipo"].unique().tolist()),
        canales=sorted(series["Canal"].unique().tolist()),
    )


def _slug(*parts: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", "-".join(p for p in parts if p)).strip("-").lower()


@dataclass(frozen=True)
class Explorer:
    """The explorer's routes, and how to prepare its data for a model before it is served.

    Attributes:
        router: The page, its assets and the JSON/CSV endpoints.
        prepare: Builds a predictor's explorer data (blocking, for a worker thread): called
            before a model is swapped in, the first page load after a reload is as quick as
            any other.
    """

    router: APIRouter
    prepare: Callable[[Predictor], None]


def build_explorer(
    current: Callable[[], Predictor], settings: Settings, source: Source | None = None
) -> Explorer:
    """The explorer over the served predictor.

    Args:
        current: The served predictor (raises the API's 503 when there is none yet).
        settings: Where the lake and the MLflow store are.
        source: Which lake to read the history from (default: ``settings.source``).
    """
    cached = _Cache(settings, source)
    router = APIRouter(tags=["explorer"])
    unavailable = {503: {"description": "No model loaded (yet)."}}

    @router.get("/", include_in_schema=False)
    def page(request: Request) -> Response:
        return _asset_response(request, "index.html", max_age=0)

    @router.get("/explorer/static/{name}", include_in_schema=False)
    def static(name: str, request: Request) -> Response:
        if name not in STATIC_FILES:
            return Response(status_code=404)
        return _asset_response(request, name, max_age=3600)

    @router.get(
        "/explorer/options",
        summary="Series, states and the model in service, for the explorer page",
        responses=unavailable,
    )
    def options() -> OptionsResponse:
        return cached.options(current())

    def view_of(
        scope: Scope, estado: str | None, ciudad: str | None, tipo: str, canal: str
    ) -> ViewResponse:
        predictor = current()
        try:
            return cached.view(predictor, (scope, estado, ciudad, tipo, canal))
        except ViewError as exc:
            raise RequestValidationError(
                [{"loc": ("query", exc.param), "msg": exc.message, "type": "value_error"}]
            ) from None

    @router.get(
        "/explorer/view",
        summary="Six months of prices and the forecast with its bands, for one scope",
        responses=unavailable,
    )
    def view(
        scope: ScopeQuery,
        tipo: TipoQuery,
        canal: CanalQuery,
        estado: EstadoQuery = None,
        ciudad: CiudadQuery = None,
    ) -> ViewResponse:
        return view_of(scope, estado, ciudad, tipo, canal)

    @router.get(
        "/explorer/view.csv",
        summary="The same view as CSV",
        response_class=Response,
        responses={**unavailable, 200: {"content": {"text/csv": {}}}},
    )
    def view_as_csv(
        scope: ScopeQuery,
        tipo: TipoQuery,
        canal: CanalQuery,
        estado: EstadoQuery = None,
        ciudad: CiudadQuery = None,
    ) -> Response:
        shown = view_of(scope, estado, ciudad, tipo, canal)
        name = _slug("milkprice", scope, shown.estado, shown.ciudad, tipo, canal)
        return Response(
            view_csv(shown),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{name}.csv"'},
        )

    def prepare(predictor: Predictor) -> None:
        cached.entry(predictor)

    return Explorer(router, prepare)

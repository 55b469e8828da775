"""The demo publisher: the seeded demo publications served over HTTP the way SNIIM serves them.

One workbook per publication date, at the URL path of SNIIM's default template
(``/SNIIM-Archivosfuente/Comentarios/Otros/Leche{day:%d%m%Y}.xlsx``), written by the project's
own layout writer (:mod:`milkprice.data.sniim_workbook`, independent of the parser) from the demo
generator's rows of that date; any other path answers 404, as SNIIM does for a holiday or a
day not yet online. ``milkprice data publish-demo`` serves it on loopback so that a fresh stack
has publications to fetch (``MILKPRICE_SNIIM_URL_TEMPLATE`` pointed at it).

Which rows: the generator's values depend on the range it is asked for, so the months of the
demo lake ``milkprice data demo`` writes by default (the 18 months up to the previous month)
come from exactly that call (a day already in that lake fetches as "unchanged"), and the dates
after it, up to ``through``, from one call over the demo range extended to ``through``'s month.
"""

from __future__ import annotations

import functools
import io
import urllib.parse
from datetime import date

import pandas as pd
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from milkprice.data.demo import default_demo_range, generate_demo_frame
from milkprice.data.sniim_workbook import write_leche_workbook
from milkprice.months import Month
from milkprice.settings import SNIIM_LECHE_URL_TEMPLATE

__all__ = [
    "SNIIM_PATH_TEMPLATE",
    "XLSX_MEDIA_TYPE",
    "demo_publications",
    "local_url_template",
    "publication_workbook",
    "publisher_app",
]

# The path part of SNIIM's template: the demo publisher serves the same file names.
SNIIM_PATH_TEMPLATE = urllib.parse.urlsplit(SNIIM_LECHE_URL_TEMPLATE).path
XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_CACHED_WORKBOOKS = 64


def demo_publications(seed: int, through: date, today: date) -> pd.DataFrame:
    """The demo rows of every publication date up to ``through`` (see the module's note).

    Args:
        seed: seed of the demo generator (as ``milkprice data demo --seed``).
        through: the newest date published.
        today: the day the default demo lake's range is computed from.
    """
    first, last = default_demo_range(today)
    frame = generate_demo_frame(first, last, seed)
    if Month.of(through) > last:
        extended = generate_demo_frame(first, Month.of(through), seed)
        frame = pd.concat([frame, extended[extended["Fecha"] > last.end]], ignore_index=True)
    return frame[frame["Fecha"] <= pd.Timestamp(through)].reset_index(drop=True)


def publication_workbook(rows: pd.DataFrame) -> bytes:
    """The xlsx bytes of one publication (the rows of its date)."""
    buffer = io.BytesIO()
    write_leche_workbook(rows, buffer)
    return buffer.getvalue()


def local_url_template(host: str, port: int, path_template: str = SNIIM_PATH_TEMPLATE) -> str:
    """The ``MILKPRICE_SNIIM_URL_TEMPLATE`` that points at a publisher on ``host:port``."""
    return f"http://{host}:{port}{path_template}"


def publisher_app(frame: pd.DataFrame, path_template: str = SNIIM_PATH_TEMPLATE) -> Starlette:
    """A Starlette app serving one workbook per date of ``frame`` at ``path_template``'s paths.

    ``GET /`` answers a short text index (the template, the first and last date); a path that
    names no date of ``frame`` answers 404.
    """
    by_day = {pd.Timestamp(day).date(): rows for day, rows in frame.groupby("Fecha", sort=True)}
    paths = {path_template.format(day=day): day for day in by_day}

    @functools.lru_cache(maxsize=_CACHED_WORKBOOKS)
    def workbook(day: date) -> bytes:
        return publication_workbook(by_day[day])

    async def publication(request: Request) -> Response:
        day = paths.get(request.url.path)
        if day is None:
            return PlainTextResponse(f"no publication at {request.url.path}", status_code=404)
        return Response(
            workbook(day),
            media_type=XLSX_MEDIA_TYPE,
            headers={
                "Content-Disposition": f'attachment; filename="{request.url.path.rsplit("/", 1)[-1]}"'
            },
        )

    async def index(_request: Request) -> Response:
        days = sorted(by_day)
        span = f"{days[0]} to {days[-1]}" if days else "none"
        return PlainTextResponse(
            f"milkprice demo publisher: {len(days)} publications ({span}) at {path_template}\n"
        )

    return Starlette(
        routes=[
            Route("/", index, methods=["GET"]),
            Route("/{path:path}", publication, methods=["GET", "HEAD"]),
        ]
    )

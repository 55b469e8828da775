"""The batch forecast as plain steps: load the champion, forecast every series, write the files.

The Prefect flow (``orchestration/flows/forecast_flow.py``) wraps each step in a task;
:func:`run_forecast` calls the same steps in a row. Everything is computed (forecast, parquet,
CSV, plots) before the first byte is written, and the parquet goes last: a reader that finds
``forecasts/cutoff=YYYY-MM-DD/forecast.parquet`` finds the reports of the same run beside it.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Sequence
from datetime import date

import pandas as pd
from pydantic import BaseModel

from milkprice.data.lake import Lake
from milkprice.model.aggregate import aggregate_forecast, dependence_of
from milkprice.model.features import SERIES_KEYS
from milkprice.plots import plot_national_forecast, plot_series_forecast
from milkprice.serving.loader import latest_cutoff, load_predictor
from milkprice.serving.predictor import FORECAST_COLUMNS, Predictor, SeriesKey, forecast_dates
from milkprice.settings import Settings, Source

__all__ = [
    "FORECAST_TABLE_COLUMNS",
    "PLOT_HISTORY_DAYS",
    "ForecastFiles",
    "ForecastResult",
    "build_forecast",
    "forecast_keys",
    "forecast_national",
    "forecast_result",
    "forecast_summary_markdown",
    "forecast_table_rows",
    "parse_series",
    "render_forecast_files",
    "resolve_cutoff",
    "run_forecast",
    "series_slug",
    "write_forecast_files",
]

FORECAST_TABLE_COLUMNS: list[str] = [
    *SERIES_KEYS,
    "Fecha",
    *FORECAST_COLUMNS,
    "horizon_days",
    "model_version",
    "cutoff",
]
# History shown in the plots before the forecast: about three months.
PLOT_HISTORY_DAYS = 92


class ForecastFiles(BaseModel):
    """The keys (relative to the lake's base) of one batch forecast's files."""

    parquet: str
    csv: str
    plots: list[str]


class ForecastResult(BaseModel):
    """What a batch forecast returns to its caller (and the flow to Prefect)."""

    cutoff: str
    source: str
    model_name: str
    model_version: str
    validation_month: str
    rows: int
    series_forecast: int
    series_skipped: int
    first_date: str
    last_date: str
    parquet_uri: str
    csv_uri: str
    plot_uris: list[str]


def forecast_keys(cutoff: pd.Timestamp) -> ForecastFiles:
    """The one place that says where a cut-off's forecast and reports live (plots: national)."""
    day = pd.Timestamp(cutoff).date().isoformat()
    return ForecastFiles(
        parquet=f"forecasts/cutoff={day}/forecast.parquet",
        csv=f"reports/cutoff={day}/forecast.csv",
        plots=[f"reports/cutoff={day}/national.png"],
    )


def series_slug(key: SeriesKey) -> str:
    """``series-<estado>-<ciudad>-<tipo>-<canal>`` in lowercase ASCII (a file name)."""
    text = unicodedata.normalize("NFKD", "-".join(key)).encode("ascii", "ignore").decode()
    return "series-" + re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def resolve_cutoff(lake: Lake, cutoff: date | pd.Timestamp | None) -> pd.Timestamp:
    """``cutoff`` as a day, or the newest publication date in the lake."""
    return pd.Timestamp(cutoff).normalize() if cutoff is not None else latest_cutoff(lake)


def parse_series(texts: Sequence[str] | None, predictor: Predictor) -> list[SeriesKey]:
    """Series named as ``Estado/Ciudad/Tipo/Canal``, each one the predictor forecasts.

    Raises:
        ValueError: naming every text that is malformed, unknown, or a skipped series (with
            the reason it is skipped).
    """
    known = set(predictor.series[SERIES_KEYS].itertuples(index=False, name=None))
    skipped = {
        tuple(row[:4]): row[4] for row in predictor.skipped.itertuples(index=False, name=None)
    }
    keys: list[SeriesKey] = []
    problems: list[str] = []
    for text in texts or []:
        parts = tuple(part.strip() for part in text.split("/"))
        if len(parts) != len(SERIES_KEYS) or not all(parts):
            problems.append(f"{text!r} is not Estado/Ciudad/Tipo/Canal")
        elif parts in known:
            keys.append(parts)  # type: ignore[arg-type]  # four parts checked above
        elif parts in skipped:
            problems.append(f"{text!r} is not forecast at this cut-off: {skipped[parts]}")
        else:
            problems.append(f"{text!r} is not a series of the lake")
    if problems:
        example = "/".join(next(iter(sorted(known))))
        raise ValueError(
            f"cannot plot {len(problems)} series: {'; '.join(problems)} "
            f"(name series as Estado/Ciudad/Tipo/Canal, e.g. {example!r})"
        )
    return list(dict.fromkeys(keys))


def build_forecast(predictor: Predictor) -> pd.DataFrame:
    """Every forecastable series at every publication date up to the end of next month."""
    forecast = predictor.forecast(forecast_dates(predictor.cutoff))
    return forecast[FORECAST_TABLE_COLUMNS].reset_index(drop=True)


def forecast_national(predictor: Predictor, forecast: pd.DataFrame) -> pd.DataFrame:
    """The national average per Tipo x Canal and date, with its own 80/95 % intervals.

    Simulated with the model's dependence between series (1.0, the widest, for models
    trained before it was estimated): see :mod:`milkprice.model.aggregate`.
    """
    return aggregate_forecast(
        forecast, ("Tipo", "Canal"), dependence=dependence_of(predictor.forecaster)
    )


def _parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, compression="zstd")
    return buffer.getvalue()


def render_forecast_files(
    predictor: Predictor,
    forecast: pd.DataFrame,
    series: Sequence[SeriesKey] = (),
) -> dict[str, bytes]:
    """Every file of the batch forecast as bytes, by key; the parquet is the last key.

    Args:
        predictor: the predictor that made ``forecast`` (cut-off and model version).
        forecast: the output of :func:`build_forecast`.
        series: series that get a plot of their own.
    """
    keys = forecast_keys(predictor.cutoff)
    day = predictor.cutoff.date().isoformat()
    about = f"cut-off {day}, model version {predictor.info.version}"
    since = predictor.cutoff - pd.Timedelta(days=PLOT_HISTORY_DAYS)
    # only the series forecast, so that history and forecast average the same series
    history = predictor.history
    recent = history.loc[history["Fecha"] > since].merge(
        predictor.series[SERIES_KEYS], on=SERIES_KEYS
    )
    files = {
        keys.csv: forecast.to_csv(
            index=False, date_format="%Y-%m-%d", float_format="%.4f"
        ).encode(),
        keys.plots[0]: plot_national_forecast(
            recent,
            forecast_national(predictor, forecast),
            f"National average per Tipo x Canal ({about})",
        ),
    }
    for key in series:
        own = dict(zip(SERIES_KEYS, key, strict=True))
        past = recent.loc[(recent[SERIES_KEYS] == pd.Series(own)).all(axis=1)]
        ahead = forecast.loc[(forecast[SERIES_KEYS] == pd.Series(own)).all(axis=1)]
        files[f"reports/cutoff={day}/{series_slug(key)}.png"] = plot_series_forecast(
            past, ahead, f"{'/'.join(key)} ({about})"
        )
    files[keys.parquet] = _parquet_bytes(forecast)
    return files


def write_forecast_files(lake: Lake, files: dict[str, bytes]) -> dict[str, str]:
    """Write each file atomically, in order (the parquet last); return their URIs by key."""
    return {key: lake.put_object(key, data) for key, data in files.items()}


def forecast_table_rows(predictor: Predictor, forecast: pd.DataFrame) -> list[dict[str, object]]:
    """One row per Estado x Tipo (means over cities and channels), for a table artifact.

    Columns: ``Estado``, ``Tipo``, ``series``, ``last_price``, ``last_date`` (the last
    forecast date), ``forecast`` (the median of the state average), ``lower_80``, ``upper_80``
    (the state average's own interval, :mod:`milkprice.model.aggregate`).
    """
    last_date = forecast["Fecha"].max()
    at_end = forecast.loc[forecast["Fecha"] == last_date]
    ahead = aggregate_forecast(
        at_end, ("Estado", "Tipo"), dependence=dependence_of(predictor.forecaster)
    ).set_index(["Estado", "Tipo"])[["price", "lower_80", "upper_80"]]
    last = predictor.series.groupby(["Estado", "Tipo"])["last_price"].agg(
        last_price="mean", series="size"
    )
    table = last.join(ahead, how="inner").reset_index()
    return [
        {
            "Estado": row.Estado,
            "Tipo": row.Tipo,
            "series": int(row.series),
            "last_price": round(float(row.last_price), 2),
            "last_date": last_date.date().isoformat(),
            "forecast": round(float(row.price), 2),
            "lower_80": round(float(row.lower_80), 2),
            "upper_80": round(float(row.upper_80), 2),
        }
        for row in table.itertuples(index=False)
    ]


def forecast_summary_markdown(
    predictor: Predictor, forecast: pd.DataFrame, uris: dict[str, str] | None = None
) -> str:
    """What a person reads about a batch forecast: model, data cut-off, rows, skipped series."""
    info = predictor.info
    lines = [
        f"# Milk price forecast, data cut-off {predictor.cutoff.date()}",
        "",
        f"- model: `{info.name}` version **{info.version}** "
        f"(validation month {info.validation_month or 'unknown'}, run `{info.run_id}`)",
        f"- forecast dates: {forecast['Fecha'].min().date()} to {forecast['Fecha'].max().date()} "
        f"({forecast['Fecha'].nunique()} publication days)",
        f"- rows: {len(forecast)} ({len(predictor.series)} series forecast, "
        f"{len(predictor.skipped)} skipped)",
    ]
    if info.metrics:
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in sorted(info.metrics.items())]
    if uris:
        lines += ["", "Files:", ""]
        lines += [f"- `{uri}`" for uri in uris.values()]
    lines += ["", f"## Skipped series ({len(predictor.skipped)})", ""]
    if predictor.skipped.empty:
        lines.append("None: every series of the lake was forecast.")
    else:
        lines += ["| series | reason |", "|---|---|"]
        lines += [
            f"| {'/'.join(row[:4])} | {row[4]} |"
            for row in predictor.skipped.itertuples(index=False, name=None)
        ]
    return "\n".join(lines)


def forecast_result(
    predictor: Predictor, forecast: pd.DataFrame, source: Source, uris: dict[str, str]
) -> ForecastResult:
    """The small typed result a caller of the batch forecast gets back."""
    keys = forecast_keys(predictor.cutoff)
    return ForecastResult(
        cutoff=predictor.cutoff.date().isoformat(),
        source=source,
        model_name=predictor.info.name,
        model_version=predictor.info.version,
        validation_month=predictor.info.validation_month,
        rows=len(forecast),
        series_forecast=len(predictor.series),
        series_skipped=len(predictor.skipped),
        first_date=forecast["Fecha"].min().date().isoformat(),
        last_date=forecast["Fecha"].max().date().isoformat(),
        parquet_uri=uris[keys.parquet],
        csv_uri=uris[keys.csv],
        plot_uris=[uri for key, uri in uris.items() if key.endswith(".png")],
    )


def run_forecast(
    settings: Settings,
    source: Source | None = None,
    cutoff: date | pd.Timestamp | None = None,
    series: Sequence[str] | None = None,
) -> ForecastResult:
    """The whole batch forecast without an orchestrator: the same steps the flow runs as tasks.

    Raises:
        NoChampionError: no champion to forecast with (run the training flow first).
        FileNotFoundError: the lake is empty.
        ValueError: a ``series`` is malformed, unknown or skipped; no series is fresh.
    """
    chosen: Source = source or settings.source
    lake = Lake.from_settings(settings, chosen)
    at = resolve_cutoff(lake, cutoff)
    predictor = load_predictor(settings, chosen, cutoff=at)
    keys = parse_series(series, predictor)
    forecast = build_forecast(predictor)
    files = render_forecast_files(predictor, forecast, keys)
    uris = write_forecast_files(lake, files)
    return forecast_result(predictor, forecast, chosen, uris)

"""Prefect tasks of the batch forecast flow: each a thin call into :mod:`milkprice`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

import pandas as pd
from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from milkprice.data.lake import Lake
from milkprice.pipeline.forecast_run import (
    build_forecast,
    forecast_summary_markdown,
    forecast_table_rows,
    parse_series,
    render_forecast_files,
    resolve_cutoff,
    write_forecast_files,
)
from milkprice.serving.loader import load_predictor
from milkprice.serving.predictor import Predictor, SeriesKey
from milkprice.settings import Settings, Source

__all__ = [
    "FORECAST_SUMMARY_KEY",
    "FORECAST_TABLE_KEY",
    "champion_predictor",
    "data_cutoff",
    "forecast_artifacts",
    "forecast_files",
    "forecast_table",
    "plotted_series",
]

FORECAST_TABLE_KEY = "milk-price-forecast"
FORECAST_SUMMARY_KEY = "milk-price-forecast-summary"


@task(name="data-cutoff")
def data_cutoff(lake: Lake, cutoff: date | None) -> pd.Timestamp:
    """The cut-off asked for, else the newest publication date in the lake."""
    return resolve_cutoff(lake, cutoff)


@task(name="champion-predictor")
def champion_predictor(settings: Settings, source: Source, cutoff: pd.Timestamp) -> Predictor:
    """The champion's predictor with the lake's history up to the cut-off."""
    predictor = load_predictor(settings, source, cutoff=cutoff)
    get_run_logger().info(
        "model %s version %s at cut-off %s: %d series, %d skipped",
        predictor.info.name,
        predictor.info.version,
        predictor.cutoff.date(),
        len(predictor.series),
        len(predictor.skipped),
    )
    return predictor


@task(name="plotted-series")
def plotted_series(series: Sequence[str] | None, predictor: Predictor) -> list[SeriesKey]:
    """The series that get a plot of their own (refused if unknown or skipped)."""
    return parse_series(series, predictor)


@task(name="forecast-table")
def forecast_table(predictor: Predictor) -> pd.DataFrame:
    """Every forecastable series at every publication date up to the end of next month."""
    return build_forecast(predictor)


@task(name="forecast-files")
def forecast_files(
    lake: Lake, predictor: Predictor, forecast: pd.DataFrame, series: list[SeriesKey]
) -> dict[str, str]:
    """Parquet, CSV and plots rendered, then written to the lake; their URIs by key."""
    uris = write_forecast_files(lake, render_forecast_files(predictor, forecast, series))
    get_run_logger().info("wrote %s", ", ".join(uris.values()))
    return uris


@task(name="forecast-artifacts")
def forecast_artifacts(
    predictor: Predictor, forecast: pd.DataFrame, uris: dict[str, str]
) -> list[dict[str, object]]:
    """Prefect artifacts: the forecast per Estado x Tipo, and a summary with skipped series."""
    rows = forecast_table_rows(predictor, forecast)
    create_table_artifact(
        table=rows,
        key=FORECAST_TABLE_KEY,
        description=(
            f"Forecast at {forecast['Fecha'].max().date()} per Estado x Tipo (the average over "
            "cities and channels, with its own 80% interval), model version "
            f"{predictor.info.version}, cut-off "
            f"{predictor.cutoff.date()}"
        ),
    )
    create_markdown_artifact(
        markdown=forecast_summary_markdown(predictor, forecast, uris),
        key=FORECAST_SUMMARY_KEY,
        description=f"Batch forecast at cut-off {predictor.cutoff.date()}",
    )
    return rows

"""The batch forecast flow ``forecast(source, cutoff, series)``, named ``milk-price-forecast``.

Served as the ``daily-forecast`` deployment (see :mod:`orchestration.deployments`): every evening,
and at once when the training flow promotes a new champion (the
``milkprice.champion.promoted`` event). From the command line: ``milkprice forecast``.
"""

from __future__ import annotations

from datetime import date
from typing import Literal

from prefect import flow

from milkprice.data.lake import Lake
from milkprice.pipeline.forecast_run import ForecastResult, forecast_result
from milkprice.settings import get_settings
from orchestration.events import alert_on_failure
from orchestration.tasks.forecasting import (
    champion_predictor,
    data_cutoff,
    forecast_artifacts,
    forecast_files,
    forecast_table,
    plotted_series,
)

__all__ = ["FORECAST_FLOW_NAME", "forecast"]

FORECAST_FLOW_NAME = "milk-price-forecast"


@flow(name=FORECAST_FLOW_NAME, log_prints=True, on_failure=[alert_on_failure])
def forecast(
    source: Literal["local", "s3"] = "local",
    cutoff: date | None = None,
    series: list[str] | None = None,
) -> ForecastResult:
    """Forecast every series with the champion; write parquet, CSV and plots to the lake.

    Args:
        source: which lake to read the history from and write the forecast to.
        cutoff: the data cut-off (default: the newest publication date in the lake).
        series: ``Estado/Ciudad/Tipo/Canal`` of series that get a plot of their own.
    """
    settings = get_settings()
    lake = Lake.from_settings(settings, source)
    at = data_cutoff(lake, cutoff)
    predictor = champion_predictor(settings, source, at)
    plotted = plotted_series(series, predictor)
    table = forecast_table(predictor)
    uris = forecast_files(lake, predictor, table, plotted)
    forecast_artifacts(predictor, table, uris)
    result = forecast_result(predictor, table, source, uris)
    print(
        f"cut-off {result.cutoff}: {result.rows} rows ({result.series_forecast} series, "
        f"{result.series_skipped} skipped) with version {result.model_version} -> "
        f"{result.parquet_uri}"
    )
    return result

"""Response schemas of the explorer's JSON endpoints (``/explorer/options``, ``/explorer/view``)."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, Field

__all__ = [
    "AnchorInfo",
    "ExplorerSeries",
    "ForecastPoint",
    "HistoryPoint",
    "ModelCard",
    "OptionsResponse",
    "Scope",
    "ScoredMonthItem",
    "ViewResponse",
]

# A single series, a state's average over its cities, or the national average over every city.
Scope = Literal["series", "state", "nation"]


class ExplorerSeries(BaseModel):
    """A forecastable series (as ``GET /series`` lists it)."""

    estado: str
    ciudad: str
    tipo: str
    canal: str
    last_price: float


class ModelCard(BaseModel):
    """The model in service: version, when and on what it was trained, how it validated."""

    name: str
    version: str
    validation_month: str
    run_id: str
    trained_at: datetime | None = Field(description="Start of the training run (UTC).")
    trained_on: dict[str, str] = Field(
        description="Registered version's tags: source, training months, data fingerprint, "
        "code version."
    )
    validation: dict[str, float] = Field(
        description="Validation-month metrics (ratios to the naive forecast, coverage)."
    )
    cutoff: date
    last_date: date
    interval_method: str
    max_horizon_days: int
    aggregate_dependence: float = Field(
        description="Correlation of the series' errors used for state and national intervals."
    )


class ScoredMonthItem(BaseModel):
    """One month of stored forecasts scored by the monitoring flow."""

    month: str
    scored: int
    rmse_ratio: float | None = Field(description="RMSE over the naive forecast's (< 1: better).")
    mae_ratio: float | None = Field(description="MAE over the naive forecast's (< 1: better).")
    coverage_80: float | None
    coverage_95: float | None


class OptionsResponse(BaseModel):
    """Everything the page needs to offer choices and describe the model."""

    model: ModelCard
    accuracy: list[ScoredMonthItem] = Field(description="Scored months, oldest first.")
    accuracy_note: str | None = Field(description="Why no scored month is shown, if none is.")
    series: list[ExplorerSeries]
    estados: list[str]
    tipos: list[str]
    canales: list[str]


class HistoryPoint(BaseModel):
    """A published price (a series' reading, or the mean over the scope's series that day)."""

    fecha: date
    precio: float
    n_series: int = Field(description="Series averaged (1 for a series).")
    suspect: int = Field(description="Readings among them the quality checks found suspect.")
    p_glitch: float | None = Field(description="A suspect series reading's p_glitch; else null.")
    settled: str | None = Field(description="How a suspect series reading settled (glitch, move).")


class ForecastPoint(BaseModel):
    """The forecast at one date: the series' answer, or the aggregate's interval."""

    fecha: date
    price: float = Field(description="Median.")
    mean: float
    p_change: float | None = Field(description="Series only: probability the price changes.")
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float
    n_series: int


class AnchorInfo(BaseModel):
    """The last published price a series' forecast starts from, and its quality verdict."""

    anchor: float
    anchor_date: date
    suspect: bool
    p_glitch: float


class ViewResponse(BaseModel):
    """The last six months of prices and the forecast to the end of next month, for one scope."""

    scope: Scope
    estado: str | None
    ciudad: str | None
    tipo: str
    canal: str
    model_version: str
    cutoff: date
    n_series: int
    interval: str = Field(description="How the bands were computed.")
    anchor: AnchorInfo | None = Field(description="Series only.")
    suspect_anchors: int = Field(description="Series of the scope whose anchor is suspect.")
    history: list[HistoryPoint]
    forecast: list[ForecastPoint]

"""Request and response schemas of the prediction API (pydantic; they make the OpenAPI document).

Field limits are the API's first line of defence: at most 10,000 rows, names of 1 to 100
printable characters (no control characters), milk type and channel from the values the lake
knows.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "MAX_ROWS",
    "Canal",
    "ErrorResponse",
    "ModelResponse",
    "PredictRequest",
    "PredictResponse",
    "PredictRow",
    "Prediction",
    "SeriesItem",
    "SeriesKeyModel",
    "SeriesResponse",
    "SkippedItem",
    "Tipo",
]

MAX_ROWS = 10_000
_NAME_MAX = 100
# Printable text only: no control characters (NUL, newlines that forge log lines, escapes).
_NAME_PATTERN = r"^[^\x00-\x1f\x7f]+$"

# The values of milkprice.data.schema TIPOS / CANALES (tests check they agree).
Tipo = Literal["Pasteurizada", "Ultrapasteurizada"]
Canal = Literal["Tiendas", "Autoservicios"]


class SeriesKeyModel(BaseModel):
    """One series: state, city, milk type and sales channel (as in ``GET /series``)."""

    model_config = ConfigDict(extra="forbid")

    estado: str = Field(
        min_length=1, max_length=_NAME_MAX, pattern=_NAME_PATTERN, examples=["Aguascalientes"]
    )
    ciudad: str = Field(
        min_length=1, max_length=_NAME_MAX, pattern=_NAME_PATTERN, examples=["Aguascalientes"]
    )
    tipo: Tipo
    canal: Canal


class PredictRow(SeriesKeyModel):
    """One requested forecast: a series at a date after the data cut-off."""

    fecha: date = Field(description="Date to forecast, after the cut-off, within the horizon.")


class PredictRequest(BaseModel):
    """Rows to forecast (1 to 10,000)."""

    model_config = ConfigDict(extra="forbid")

    rows: list[PredictRow] = Field(min_length=1, max_length=MAX_ROWS)


class Prediction(BaseModel):
    """The forecast distribution of one price (pesos per litre) and the anchor it starts from."""

    estado: str
    ciudad: str
    tipo: str
    canal: str
    fecha: date
    price: float = Field(description="Median: the forecast to read (what MAE is scored on).")
    mean: float = Field(description="Expected price (what RMSE is scored on).")
    p_change: float = Field(
        ge=0, le=1, description="Probability that the published price differs from the anchor."
    )
    lower_80: float
    upper_80: float
    lower_95: float
    upper_95: float
    anchor: float = Field(description="Last published price trusted as the anchor.")
    anchor_date: date = Field(description="Publication date of the anchor.")
    suspect: bool = Field(
        description="The anchor jumped from its level and no later publication has settled it."
    )
    p_glitch: float = Field(
        ge=0, le=1, description="Probability that a suspect anchor is a glitch (0 if not suspect)."
    )


class PredictResponse(BaseModel):
    """Forecasts in the order of the request's rows, with the model and cut-off behind them."""

    model_version: str
    cutoff: date
    predictions: list[Prediction]


class ModelResponse(BaseModel):
    """The model version served, its validation metrics and the data it forecasts from."""

    name: str
    version: str
    validation_month: str
    run_id: str
    metrics: dict[str, float]
    cutoff: date = Field(description="Last date whose prices the forecasts use.")
    last_date: date = Field(description="Last date a forecast may be asked for.")
    interval_method: str
    max_horizon_days: int
    series: int = Field(description="Number of forecastable series.")
    loaded_at: datetime
    reload_error: str | None = Field(
        description="Why the last reload failed (the model above is still served); else null."
    )


class SeriesItem(SeriesKeyModel):
    """A forecastable series and its last reported price."""

    last_price: float


class SkippedItem(SeriesKeyModel):
    """A series known to the lake but not forecast, and why."""

    reason: str


class SeriesResponse(BaseModel):
    """Every forecastable series, and those skipped with the reason."""

    series: list[SeriesItem]
    skipped: list[SkippedItem]


class ErrorResponse(BaseModel):
    """Why the request cannot be answered now."""

    detail: str

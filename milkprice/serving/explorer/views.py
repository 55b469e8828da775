"""What the explorer shows, computed from the served predictor: no HTTP here.

:class:`ExplorerData` is built once per served model (:func:`explorer_data`): the last six
months of published prices of the forecast series with their quality verdicts, and the
forecast of every series at every publication date to the end of next month, made by
:meth:`Predictor.forecast`, the code path of ``/predict`` and the batch forecast. A view
(:func:`build_view`) is a slice of those: a series' own answers, or for a state or the nation
the mean of the series' prices with the *aggregate's* interval (:func:`aggregate_forecast`,
simulated from the series' distributions), never the mean of the series' bounds.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd

from milkprice.data.lake import Lake
from milkprice.data.quality import assess_readings
from milkprice.model.aggregate import aggregate_forecast, dependence_of
from milkprice.model.features import SERIES_KEYS
from milkprice.months import Month, month_range
from milkprice.serving.explorer.schemas import (
    AnchorInfo,
    ForecastPoint,
    HistoryPoint,
    Scope,
    ViewResponse,
)
from milkprice.serving.predictor import Predictor, forecast_dates

__all__ = [
    "AGGREGATE_DRAWS",
    "AGGREGATE_SEED",
    "BAND_COLUMNS",
    "CSV_COLUMNS",
    "HISTORY_MONTHS_SHOWN",
    "ExplorerData",
    "ViewError",
    "build_view",
    "explorer_data",
    "read_recent_history",
    "view_csv",
]

# Months of published prices shown before the cut-off.
HISTORY_MONTHS_SHOWN = 6
# Months read before the first shown: the quality verdicts need a settled level to start from.
_WARM_UP_MONTHS = 1
BAND_COLUMNS = ["price", "mean", "lower_80", "upper_80", "lower_95", "upper_95"]
# Draws of the aggregate simulation (its default) and a fixed seed: a view is reproducible.
AGGREGATE_DRAWS, AGGREGATE_SEED = 2000, 0


class ViewError(ValueError):
    """A view's parameter names nothing the served model forecasts; ``param`` says which."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class ExplorerData:
    """What every view of one served model is cut from (built once per model).

    Attributes:
        predictor: The served predictor.
        history: Published readings (not missing) of the forecast series over the last
            :data:`HISTORY_MONTHS_SHOWN` months up to the cut-off: series keys, ``Fecha``,
            ``Precio``, ``suspect`` (bool), ``p_glitch``, ``settled``.
        forecast: :meth:`Predictor.forecast` of every series at every publication date after
            the cut-off to the end of next month.
        dependence: The dependence the aggregates are simulated with.
    """

    predictor: Predictor
    history: pd.DataFrame
    forecast: pd.DataFrame
    dependence: float


def read_recent_history(lake: Lake, cutoff: pd.Timestamp) -> pd.DataFrame:
    """The lake's rows of the months shown (plus the warm-up month) up to ``cutoff``."""
    last = Month.of(cutoff)
    first = last.shift(-(HISTORY_MONTHS_SHOWN + _WARM_UP_MONTHS))
    frame = lake.read_window(month_range(first, last)).frame
    return frame.loc[frame["Fecha"] <= cutoff].reset_index(drop=True)


def explorer_data(predictor: Predictor, prices: pd.DataFrame) -> ExplorerData:
    """The history (with verdicts) and the full forecast of ``predictor`` over ``prices``.

    Args:
        predictor: The served predictor.
        prices: Tidy lake rows reaching back before the months shown
            (:func:`read_recent_history`).
    """
    cutoff = predictor.cutoff
    verdicts = assess_readings(prices.loc[prices["Fecha"] <= cutoff])
    since = cutoff - pd.DateOffset(months=HISTORY_MONTHS_SHOWN)
    shown = verdicts.loc[(verdicts["Fecha"] > since) & (verdicts["verdict"] != "missing")]
    shown = shown.merge(predictor.series[SERIES_KEYS], on=SERIES_KEYS)
    history = pd.DataFrame(
        {
            **{key: shown[key].to_numpy() for key in SERIES_KEYS},
            "Fecha": shown["Fecha"].to_numpy(),
            "Precio": shown["Precio"].to_numpy(dtype=float),
            "suspect": (shown["verdict"] == "suspect").to_numpy(),
            "p_glitch": shown["p_glitch"].to_numpy(dtype=float),
            "settled": shown["settled"].astype(str).to_numpy(),
        }
    ).sort_values([*SERIES_KEYS, "Fecha"], ignore_index=True)
    forecast = predictor.forecast(forecast_dates(cutoff))
    return ExplorerData(predictor, history, forecast, dependence_of(predictor.forecaster))


def _select(frame: pd.DataFrame, keys: dict[str, str]) -> pd.DataFrame:
    mask = np.ones(len(frame), dtype=bool)
    for column, value in keys.items():
        mask &= frame[column].to_numpy() == value
    return frame.loc[mask]


def _scope_keys(
    data: ExplorerData,
    scope: Scope,
    *,
    estado: str | None,
    ciudad: str | None,
    tipo: str,
    canal: str,
) -> dict[str, str]:
    """The series-key columns a scope fixes, checked against the series served."""
    series = data.predictor.series
    keys = {"Tipo": tipo, "Canal": canal}
    if scope in ("state", "series"):
        if not estado:
            raise ViewError("estado", f"estado is required for scope={scope}")
        if estado not in set(series["Estado"]):
            raise ViewError("estado", f"unknown estado {estado!r} (see GET /explorer/options)")
        keys["Estado"] = estado
    if scope == "series":
        if not ciudad:
            raise ViewError("ciudad", "ciudad is required for scope=series")
        if ciudad not in set(series.loc[series["Estado"] == estado, "Ciudad"]):
            raise ViewError("ciudad", f"unknown ciudad {ciudad!r} in {estado} (see options)")
        keys["Ciudad"] = ciudad
    if _select(series, keys).empty:
        place = {k: v for k, v in keys.items() if k in ("Estado", "Ciudad")}
        where = "/".join(place.values()) or "the nation"
        param = "tipo" if _select(series, {**place, "Tipo": tipo}).empty else "canal"
        raise ViewError(param, f"no series {tipo}/{canal} is forecast in {where}")
    return keys


def build_view(
    data: ExplorerData,
    scope: Scope,
    *,
    tipo: str,
    canal: str,
    estado: str | None = None,
    ciudad: str | None = None,
) -> ViewResponse:
    """One scope's history and forecast.

    Raises:
        ViewError: ``estado``/``ciudad`` missing or unknown for the scope, or no series of
            ``tipo``/``canal`` there (``param`` names the parameter at fault).
    """
    keys = _scope_keys(data, scope, estado=estado, ciudad=ciudad, tipo=tipo, canal=canal)
    predictor = data.predictor
    past = _select(data.history, keys)
    ahead = _select(data.forecast, keys)
    anchor = None
    if scope == "series":
        history = [
            HistoryPoint(
                fecha=row.Fecha.date(),
                precio=float(row.Precio),
                n_series=1,
                suspect=int(row.suspect),
                p_glitch=round(float(row.p_glitch), 4) if row.suspect else None,
                settled=(row.settled or None) if row.suspect else None,
            )
            for row in past.itertuples(index=False)
        ]
        forecast = [
            ForecastPoint(fecha=row.Fecha.date(), n_series=1, **{
                name: float(getattr(row, name)) for name in [*BAND_COLUMNS, "p_change"]
            })
            for row in ahead.itertuples(index=False)
        ]  # fmt: skip
        first = ahead.iloc[0]
        anchor = AnchorInfo(
            anchor=float(first["anchor"]),
            anchor_date=pd.Timestamp(first["anchor_date"]).date(),
            suspect=bool(first["suspect"]),
            p_glitch=float(first["p_glitch"]),
        )
        interval = "the series' own forecast distribution (as POST /predict answers)"
    else:
        by = ["Estado", "Tipo", "Canal"] if scope == "state" else ["Tipo", "Canal"]
        daily = past.groupby("Fecha", sort=True).agg(
            precio=("Precio", "mean"), n_series=("Precio", "size"), suspect=("suspect", "sum")
        )
        history = [
            HistoryPoint(
                fecha=day.date(),
                precio=round(float(row.precio), 4),
                n_series=int(row.n_series),
                suspect=int(row.suspect),
                p_glitch=None,
                settled=None,
            )
            for day, row in daily.iterrows()
        ]
        table = aggregate_forecast(
            ahead, by, dependence=data.dependence, draws=AGGREGATE_DRAWS, seed=AGGREGATE_SEED
        )
        forecast = [
            ForecastPoint(
                fecha=pd.Timestamp(row["Fecha"]).date(),
                n_series=int(row["n_series"]),
                p_change=None,
                **{name: round(float(row[name]), 4) for name in BAND_COLUMNS},
            )
            for row in table.to_dict(orient="records")
        ]
        interval = (
            "the interval of the average, simulated from the series' forecast distributions "
            f"(dependence {data.dependence:.2f}), not the mean of the series' bounds"
        )
    return ViewResponse(
        scope=scope,
        estado=keys.get("Estado"),
        ciudad=keys.get("Ciudad"),
        tipo=tipo,
        canal=canal,
        model_version=predictor.info.version,
        cutoff=predictor.cutoff.date(),
        n_series=int(ahead[SERIES_KEYS].drop_duplicates().shape[0]),
        interval=interval,
        anchor=anchor,
        suspect_anchors=int(ahead.drop_duplicates(SERIES_KEYS)["suspect"].sum()),
        history=history,
        forecast=forecast,
    )


CSV_COLUMNS = [
    "kind", "scope", "estado", "ciudad", "tipo", "canal", "fecha", "precio", "suspect",
    "p_glitch", "settled", *BAND_COLUMNS, "p_change", "n_series",
]  # fmt: skip


def view_csv(view: ViewResponse) -> str:
    """The view as CSV: one row per history point (``kind=history``) and forecast date."""
    about = {
        "scope": view.scope,
        "estado": view.estado,
        "ciudad": view.ciudad,
        "tipo": view.tipo,
        "canal": view.canal,
    }
    rows = [{"kind": "history", **about, **point.model_dump()} for point in view.history]
    rows += [{"kind": "forecast", **about, **point.model_dump()} for point in view.forecast]
    frame = pd.DataFrame(rows, columns=CSV_COLUMNS)
    # Counts stay integers where the other kind of row leaves them empty.
    frame[["suspect", "n_series"]] = frame[["suspect", "n_series"]].astype("Int64")
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, date_format="%Y-%m-%d")
    return buffer.getvalue()

"""One predictor for the batch forecast and the API: a registered model plus its history.

A :class:`Predictor` holds the forecaster of one registered version, its interval table and the
per-series features at a data cut-off, computed once from the lake when it is built. A request
names only series and dates (never lags or prices), so the features the model sees are always
the ones the server computed: no train/serve skew. Answering costs a dictionary lookup per row,
one booster call for all rows and a table lookup for the intervals.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np
import pandas as pd

from milkprice.data.quality import anchor_verdicts, assess_readings
from milkprice.model.answers import ANSWER_COLUMNS, DECIMALS, Forecaster, answer_columns
from milkprice.model.features import ANCHOR_COLUMN, FEATURE_COLUMNS, SERIES_KEYS, series_features
from milkprice.model.intervals import IntervalTable

__all__ = [
    "ANCHOR_INFO_COLUMNS",
    "DECIMALS",
    "FORECAST_COLUMNS",
    "STALE_AFTER_DAYS",
    "ModelInfo",
    "PredictionInputError",
    "Predictor",
    "RowError",
    "SeriesKey",
    "forecast_dates",
]

SeriesKey = tuple[str, str, str, str]
# Output columns of every forecast, batch or API: the distribution's numbers, then the anchor
# they start from and its quality verdict (a suspect anchor carries its p_glitch).
ANCHOR_INFO_COLUMNS: list[str] = ["anchor", "anchor_date", "suspect", "p_glitch"]
FORECAST_COLUMNS: list[str] = [*ANSWER_COLUMNS, *ANCHOR_INFO_COLUMNS]
# A series with no reported price in the 8 weeks before the cut-off is not forecast: its last
# price says little about today's, and the model never learnt from such long gaps.
STALE_AFTER_DAYS = 56
_HORIZON = FEATURE_COLUMNS.index("horizon_days")


@dataclass(frozen=True)
class ModelInfo:
    """What a forecast says about the model behind it."""

    name: str
    version: str
    validation_month: str
    run_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    # When its training run started, and the registered version's tags (source, training
    # months, data fingerprint, code version): what it was trained on.
    trained_at: datetime | None = None
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class RowError:
    """Why one requested row cannot be answered."""

    index: int
    field: str
    message: str


class PredictionInputError(ValueError):
    """Some requested rows cannot be answered; :attr:`errors` names each row and field."""

    def __init__(self, errors: list[RowError]) -> None:
        self.errors = errors
        shown = "; ".join(f"row {e.index} ({e.field}): {e.message}" for e in errors[:5])
        more = f" (+{len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"{len(errors)} row(s) cannot be forecast: {shown}{more}")


def forecast_dates(cutoff: pd.Timestamp) -> list[pd.Timestamp]:
    """Publication days (Mon, Wed, Fri) after ``cutoff`` up to the end of the following month."""
    cutoff = pd.Timestamp(cutoff).normalize()
    last = (cutoff + pd.offsets.MonthEnd(0)) + pd.offsets.MonthEnd(1)
    days = pd.date_range(cutoff + pd.Timedelta(days=1), last, freq="D")
    return [pd.Timestamp(d) for d in days if d.weekday() in (0, 2, 4)]


class Predictor:
    """Forecasts with intervals for any (series, date) after the cut-off, up to the max horizon.

    Args:
        forecaster: A fitted forecaster with an interval table (``intervals_``).
        info: The registered version it came from.
        history: Clean tidy rows up to the cut-off (rows after it are ignored); about four
            months are enough for every feature.
        cutoff: The data cut-off: the last date whose prices the forecasts may use.
        stale_after_days: Series with no price in this many days before the cut-off are skipped.

    Raises:
        ValueError: the forecaster has no interval table, or no series can be forecast.
    """

    def __init__(
        self,
        forecaster: Forecaster,
        info: ModelInfo,
        history: pd.DataFrame,
        cutoff: pd.Timestamp,
        *,
        stale_after_days: int = STALE_AFTER_DAYS,
    ) -> None:
        intervals: IntervalTable | None = getattr(forecaster, "intervals_", None)
        if intervals is None:
            raise ValueError(
                f"model {info.name} version {info.version} has no interval table (trained "
                "before intervals existed); run the training flow to register a new version"
            )
        self.forecaster = forecaster
        self.intervals = intervals
        self.info = info
        self.cutoff = pd.Timestamp(cutoff).normalize()
        # Kept for reports (plots of the recent past); never used to answer a request.
        self.history = history.loc[history["Fecha"] <= self.cutoff].reset_index(drop=True)
        verdicts = assess_readings(self.history)
        per_series = series_features(self.history, self.cutoff, verdicts)
        anchors = anchor_verdicts(verdicts, self.cutoff).table[[*SERIES_KEYS, "anchor_date"]]
        per_series = per_series.merge(anchors, on=SERIES_KEYS, how="left")
        fresh = per_series["days_since_obs"].to_numpy() <= stale_after_days
        self.skipped = _skipped(per_series.loc[~fresh], stale_after_days)
        usable = per_series.loc[fresh].reset_index(drop=True)
        if usable.empty:
            raise ValueError(
                f"no series has a price in the {stale_after_days} days up to the cut-off "
                f"{self.cutoff.date()}; ingest newer data or choose an earlier cut-off"
            )
        self.series = usable[[*SERIES_KEYS, ANCHOR_COLUMN]].rename(
            columns={ANCHOR_COLUMN: "last_price"}
        )
        keys = usable[SERIES_KEYS].itertuples(index=False, name=None)
        self._index: dict[SeriesKey, int] = {key: i for i, key in enumerate(keys)}
        self._skipped_keys = {
            tuple(row[:4]): row[4] for row in self.skipped.itertuples(index=False, name=None)
        }
        self._features = usable[FEATURE_COLUMNS].to_numpy(dtype=float)
        self._p_glitch = usable["p_glitch"].to_numpy(dtype=float)
        self._previous = usable["previous_level"].to_numpy(dtype=float)
        self._anchor = np.round(usable[ANCHOR_COLUMN].to_numpy(dtype=float), DECIMALS)
        # Days (not nanoseconds): ``tolist()`` gives dates, for JSON answers and table artifacts.
        self._anchor_date = pd.to_datetime(usable["anchor_date"]).to_numpy().astype("datetime64[D]")
        self._suspect = self._p_glitch > 0

    @property
    def max_horizon_days(self) -> int:
        """The longest horizon answered (the interval table's)."""
        return self.intervals.max_horizon_days

    @property
    def last_date(self) -> pd.Timestamp:
        """The last date a forecast may be asked for."""
        return self.cutoff + pd.Timedelta(days=self.max_horizon_days)

    def check(self, keys: Sequence[SeriesKey], dates: Sequence[pd.Timestamp]) -> list[RowError]:
        """Every row that cannot be answered, with the field at fault."""
        errors: list[RowError] = []
        for i, (key, when) in enumerate(zip(keys, dates, strict=True)):
            if key not in self._index:
                reason = self._skipped_keys.get(key)
                message = (
                    f"series {'/'.join(key)} is not forecast: {reason}"
                    if reason
                    else f"unknown series {'/'.join(key)} (see GET /series)"
                )
                errors.append(RowError(i, "ciudad", message))
            elif when <= self.cutoff:
                errors.append(
                    RowError(
                        i,
                        "fecha",
                        f"{when.date()} is on or before the cut-off "
                        f"{self.cutoff.date()}; ask for a later date",
                    )
                )
            elif when > self.last_date:
                errors.append(
                    RowError(
                        i,
                        "fecha",
                        f"{when.date()} is beyond the horizon of this model "
                        f"({self.max_horizon_days} days: last date {self.last_date.date()})",
                    )
                )
        return errors

    def predict_keys(
        self, keys: Sequence[SeriesKey], dates: Sequence[pd.Timestamp]
    ) -> dict[str, np.ndarray]:
        """:data:`FORECAST_COLUMNS` per row (arrays), the one code path of batch and API.

        Raises:
            PredictionInputError: some rows name an unknown or skipped series, or a date out
                of ``(cutoff, cutoff + max_horizon_days]``.
        """
        errors = self.check(keys, dates)
        if errors:
            raise PredictionInputError(errors)
        rows = np.fromiter((self._index[k] for k in keys), dtype=np.int64, count=len(keys))
        horizon = np.fromiter(
            ((d - self.cutoff).days for d in dates), dtype=float, count=len(dates)
        )
        matrix = self._features[rows]
        matrix[:, _HORIZON] = horizon
        answers = answer_columns(
            self.forecaster, matrix, self._p_glitch[rows], self._previous[rows], horizon
        )
        return {
            **answers,
            "anchor": self._anchor[rows],
            "anchor_date": self._anchor_date[rows],
            "suspect": self._suspect[rows],
            "p_glitch": np.round(self._p_glitch[rows], DECIMALS),
        }

    def predict(self, requests: pd.DataFrame) -> pd.DataFrame:
        """``requests`` (``SERIES_KEYS``, ``Fecha``) with :data:`FORECAST_COLUMNS` added."""
        keys = list(requests[SERIES_KEYS].itertuples(index=False, name=None))
        dates = [pd.Timestamp(d) for d in requests["Fecha"]]
        out = requests[[*SERIES_KEYS, "Fecha"]].reset_index(drop=True).copy()
        for name, values in self.predict_keys(keys, dates).items():
            out[name] = values
        return out

    def forecast(
        self, dates: Sequence[pd.Timestamp], series: pd.DataFrame | None = None
    ) -> pd.DataFrame:
        """Every forecastable series (or ``series``) at every date, with model version and cut-off."""
        chosen = self.series[SERIES_KEYS] if series is None else series[SERIES_KEYS]
        grid = chosen.merge(pd.DataFrame({"Fecha": pd.DatetimeIndex(dates)}), how="cross")
        out = self.predict(grid)
        out["horizon_days"] = (out["Fecha"] - self.cutoff).dt.days
        out["model_version"] = self.info.version
        out["cutoff"] = self.cutoff
        return out


def _skipped(per_series: pd.DataFrame, stale_after_days: int) -> pd.DataFrame:
    days = per_series["days_since_obs"]
    reason = np.where(
        days.isna(),
        "no price reported in the history read",
        "no price in the "
        + str(stale_after_days)
        + " days before the cut-off (last "
        + days.fillna(0).astype(int).astype(str)
        + " days before)",
    )
    return per_series[SERIES_KEYS].assign(reason=reason).reset_index(drop=True)

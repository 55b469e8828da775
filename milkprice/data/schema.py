"""The schema of the lake's rows and the validation every read and write goes through.

One row is one price of one series on one publication date. Validation is declared with
pandera; this module adds the SNIIM-specific repairs that are not errors (zero prices and
national-average rows) and turns pandera's failure table into one message a user can act on.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow
from pandera.errors import SchemaErrors

from milkprice.months import Month

__all__ = [
    "CANALES",
    "COLUMNS",
    "KEY_COLUMNS",
    "SERIES_KEYS",
    "TIPOS",
    "LakeDataError",
    "ValidationSummary",
    "normalize_frame",
    "validate_frame",
]

SERIES_KEYS = ["Estado", "Ciudad", "Tipo", "Canal"]
KEY_COLUMNS = ["Fecha", *SERIES_KEYS]
COLUMNS = [*KEY_COLUMNS, "Precio"]
TIPOS = ("Pasteurizada", "Ultrapasteurizada")
CANALES = ("Tiendas", "Autoservicios")
_AVERAGE_MARKER = "promedio"
_MAX_EXAMPLES = 5


class LakeDataError(ValueError):
    """Rows that cannot enter (or come out of) the lake; the message names file and column."""


@dataclass(frozen=True)
class ValidationSummary:
    """What validation saw and repaired, for logging next to every read and write."""

    origin: str
    rows: int
    missing_prices: int
    non_positive_prices: int
    dropped_average_rows: int
    series: int
    dates: int

    def to_dict(self) -> dict[str, object]:
        """Plain dict, for logs, artifacts and MLflow params."""
        return asdict(self)


def _schema(month: Month | None) -> pa.DataFrameSchema:
    # The lake holds publication dates: a time of day means the rows came from somewhere else
    # (or a time zone was dropped the wrong way) and would never line up with other dates.
    fecha_checks = [pa.Check(lambda s: s == s.dt.normalize(), error="no time of day (dates only)")]
    if month is not None:
        fecha_checks.append(
            pa.Check(
                lambda s: (s >= month.start) & (s < month.shift(1).start),
                error=f"date outside the partition month {month}",
            )
        )
    return pa.DataFrameSchema(
        {
            "Fecha": pa.Column(pa.DateTime, checks=fecha_checks, nullable=False),
            "Estado": pa.Column(pa.String, pa.Check.str_length(min_value=1), nullable=False),
            "Ciudad": pa.Column(pa.String, pa.Check.str_length(min_value=1), nullable=False),
            "Tipo": pa.Column(pa.String, pa.Check.isin(TIPOS), nullable=False),
            "Canal": pa.Column(pa.String, pa.Check.isin(CANALES), nullable=False),
            "Precio": pa.Column(
                pa.Float64,
                [pa.Check.gt(0), pa.Check(np.isfinite, error="finite (not inf)")],
                nullable=True,
            ),
        },
        strict=True,
        ordered=False,
        unique=KEY_COLUMNS,
        report_duplicates="all",
    )


def _describe_failures(origin: str, error: SchemaErrors, frame: pd.DataFrame) -> str:
    cases = error.failure_cases
    lines = [f"{origin}: invalid rows"]
    uniqueness = cases[cases["check"].astype(str).str.contains("uniqueness")]
    if not uniqueness.empty:
        duplicated = frame.loc[frame.duplicated(KEY_COLUMNS, keep="first"), KEY_COLUMNS]
        examples = [
            f"{row.Fecha:%Y-%m-%d} {row.Estado}/{row.Ciudad}/{row.Tipo}/{row.Canal}"
            for row in duplicated.head(_MAX_EXAMPLES).itertuples()
        ]
        lines.append(
            f"  duplicate rows for the key ({', '.join(KEY_COLUMNS)}): "
            f"{len(duplicated)} repeated, e.g. {examples}"
        )
    others = cases.drop(uniqueness.index)
    for (column, check), group in others.groupby(["column", "check"], sort=False, dropna=False):
        located = [
            f"{_row_label(frame, index)}: {value}"
            for index, value in zip(group["index"], group["failure_case"], strict=True)
            if _row_label(frame, index)
        ]
        examples = located[:_MAX_EXAMPLES] or (
            group["failure_case"].astype(str).unique()[:_MAX_EXAMPLES].tolist()
        )
        lines.append(
            f"  column {column!r}: {check} failed for {len(group)} value(s), e.g. {examples}"
        )
    return "\n".join(lines)


def _row_label(frame: pd.DataFrame, index: object) -> str:
    """``row N (date state/city/tipo/canal)`` for a row of the input (N counts from 0), or ``""``."""
    if not isinstance(index, int | np.integer) or index not in frame.index:
        return ""
    row = frame.loc[index]
    fecha = row["Fecha"]
    day = f"{fecha:%Y-%m-%d}" if isinstance(fecha, pd.Timestamp) else str(fecha)
    return f"row {index} ({day} {'/'.join(str(row[key]) for key in SERIES_KEYS)})"


def normalize_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Canonical dtypes, column order and row order, so that equal data gives equal bytes."""
    out = frame.loc[:, COLUMNS].copy()
    out["Fecha"] = out["Fecha"].astype("datetime64[ns]")
    for column in SERIES_KEYS:
        out[column] = out[column].astype("str")
    out["Precio"] = out["Precio"].astype("float64")
    return out.sort_values(KEY_COLUMNS, kind="stable").reset_index(drop=True)


def _holds_timestamps(column: pd.Series) -> bool:
    """Whether a column holds numpy datetimes (naive or zoned) or Arrow timestamps."""
    if pd.api.types.is_datetime64_any_dtype(column):
        return True
    arrow_type = getattr(column.dtype, "pyarrow_dtype", None)
    return arrow_type is not None and pyarrow.types.is_timestamp(arrow_type)


def _check_columns(frame: pd.DataFrame, origin: str) -> None:
    missing = [c for c in COLUMNS if c not in frame.columns]
    extra = [c for c in frame.columns if c not in COLUMNS]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if extra:
            parts.append(f"unexpected column(s) {extra}")
        raise LakeDataError(f"{origin}: {'; '.join(parts)}; expected exactly {COLUMNS}")
    if not _holds_timestamps(frame["Fecha"]):
        raise LakeDataError(
            f"{origin}: column 'Fecha' must hold dates, found dtype {frame['Fecha'].dtype}"
        )
    precio = frame["Precio"]
    if not (pd.api.types.is_numeric_dtype(precio) and not pd.api.types.is_bool_dtype(precio)):
        raise LakeDataError(
            f"{origin}: column 'Precio' must be numeric (MXN per litre), found dtype {precio.dtype}"
        )


def validate_frame(
    frame: pd.DataFrame, *, origin: str, month: Month | None = None
) -> tuple[pd.DataFrame, ValidationSummary]:
    """Validate rows for the lake and return them canonical, with a summary.

    Args:
        frame: tidy rows with the columns of :data:`COLUMNS`.
        origin: what the rows come from (a file path or URI); every error names it.
        month: when given, every ``Fecha`` must fall inside this month (a partition).

    Returns:
        The clean frame (average rows dropped, prices <= 0 set to missing, canonical
        dtypes and order) and what was done to it.

    Raises:
        LakeDataError: missing/extra columns, wrong types, unknown ``Tipo``/``Canal``,
            duplicate (Fecha, series) rows, dates with a time of day or outside ``month``,
            infinite prices. The message names ``origin``, the column and example rows
            (position in ``frame``, counted from 0, with the row's date and series).
    """
    _check_columns(frame, origin)
    work = frame.reset_index(drop=True)
    # Any numeric price (int, float32, nullable Float64/Int64, pyarrow double) and any date
    # dtype (other resolutions, time zones, pyarrow timestamps) is the same data: make it
    # float64 / naive datetime64[ns] here rather than fail on a dtype the user did not choose.
    work["Precio"] = work["Precio"].astype("float64")
    fecha = work["Fecha"]
    if getattr(fecha.dt, "tz", None) is not None:
        fecha = fecha.dt.tz_localize(None)
    try:
        work["Fecha"] = fecha.astype("datetime64[ns]")
    except (OverflowError, ValueError) as exc:  # OutOfBoundsDatetime is a ValueError
        raise LakeDataError(f"{origin}: column 'Fecha' holds dates out of range ({exc})") from exc
    is_average = work["Ciudad"].astype("str").str.lower().str.contains(_AVERAGE_MARKER, na=False)
    work = work.loc[~is_average]
    non_positive = work["Precio"].le(0)
    work.loc[non_positive, "Precio"] = float("nan")
    try:
        _schema(month).validate(work, lazy=True)
    except SchemaErrors as error:
        raise LakeDataError(_describe_failures(origin, error, work)) from None
    clean = normalize_frame(work)
    summary = ValidationSummary(
        origin=origin,
        rows=len(clean),
        missing_prices=int(clean["Precio"].isna().sum()),
        non_positive_prices=int(non_positive.sum()),
        dropped_average_rows=int(is_average.sum()),
        series=int(clean.groupby(SERIES_KEYS).ngroups) if len(clean) else 0,
        dates=int(clean["Fecha"].nunique()),
    )
    return clean, summary

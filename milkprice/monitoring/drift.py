"""Data drift: does a month of prices look like the training window, per Tipo/Canal group?

:func:`drift_inputs` turns the lake's tidy rows into the three columns drift is measured on:
``price``, ``change`` (against the series' previous observed price) and ``missing`` (the city
did not report). :func:`detect_drift` runs one Evidently report (``DataDriftPreset``) per
Tipo/Canal group, current month against reference window, and reads every verdict from the
snapshot's ``dict()`` (never from rendered widgets). :func:`parse_column_drifts` re-derives
each column's verdict from the metric's own method and threshold, and fails loudly on a method
it does not know or a value it cannot read: a parse error must never read as "no drift".
:func:`drift_alerts` is a check of the same shape as
:func:`~milkprice.monitoring.alerts.evaluate_accuracy`. No Prefect here.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

from milkprice.data.lake import Lake
from milkprice.data.schema import SERIES_KEYS
from milkprice.monitoring.alerts import Alert
from milkprice.months import Month, month_range

__all__ = [
    "DRIFT_COLUMNS",
    "ColumnDrift",
    "DriftResult",
    "detect_drift",
    "drift_alerts",
    "drift_inputs",
    "drift_markdown",
    "drift_of_month",
    "drift_report_key",
    "parse_column_drifts",
]

DRIFT_COLUMNS: tuple[str, ...] = ("price", "change", "missing")
_NUMERICAL = ["price", "change"]
_CATEGORICAL = ["missing"]  # 0/1: Evidently tests proportions (Z-test, chi-square), not shapes

_VALUE_DRIFT = "ValueDrift"
_DRIFTED_COUNT = "DriftedColumnsCount"

# How each Evidently stat test decides drift, keyed by its name and display name (the metric's
# config carries the display name when the method was auto-selected, the name when it was set).
# The comparisons copy evidently/legacy/calculations/stattests/*.py: p-values drift *below*
# the threshold (K-S and Cramer-von Mises at equality too), distances drift *at or above* it
# (energy distance strictly above).
_Compare = Callable[[float, float], bool]
_METHODS: dict[str, _Compare] = {}
for _names, _compare in (
    (("ks", "K-S p_value"), operator.le),
    (("cramer_von_mises", "Cramer-von Mises"), operator.le),
    (("anderson", "Anderson-Darling"), operator.lt),
    (("chisquare", "chi-square p_value"), operator.lt),
    (("es", "Epps-Singleton"), operator.lt),
    (("fisher_exact", "Fisher's Exact test"), operator.lt),
    (("g_test",), operator.lt),
    (("mannw", "Mann-Whitney U-rank test"), operator.lt),
    (("empirical_mmd",), operator.lt),
    (("t_test",), operator.lt),
    (("TVD", "Total-Variation-Distance"), operator.lt),
    (("z", "Z-test p_value"), operator.lt),
    (("wasserstein", "Wasserstein distance (normed)"), operator.ge),
    (("hellinger", "Hellinger distance"), operator.ge),
    (("jensenshannon", "Jensen-Shannon distance"), operator.ge),
    (("kl_div", "Kullback-Leibler divergence"), operator.ge),
    (("psi", "PSI"), operator.ge),
    (("ed", "Energy-distance"), operator.gt),
):
    for _name in _names:
        _METHODS[_name] = _compare


@dataclass(frozen=True)
class ColumnDrift:
    """One column of one Tipo/Canal group: Evidently's statistic and the verdict it gives.

    Attributes:
        group: ``Tipo/Canal``, e.g. ``Pasteurizada/Tiendas``.
        column: ``price``, ``change`` or ``missing``.
        method: The stat test, as Evidently names it (``K-S p_value``, ``Wasserstein
            distance (normed)``, ...).
        statistic: The test's p-value or distance.
        threshold: The limit; p-values drift below it, distances at or above it.
        drifted: Whether the column drifted.
    """

    group: str
    column: str
    method: str
    statistic: float
    threshold: float
    drifted: bool

    @property
    def label(self) -> str:
        """``group:column``, e.g. ``Pasteurizada/Tiendas:price``."""
        return f"{self.group}:{self.column}"


@dataclass(frozen=True)
class DriftResult:
    """Every (group, column) verdict of a month, and one Evidently HTML report per group.

    Attributes:
        columns: One :class:`ColumnDrift` per (group, column), sorted by group then column.
        drifted_share: Drifted pairs / all pairs (0.0 when there are none).
        drifted: Labels of the drifted pairs, e.g. ``Pasteurizada/Tiendas:price``.
        html: Evidently's standalone HTML report per group (UTF-8 bytes), keyed by group.
    """

    columns: list[ColumnDrift]
    drifted_share: float
    drifted: list[str]
    html: dict[str, bytes] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (artifacts, MLflow); the HTML is left out."""
        return {
            "drifted_share": self.drifted_share,
            "drifted": list(self.drifted),
            "columns": [asdict(column) for column in self.columns],
            "groups": sorted(self.html),
        }


def drift_inputs(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns drift is measured on, one row per (series, publication date).

    Args:
        frame: The lake's clean tidy rows (``Fecha``, ``Estado``, ``Ciudad``, ``Tipo``,
            ``Canal``, ``Precio``; missing prices as NaN).

    Returns:
        ``Fecha`` and the series keys, sorted, plus ``group`` (``Tipo/Canal``), ``price``,
        ``change`` (price minus the series' previous *observed* price, NaN when the price or
        any earlier price is missing) and ``missing`` (1.0 when the price is NaN, else 0.0).

    Raises:
        ValueError: A column is missing, or a series has two rows for one date.
    """
    absent = [name for name in ["Fecha", *SERIES_KEYS, "Precio"] if name not in frame.columns]
    if absent:
        raise ValueError(f"drift inputs need the lake's columns; missing: {absent}")
    duplicated = frame.duplicated(["Fecha", *SERIES_KEYS])
    if duplicated.any():
        first = frame.loc[duplicated, ["Fecha", *SERIES_KEYS]].iloc[0].to_dict()
        raise ValueError(f"{int(duplicated.sum())} duplicated (series, Fecha) rows, e.g. {first}")
    rows = frame.sort_values([*SERIES_KEYS, "Fecha"]).reset_index(drop=True)
    price = rows["Precio"].astype(float)
    # Last observed price strictly before each row: shift within the series, then carry the
    # last non-missing value forward within the series (never across series).
    previous = price.groupby([rows[key] for key in SERIES_KEYS], sort=False).shift()
    previous = previous.groupby([rows[key] for key in SERIES_KEYS], sort=False).ffill()
    return pd.DataFrame(
        {
            "Fecha": rows["Fecha"],
            **{key: rows[key] for key in SERIES_KEYS},
            "group": rows["Tipo"].astype(str) + "/" + rows["Canal"].astype(str),
            "price": price,
            "change": price - previous,
            "missing": price.isna().astype(float),
        }
    )


def parse_column_drifts(snapshot: Mapping[str, Any], group: str) -> list[ColumnDrift]:
    """Every ``ValueDrift`` metric of an Evidently snapshot's ``dict()`` as a :class:`ColumnDrift`.

    The verdict is re-derived from the metric's config (method, threshold) and value, then
    checked against the snapshot's own ``DriftedColumnsCount``.

    Args:
        snapshot: ``Snapshot.dict()`` of a report with ``DataDriftPreset``.
        group: The ``Tipo/Canal`` the report is about.

    Raises:
        ValueError: A metric has an unknown method, no column or threshold, a value that is not
            a finite number, or the verdicts disagree with the snapshot's drifted count; the
            message names the metric.
    """
    metrics = snapshot.get("metrics")
    if not isinstance(metrics, list):
        raise ValueError(f"{group}: the Evidently snapshot has no 'metrics' list")
    drifts: list[ColumnDrift] = []
    counts: list[tuple[str, float]] = []
    for metric in metrics:
        name = str(metric.get("metric_name", metric.get("id", "?")))
        config = metric.get("config") or {}
        kind = str(config.get("type", "")).rsplit(":", 1)[-1]
        if kind == _DRIFTED_COUNT:
            counts.append((name, _number(metric.get("value", {}).get("count"), name)))
        if kind != _VALUE_DRIFT:
            continue
        method = config.get("method")
        compare = _METHODS.get(str(method))
        if compare is None:
            raise ValueError(
                f"{group}: metric {name!r} uses drift method {method!r}, which milkprice does not "
                f"know how to read; known: {sorted(_METHODS)}"
            )
        column = config.get("column")
        if not column:
            raise ValueError(f"{group}: metric {name!r} names no column")
        threshold = _number(config.get("threshold"), name)
        statistic = _number(metric.get("value"), name)
        drifts.append(
            ColumnDrift(
                group=group,
                column=str(column),
                method=str(method),
                statistic=statistic,
                threshold=threshold,
                drifted=bool(compare(statistic, threshold)),
            )
        )
    if not drifts:
        raise ValueError(f"{group}: the Evidently snapshot has no ValueDrift metric")
    drifted = sum(column.drifted for column in drifts)
    for name, count in counts:
        if count != drifted:
            raise ValueError(
                f"{group}: metric {name!r} counts {count:g} drifted columns but the ValueDrift "
                f"metrics give {drifted} ({[c.column for c in drifts if c.drifted]})"
            )
    return sorted(
        drifts,
        key=lambda column: (
            DRIFT_COLUMNS.index(column.column)
            if column.column in DRIFT_COLUMNS
            else len(DRIFT_COLUMNS)
        ),
    )


def detect_drift(
    reference: pd.DataFrame, current: pd.DataFrame, *, drift_share: float = 0.5
) -> DriftResult:
    """Compare a month of lake rows with a reference window, per Tipo/Canal group.

    Args:
        reference: Lake rows of the reference window (e.g. the 12 months before the month).
        current: Lake rows of the month monitored.
        drift_share: Evidently's ``DataDriftPreset(drift_share=...)``; it only sets the
            per-report dataset verdict, which milkprice does not use.

    Returns:
        The verdict of every (group, column) and one HTML report per group.

    Raises:
        ValueError: ``reference`` or ``current`` is empty, the windows overlap, a group of the
            month has no reference rows, a column has no value on one side, or a metric cannot
            be read (see :func:`parse_column_drifts`).
    """
    if reference.empty or current.empty:
        which = "reference" if reference.empty else "current"
        raise ValueError(f"drift needs rows in both windows; the {which} window is empty")
    start = current["Fecha"].min()
    if reference["Fecha"].max() >= start:
        raise ValueError(
            f"reference rows reach {reference['Fecha'].max():%Y-%m-%d}, on or after the current "
            f"window's first date {start:%Y-%m-%d}: the windows must not overlap"
        )
    reference_rows = drift_inputs(reference)
    # The month's first changes are against the reference's last prices, as the model sees them.
    current_rows = drift_inputs(pd.concat([reference, current], ignore_index=True))
    current_rows = current_rows.loc[current_rows["Fecha"] >= start]
    definition = DataDefinition(numerical_columns=_NUMERICAL, categorical_columns=_CATEGORICAL)
    columns: list[ColumnDrift] = []
    html: dict[str, bytes] = {}
    for group, rows in current_rows.groupby("group", sort=True):
        name = str(group)
        ref = reference_rows.loc[reference_rows["group"] == name, list(DRIFT_COLUMNS)]
        cur = rows[list(DRIFT_COLUMNS)]
        if ref.empty:
            raise ValueError(f"group {name} has rows in the current window but none in reference")
        for side, data in (("reference", ref), ("current", cur)):
            empty = [column for column in _NUMERICAL if data[column].notna().sum() == 0]
            if empty:
                raise ValueError(f"group {name}: {side} window has no value in {empty}")
        snapshot = Report([DataDriftPreset(drift_share=drift_share)]).run(
            Dataset.from_pandas(cur.reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(ref.reset_index(drop=True), data_definition=definition),
        )
        columns.extend(parse_column_drifts(snapshot.dict(), name))
        html[name] = snapshot.get_html_str(as_iframe=False).encode("utf-8")
    drifted = [column.label for column in columns if column.drifted]
    share = len(drifted) / len(columns) if columns else 0.0
    return DriftResult(columns=columns, drifted_share=share, drifted=drifted, html=html)


def drift_alerts(result: DriftResult, max_share: float, *, month: str | None = None) -> list[Alert]:
    """A ``drift`` alert when more than ``max_share`` of the (group, column) pairs drifted.

    Args:
        result: Output of :func:`detect_drift`.
        max_share: ``Settings.alert_max_drift_share``.
        month: The month monitored (``YYYY-MM``), carried into the alert.

    Returns:
        An empty list, or one :class:`~milkprice.monitoring.alerts.Alert` whose figures hold
        the share, the pair counts and a 1.0 per drifted ``group:column`` label.
    """
    if not result.drifted_share > max_share:
        return []
    figures: dict[str, float] = {
        "drifted_share": result.drifted_share,
        "drifted_columns": float(len(result.drifted)),
        "columns": float(len(result.columns)),
        **dict.fromkeys(result.drifted, 1.0),
    }
    where = f" in {month}" if month else ""
    message = (
        f"data drift{where}: {len(result.drifted)} of {len(result.columns)} group columns "
        f"drifted ({result.drifted_share:.0%} > {max_share:.0%}): {', '.join(result.drifted)}"
    )
    return [
        Alert(
            kind="drift",
            check="drift_share",
            message=message,
            month=month,
            value=result.drifted_share,
            threshold=max_share,
            figures=figures,
        )
    ]


def _number(value: Any, metric: str) -> float:
    """A finite float from a snapshot field, or a ValueError naming the metric."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"metric {metric!r}: expected a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"metric {metric!r}: value {number} is not finite")
    return number


def drift_of_month(lake: Lake, month: Month) -> DriftResult | None:
    """The month against the 12 months before it, as read from the lake.

    Returns ``None`` (nothing to compare) when the month or every month before it is absent.
    """
    window = lake.read_window(month_range(month.shift(-12), month))
    if month in window.missing or len(window.present) < 2:
        return None
    frame = window.frame
    inside = frame["Fecha"].between(month.start, month.end)
    return detect_drift(frame.loc[~inside], frame.loc[inside])


def drift_report_key(month: Month, group: str) -> str:
    """Where a month's Evidently page for one Tipo/Canal group lives in the lake."""
    return f"monitor/reports/{month}/drift-{group.replace('/', '-').lower()}.html"


def drift_markdown(result: DriftResult | None, max_share: float) -> str:
    """The drift part of the monitoring summary (markdown)."""
    if result is None:
        return "## Data drift\n\nNo partition to compare: nothing measured."
    return (
        f"## Data drift\n\nShare of drifted (Tipo/Canal, column) pairs against the 12 months "
        f"before: **{result.drifted_share:.2f}** (alert above {max_share}). "
        f"Drifted: {', '.join(result.drifted) or 'none'}."
    )

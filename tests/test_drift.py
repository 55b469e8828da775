"""Data drift on the seeded demo frame: inputs, Evidently verdicts, parsing, alerts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from milkprice.monitoring.drift import (
    DRIFT_COLUMNS,
    DriftResult,
    detect_drift,
    drift_alerts,
    drift_inputs,
    parse_column_drifts,
)
from milkprice.months import Month
from milkprice.settings import Settings

MONTH = Month(2025, 1)
SHIFTED = ("Pasteurizada", "Tiendas")
SHIFTED_GROUP = "/".join(SHIFTED)
# The price *level* of every group drifts against a 12-month window (prices trend up), so an
# unchanged month already has 4 of 12 pairs drifted (0.33) and one fully drifted group brings it
# to 6 of 12 (0.50): the default 0.4 separates the two.
SEPARATING_SHARE = 0.4


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """The project's seeded demo data for 2024-01..2025-01, cleaned as the lake does."""
    from milkprice.data.demo import generate_demo_frame

    data = generate_demo_frame(MONTH.shift(-12), MONTH, seed=3)
    data = data.loc[~data["Ciudad"].str.contains("Promedio")].copy()
    data.loc[data["Precio"] <= 0, "Precio"] = np.nan
    return data.reset_index(drop=True)


@pytest.fixture(scope="module")
def reference(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame["Fecha"] < MONTH.start]


@pytest.fixture(scope="module")
def current(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame["Fecha"] >= MONTH.start]


@pytest.fixture(scope="module")
def unchanged(reference: pd.DataFrame, current: pd.DataFrame) -> DriftResult:
    return detect_drift(reference, current)


@pytest.fixture(scope="module")
def shifted(reference: pd.DataFrame, current: pd.DataFrame) -> DriftResult:
    """The month with one Tipo/Canal's prices 15% up and a third of them missing."""
    month = current.copy()
    rows = month.index[(month["Tipo"] == SHIFTED[0]) & (month["Canal"] == SHIFTED[1])]
    month.loc[rows, "Precio"] *= 1.15
    gone = np.random.default_rng(7).choice(rows, size=len(rows) // 3, replace=False)
    month.loc[gone, "Precio"] = np.nan
    return detect_drift(reference, month)


def test_drift_inputs_change_matches_a_plain_loop() -> None:
    dates = pd.to_datetime(["2025-01-03", "2025-01-10", "2025-01-17", "2025-01-24"])
    prices = {"A": [20.0, np.nan, 21.0, 22.5], "B": [np.nan, 18.0, 18.5, np.nan]}
    rows = [
        {
            "Fecha": d,
            "Estado": "E",
            "Ciudad": c,
            "Tipo": "Pasteurizada",
            "Canal": "Tiendas",
            "Precio": p,
        }
        for c, ps in prices.items()
        for d, p in zip(dates, ps, strict=True)
    ]
    frame = pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # order must not matter

    inputs = drift_inputs(frame)

    for city, series in prices.items():
        expected, last = [], None
        for price in series:
            expected.append(price - last if last is not None else np.nan)
            if not np.isnan(price):
                last = price
        got = inputs.loc[inputs["Ciudad"] == city].sort_values("Fecha")
        np.testing.assert_allclose(got["change"], expected, equal_nan=True)
        np.testing.assert_array_equal(got["missing"], np.isnan(series).astype(float))
        np.testing.assert_allclose(got["price"], series, equal_nan=True)
    assert set(inputs["group"]) == {SHIFTED_GROUP}
    assert len(inputs) == len(frame)


def test_unchanged_month_does_not_alert(unchanged: DriftResult) -> None:
    assert len(unchanged.columns) == 4 * len(DRIFT_COLUMNS)
    assert unchanged.drifted_share < SEPARATING_SHARE == Settings().alert_max_drift_share
    assert drift_alerts(unchanged, Settings().alert_max_drift_share) == []
    assert drift_alerts(unchanged, SEPARATING_SHARE) == []
    # Only the trending price level drifts; changes and reporting look like the reference.
    assert {c.column for c in unchanged.columns if c.drifted} <= {"price"}


def test_shifted_group_drifts_and_alerts(unchanged: DriftResult, shifted: DriftResult) -> None:
    mine = {c.column: c for c in shifted.columns if c.group == SHIFTED_GROUP}
    assert all(mine[column].drifted for column in DRIFT_COLUMNS)
    others = [c for c in shifted.columns if c.group != SHIFTED_GROUP]
    assert others == [c for c in unchanged.columns if c.group != SHIFTED_GROUP]
    assert shifted.drifted_share > SEPARATING_SHARE

    [alert] = drift_alerts(shifted, SEPARATING_SHARE, month=str(MONTH))
    assert (alert.kind, alert.check) == ("drift", "drift_share")
    assert alert.value == pytest.approx(shifted.drifted_share)
    assert alert.threshold == SEPARATING_SHARE
    for column in DRIFT_COLUMNS:
        label = f"{SHIFTED_GROUP}:{column}"
        assert label in shifted.drifted
        assert label in alert.message
        assert alert.figures[label] == 1.0
    assert alert.figures["drifted_share"] == pytest.approx(shifted.drifted_share)
    assert alert.to_dict()["kind"] == "drift"


def test_result_has_html_per_group_and_plain_dict(shifted: DriftResult) -> None:
    assert sorted(shifted.html) == sorted({c.group for c in shifted.columns})
    assert all(page.lstrip().lower().startswith(b"<") for page in shifted.html.values())
    as_dict = shifted.to_dict()
    assert as_dict["drifted"] == shifted.drifted
    assert len(as_dict["columns"]) == len(shifted.columns)
    assert {"method", "statistic", "threshold", "drifted"} <= set(as_dict["columns"][0])


def _value_drift(column: str, method: str, threshold: float, value: object) -> dict[str, object]:
    return {
        "metric_name": f"ValueDrift(column={column},method={method},threshold={threshold})",
        "config": {
            "type": "evidently:metric_v2:ValueDrift",
            "column": column,
            "method": method,
            "threshold": threshold,
        },
        "value": value,
    }


def _count(count: float) -> dict[str, object]:
    return {
        "metric_name": "DriftedColumnsCount(drift_share=0.5)",
        "config": {"type": "evidently:metric_v2:DriftedColumnsCount", "drift_share": 0.5},
        "value": {"count": count, "share": count / 2},
    }


def test_parser_reads_p_values_and_distances_the_right_way_round() -> None:
    snapshot = {
        "metrics": [
            _count(2.0),
            _value_drift("price", "K-S p_value", 0.05, 0.01),  # p below threshold: drift
            _value_drift("change", "Wasserstein distance (normed)", 0.1, 0.01),  # small: none
            _value_drift("missing", "Jensen-Shannon distance", 0.1, 0.3),  # large: drift
        ]
    }
    parsed = {c.column: c.drifted for c in parse_column_drifts(snapshot, "G")}
    assert parsed == {"price": True, "change": False, "missing": True}


@pytest.mark.parametrize(
    ("metric", "needle"),
    [
        (_value_drift("price", "Bespoke magic", 0.05, 0.5), "Bespoke magic"),
        (_value_drift("price", "K-S p_value", 0.05, None), "ValueDrift(column=price"),
        (_value_drift("price", "K-S p_value", 0.05, float("nan")), "not finite"),
    ],
)
def test_parser_fails_loudly(metric: dict[str, object], needle: str) -> None:
    with pytest.raises(ValueError, match="ValueDrift") as error:
        parse_column_drifts({"metrics": [metric]}, "G")
    assert needle in str(error.value)


def test_parser_rejects_a_count_it_disagrees_with() -> None:
    snapshot = {"metrics": [_count(0.0), _value_drift("price", "K-S p_value", 0.05, 0.001)]}
    with pytest.raises(ValueError, match="DriftedColumnsCount"):
        parse_column_drifts(snapshot, "G")


def test_overlapping_windows_are_refused(reference: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="overlap"):
        detect_drift(reference, reference.tail(100))

"""On the real SNIIM data: the bands of the national Tipo x Canal averages cover what they claim.

Each design month 2024-07..2025-01 (the session's backtest, trained as the flow does; the
hold-out 2025-02..2025-04 is not read) is forecast from the end of the month before; the
series' forecasts of the rows that were published are averaged per Tipo x Canal and date with
:func:`aggregate_forecast`, at the dependence the evaluated model estimated from its own
calibration residuals (before the month), and the bands are scored against the average of the
published prices. The old display (the mean of the series' bounds) is scored beside it: it
over-covers, being the band of a typical series.
"""

from __future__ import annotations

import pandas as pd
import pytest

from milkprice.model.aggregate import aggregate_forecast, mean_of_bounds
from milkprice.pipeline.backtest import BacktestReport

pytestmark = pytest.mark.realdata
NATION = ("Tipo", "Canal")


def national_rows(design_backtest: BacktestReport) -> pd.DataFrame:
    """Per month, Tipo x Canal and date: the published average and both bands."""
    parts = []
    for result in design_backtest.months:
        rows = (
            result.rows.dropna(subset=["actual"])
            .drop(columns=["mean"])  # the series-mean baseline, not the model's mean
            .rename(columns={"model": "price", "model_mean": "mean"})
        )
        dependence = result.metrics["aggregate_dependence"]
        assert 0.0 <= dependence <= 1.0
        published = rows.groupby([*NATION, "Fecha"])["actual"].mean().rename("published")
        for band, frame in (
            ("aggregate", aggregate_forecast(rows, NATION, dependence=dependence)),
            ("mean_of_bounds", mean_of_bounds(rows, NATION)),
        ):
            scored = frame.join(published, on=[*NATION, "Fecha"])
            parts.append(scored.assign(month=str(result.month), band=band, dependence=dependence))
    return pd.concat(parts, ignore_index=True)


@pytest.fixture(scope="module")
def coverage(design_backtest: BacktestReport) -> pd.DataFrame:
    """Coverage and mean width of each band, per month and level (and ``all`` months)."""
    rows = national_rows(design_backtest)
    records = []
    for level in (80, 95):
        inside = rows["published"].between(rows[f"lower_{level}"], rows[f"upper_{level}"])
        rows[f"in_{level}"] = inside
        rows[f"width_{level}"] = rows[f"upper_{level}"] - rows[f"lower_{level}"]
    pieces = [*rows.groupby(["band", "month"]), *(((b, "all"), g) for b, g in rows.groupby("band"))]
    for (band, month), group in pieces:
        records.append(
            {
                "band": band,
                "month": month,
                "points": len(group),
                **{f"coverage_{lv}": float(group[f"in_{lv}"].mean()) for lv in (80, 95)},
                **{f"width_{lv}": float(group[f"width_{lv}"].mean()) for lv in (80, 95)},
            }
        )
    return pd.DataFrame(records).set_index(["band", "month"])


@pytest.mark.parametrize("level", [80, 95])
def test_national_average_bands_cover_their_level(coverage: pd.DataFrame, level: int) -> None:
    shown = coverage[[f"coverage_{level}", f"width_{level}"]].round(3).to_dict("index")
    overall = coverage.loc[("aggregate", "all"), f"coverage_{level}"]
    assert abs(overall - level / 100) <= 0.05, shown


def test_aggregate_bands_are_narrower_than_the_mean_of_bounds(coverage: pd.DataFrame) -> None:
    for level in (80, 95):
        new = coverage.loc[("aggregate", "all"), f"width_{level}"]
        old = coverage.loc[("mean_of_bounds", "all"), f"width_{level}"]
        assert new < old, coverage.round(3).to_dict("index")

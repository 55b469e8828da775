"""Accuracy over time of stored forecasts: a hand computation on a small frame, the lake's files."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from milkprice.data.lake import Lake
from milkprice.monitoring.accuracy import (
    PENDING,
    SCORED,
    UNREPORTED,
    accuracy_table,
    read_stored_forecasts,
    score_stored_forecasts,
)

A = ("Jalisco", "Guadalajara", "Pasteurizada", "Tiendas")
B = ("Jalisco", "Guadalajara", "Pasteurizada", "Autoservicios")
CUTOFF = pd.Timestamp("2025-03-31")


def _prices() -> pd.DataFrame:
    rows = [
        (pd.Timestamp("2025-03-28"), A, 20.0),
        (pd.Timestamp("2025-03-31"), A, 21.0),  # A's last price at the cut-off
        (pd.Timestamp("2025-03-28"), B, 25.0),  # B's last price: 25.0 (nothing on 03-31)
        (pd.Timestamp("2025-03-31"), B, np.nan),
        (pd.Timestamp("2025-04-02"), A, 22.0),
        (pd.Timestamp("2025-04-02"), B, 25.0),
        (pd.Timestamp("2025-04-04"), A, 21.0),
        (pd.Timestamp("2025-04-04"), B, np.nan),  # B did not report
    ]
    return pd.DataFrame(
        [
            {
                "Fecha": d,
                **dict(zip(["Estado", "Ciudad", "Tipo", "Canal"], k, strict=True)),
                "Precio": p,
            }
            for d, k, p in rows
        ]
    )


def _forecasts() -> pd.DataFrame:
    rows = []
    for day, key, price in [
        ("2025-04-02", A, 21.5),
        ("2025-04-02", B, 24.0),
        ("2025-04-04", A, 21.5),
        ("2025-04-04", B, 24.0),
        ("2025-04-07", A, 21.5),  # after the newest publication: pending
    ]:
        rows.append(
            {
                **dict(zip(["Estado", "Ciudad", "Tipo", "Canal"], key, strict=True)),
                "Fecha": pd.Timestamp(day),
                "price": price,
                "lower_95": price - 2.0,
                "lower_80": price - 0.4,
                "upper_80": price + 0.4,
                "upper_95": price + 2.0,
                "model_version": "3",
                "cutoff": CUTOFF,
            }
        )
    return pd.DataFrame(rows)


def test_scores_match_a_hand_computation_with_pending_and_unreported_rows() -> None:
    scored = score_stored_forecasts(_forecasts(), _prices())
    assert scored["status"].tolist() == [SCORED, SCORED, SCORED, UNREPORTED, PENDING]
    # Naive from the same cut-off: A's last price 21.0, B's last reported price 25.0.
    assert scored["naive"].tolist() == [21.0, 25.0, 21.0, 25.0, 21.0]

    table = accuracy_table(scored)
    assert table["month"].tolist() == ["2025-04"]
    row = table.iloc[0]
    # Scored rows: A 04-02 (22 vs 21.5, naive 21), B 04-02 (25 vs 24, naive 25), A 04-04 (21 vs 21.5, naive 21).
    errors = np.array([0.5, 1.0, -0.5])
    naive_errors = np.array([1.0, 0.0, 0.0])
    assert row["scored"] == 3 and row["pending"] == 1 and row["unreported"] == 1
    assert row["rmse"] == pytest.approx(np.sqrt(np.mean(errors**2)))
    assert row["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert row["naive_rmse"] == pytest.approx(np.sqrt(np.mean(naive_errors**2)))
    assert row["naive_mae"] == pytest.approx(1 / 3)
    assert row["mae_ratio"] == pytest.approx(np.mean(np.abs(errors)) / (1 / 3))
    # 80%: +-0.4 holds none of the three (errors 0.5, 1.0, 0.5); 95%: +-2 holds all.
    assert row["coverage_80"] == 0.0
    assert row["coverage_95"] == 1.0


def test_grouping_by_canal_splits_the_rows() -> None:
    table = accuracy_table(score_stored_forecasts(_forecasts(), _prices()), by=["Canal"])
    by_canal = table.set_index("Canal")
    assert by_canal.loc["Tiendas", "scored"] == 2 and by_canal.loc["Tiendas", "pending"] == 1
    assert by_canal.loc["Autoservicios", "scored"] == 1
    assert by_canal.loc["Autoservicios", "rmse"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="cannot group by"):
        accuracy_table(score_stored_forecasts(_forecasts(), _prices()), by=["Ciudad"])


def test_all_pending_is_not_an_error() -> None:
    future = _forecasts().assign(Fecha=pd.Timestamp("2025-05-05"))
    table = accuracy_table(score_stored_forecasts(future.iloc[:1], _prices()))
    assert table.loc[0, "pending"] == 1 and table.loc[0, "scored"] == 0
    assert np.isnan(table.loc[0, "rmse"])


@pytest.mark.parametrize("kind", ["local", "s3"])
def test_stored_forecasts_are_read_back_from_the_lake(kind: str, request) -> None:
    lake = request.getfixturevalue("local_lake" if kind == "local" else "s3_lake")
    assert read_stored_forecasts(lake).empty
    forecasts = _forecasts()
    for cutoff in ("2025-03-31", "2025-04-01"):
        buffer = io.BytesIO()
        forecasts.assign(cutoff=pd.Timestamp(cutoff)).to_parquet(buffer, index=False)
        lake.put_object(f"forecasts/cutoff={cutoff}/forecast.parquet", buffer.getvalue())
    lake.put_object("forecasts/README.txt", b"not a forecast")
    assert "forecasts/README.txt" in lake.list_objects("forecasts")
    stored = read_stored_forecasts(lake)
    assert len(stored) == 2 * len(forecasts)
    cutoffs = sorted(stored["cutoff"].unique())
    assert cutoffs == [pd.Timestamp("2025-03-31"), pd.Timestamp("2025-04-01")]


def test_accuracy_command_prints_the_table(tmp_path, monkeypatch) -> None:
    from typer.testing import CliRunner

    from milkprice.months import Month
    from milkprice_cli.app import app

    lake = Lake(str(tmp_path / "lake"))
    prices = _prices()
    for month in (Month(2025, 3), Month(2025, 4)):
        lake.write_month(month, prices.loc[prices["Fecha"].dt.month == month.month])
    buffer = io.BytesIO()
    _forecasts().to_parquet(buffer, index=False)
    lake.put_object("forecasts/cutoff=2025-03-31/forecast.parquet", buffer.getvalue())
    monkeypatch.setenv("MILKPRICE_DATA_ROOT", str(tmp_path / "lake"))

    result = CliRunner().invoke(app, ["accuracy", "--by", "Canal"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "2025-04" in line]
    assert len(lines) == 2
    tiendas = next(line for line in lines if "Tiendas" in line)
    # Tiendas: 2 scored, 1 pending; errors 0.5 and -0.5 vs naive 1.0 and 0.0.
    assert " 2 " in tiendas and " 1 " in tiendas
    refused = CliRunner().invoke(app, ["accuracy", "--by", "Ciudad"])
    assert refused.exit_code == 1
    assert "cannot group by ['Ciudad']" in refused.output

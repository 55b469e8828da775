"""Aggregate intervals against independent computations on hand-made series.

Gaussian series have an analytic answer for the mean of ``n`` of them with pairwise latent
correlation ``d``: ``sd = sigma * sqrt(d + (1 - d) / n)``; independent series (``d = 0``) and
series in lockstep (``d = 1``, the mean of the series' bounds) are the two extremes.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from milkprice.model.aggregate import (
    AGGREGATE_COLUMNS,
    KNOTS,
    aggregate_forecast,
    dependence_of,
    estimate_dependence,
)

Z = {
    name: float(value)
    for name, value in zip(KNOTS, (-1.959964, -1.281552, 0.0, 1.281552, 1.959964), strict=True)
}
BOUNDS = ["lower_95", "lower_80", "upper_80", "upper_95"]


def gaussian_series(
    n: int, *, mu: np.ndarray | float = 20.0, sigma: np.ndarray | float = 0.5, dates: int = 3
) -> pd.DataFrame:
    """``n`` Gaussian series in one Tipo x Canal at ``dates`` dates (sigma grows with the date)."""
    mu = np.broadcast_to(np.asarray(mu, dtype=float), (n,))
    sigma = np.broadcast_to(np.asarray(sigma, dtype=float), (n,))
    rows = []
    for d, day in enumerate(pd.date_range("2025-01-06", periods=dates, freq="7D")):
        for i in range(n):
            s = sigma[i] * (1 + 0.5 * d)
            row = {
                "Estado": f"E{i % 3}",
                "Ciudad": f"C{i}",
                "Tipo": "Pasteurizada",
                "Canal": "Autoservicio",
                "Fecha": day,
                "mean": mu[i],
            }
            row.update({name: mu[i] + z * s for name, z in Z.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def width(frame: pd.DataFrame, level: int) -> np.ndarray:
    return (frame[f"upper_{level}"] - frame[f"lower_{level}"]).to_numpy()


def test_independent_alike_series_shrink_like_one_over_sqrt_n() -> None:
    n = 100
    series = gaussian_series(n)
    out = aggregate_forecast(series, ("Tipo", "Canal"), dependence=0.0, draws=4000)
    single = series.groupby("Fecha")[BOUNDS].first()
    for level in (80, 95):
        expected = (single[f"upper_{level}"] - single[f"lower_{level}"]).to_numpy() / np.sqrt(n)
        np.testing.assert_allclose(width(out, level), expected, rtol=0.06)
    assert (out["n_series"] == n).all()


def test_intermediate_dependence_matches_the_gaussian_formula() -> None:
    n, d, sigma = 40, 0.3, 0.5
    out = aggregate_forecast(
        gaussian_series(n, sigma=sigma, dates=1), ("Tipo", "Canal"), dependence=d, draws=4000
    )
    sd = sigma * np.sqrt(d + (1 - d) / n)
    np.testing.assert_allclose(width(out, 95), 2 * 1.959964 * sd, rtol=0.06)
    np.testing.assert_allclose(width(out, 80), 2 * 1.281552 * sd, rtol=0.06)


def test_series_in_lockstep_give_the_mean_of_their_bounds() -> None:
    rng = np.random.default_rng(3)
    n = 25
    series = gaussian_series(n, mu=rng.uniform(15, 30, n), sigma=rng.uniform(0.1, 1.5, n))
    # Skewed knots and a point mass at the anchor too: lockstep is exact at any marginal.
    series["upper_95"] += rng.uniform(0, 2, len(series))
    series["anchor"] = series["price"]
    series["p_change"] = 0.3
    out = aggregate_forecast(series, ("Tipo", "Canal"), dependence=1.0)
    expected = series.groupby(["Tipo", "Canal", "Fecha"])[["price", *BOUNDS]].mean()
    scale = (expected["upper_95"] - expected["lower_95"]).to_numpy()
    for column in ["price", *BOUNDS]:
        error = np.abs(out[column].to_numpy() - expected[column].to_numpy()) / scale
        assert error.max() < 0.02, (column, error.max())


def test_band_widens_with_dependence_between_the_extremes() -> None:
    series = gaussian_series(30)
    widths = [
        width(aggregate_forecast(series, ("Tipo", "Canal"), dependence=d), 95)
        for d in (0.0, 0.2, 0.6, 1.0)
    ]
    for narrow, wide in itertools.pairwise(widths):
        assert (narrow < wide).all()


def test_quantiles_are_ordered_and_the_mean_is_the_mean_of_means() -> None:
    rng = np.random.default_rng(5)
    series = gaussian_series(12, mu=rng.uniform(18, 25, 12), sigma=rng.uniform(0.05, 1.0, 12))
    series["mean"] = series["price"] + rng.normal(0, 0.2, len(series))
    series["anchor"] = series["price"]
    series["p_change"] = rng.uniform(0, 1, len(series))
    out = aggregate_forecast(series, ("Estado", "Tipo", "Canal"), dependence=0.4)
    assert list(out.columns) == ["Estado", "Tipo", "Canal", "Fecha", *AGGREGATE_COLUMNS]
    ordered = out[["lower_95", "lower_80", "price", "upper_80", "upper_95"]].to_numpy()
    assert (np.diff(ordered, axis=1) >= -1e-12).all()
    expected = series.groupby(["Estado", "Tipo", "Canal", "Fecha"])["mean"].agg(["mean", "size"])
    np.testing.assert_allclose(out["mean"].to_numpy(), expected["mean"].to_numpy(), rtol=1e-12)
    np.testing.assert_array_equal(out["n_series"].to_numpy(), expected["size"].to_numpy())


def test_one_series_is_its_own_aggregate() -> None:
    series = gaussian_series(1, sigma=0.8)
    series["upper_95"] += 0.7  # skewed: the knots are followed, not a Gaussian fit
    for d in (0.0, 1.0):
        out = aggregate_forecast(series, ("Tipo", "Canal"), dependence=d, draws=4000)
        scale = (series["upper_95"] - series["lower_95"]).to_numpy()
        for column in ["price", *BOUNDS]:
            error = np.abs(out[column].to_numpy() - series[column].to_numpy()) / scale
            assert error.max() < 0.03, (d, column, error.max())


def sticky_pair(p_change: float | None) -> pd.DataFrame:
    """Two series at 20 pesos that stay there with probability ``1 - p_change``."""
    rows = pd.DataFrame(
        {
            "Estado": ["A", "B"],
            "Ciudad": ["a", "b"],
            "Tipo": "Ultrapasteurizada",
            "Canal": "Tradicional",
            "Fecha": pd.Timestamp("2025-01-10"),
            "price": 20.0,
            "mean": 20.05,
            "lower_95": 20.0,
            "lower_80": 20.0,
            "upper_80": 20.0,
            "upper_95": 21.0,
        }
    )
    if p_change is not None:
        rows["anchor"] = 20.0
        rows["p_change"] = p_change
    return rows


def test_the_point_mass_at_the_anchor_is_kept() -> None:
    # Each stays with probability 0.98 (0.975 as the knots allow): both stay with 0.95 > 0.9, so the mean's 90 %
    # quantile is the anchor. Read off the knots alone (no atom), a series stays only with
    # 0.90, both with 0.81 < 0.9, and the band's top would leave the anchor.
    with_atom = aggregate_forecast(sticky_pair(0.02), ("Tipo", "Canal"), dependence=0.0)
    assert with_atom["upper_80"].iloc[0] == pytest.approx(20.0, abs=1e-9)
    knots_only = aggregate_forecast(sticky_pair(None), ("Tipo", "Canal"), dependence=0.0)
    assert knots_only["upper_80"].iloc[0] > 20.05


def test_the_same_seed_gives_the_same_answer() -> None:
    series = gaussian_series(20)
    first = aggregate_forecast(series, ("Tipo", "Canal"), dependence=0.3, seed=7)
    again = aggregate_forecast(
        series.sample(frac=1, random_state=1), ("Tipo", "Canal"), dependence=0.3, seed=7
    )
    pd.testing.assert_frame_equal(first, again)
    other = aggregate_forecast(series, ("Tipo", "Canal"), dependence=0.3, seed=8)
    assert not np.allclose(first["upper_95"], other["upper_95"])


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), "high", None])
def test_bad_dependence_is_refused_by_name(bad: object) -> None:
    with pytest.raises(ValueError, match="dependence"):
        aggregate_forecast(gaussian_series(3), ("Tipo", "Canal"), dependence=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("column", ["upper_95", "mean", "Fecha", "Canal"])
def test_a_missing_column_is_named(column: str) -> None:
    with pytest.raises(ValueError, match=repr(column)):
        aggregate_forecast(
            gaussian_series(3).drop(columns=column), ("Tipo", "Canal"), dependence=0.5
        )


def test_bad_draws_and_missing_values_are_named() -> None:
    series = gaussian_series(3)
    with pytest.raises(ValueError, match="draws"):
        aggregate_forecast(series, ("Tipo", "Canal"), dependence=0.5, draws=1)
    series.loc[0, "lower_80"] = np.nan
    with pytest.raises(ValueError, match="'lower_80'"):
        aggregate_forecast(series, ("Tipo", "Canal"), dependence=0.5)


def test_dependence_of_falls_back_to_lockstep_for_old_models() -> None:
    class Old:
        pass

    class New:
        aggregate_dependence_ = 0.35

    broken = New()
    broken.aggregate_dependence_ = float("nan")
    assert dependence_of(Old()) == 1.0
    assert dependence_of(New()) == 0.35
    assert dependence_of(broken) == 1.0


def correlated_residuals(rho: float, n_series: int = 30, n_times: int = 400) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    common = rng.standard_normal(n_times)
    own = rng.standard_normal((n_series, n_times))
    residual = np.sqrt(rho) * common + np.sqrt(1 - rho) * own
    origins = pd.Timestamp("2024-06-30") + pd.to_timedelta(np.arange(n_times) // 20 * 15, "D")
    dates = origins + pd.to_timedelta(np.arange(n_times) % 20 + 1, "D")
    return pd.DataFrame(
        {
            "Estado": np.repeat([f"E{i}" for i in range(n_series)], n_times),
            "Ciudad": np.repeat([f"C{i}" for i in range(n_series)], n_times),
            "Tipo": "Pasteurizada",
            "Canal": "Autoservicio",
            "origin": np.tile(origins, n_series),
            "Fecha": np.tile(dates, n_series),
            "residual": residual.ravel(),
        }
    )


@pytest.mark.parametrize("rho", [0.0, 0.4, 1.0])
def test_dependence_is_estimated_from_residuals(rho: float) -> None:
    assert estimate_dependence(correlated_residuals(rho)) == pytest.approx(rho, abs=0.05)


def test_estimating_dependence_names_a_missing_column() -> None:
    with pytest.raises(ValueError, match="'origin'"):
        estimate_dependence(correlated_residuals(0.5).drop(columns="origin"))


def test_a_doubled_column_is_named() -> None:
    series = gaussian_series(3)
    doubled = pd.concat([series, series[["mean"]]], axis=1)
    with pytest.raises(ValueError, match="more than one column 'mean'"):
        aggregate_forecast(doubled, ("Tipo", "Canal"), dependence=0.5)

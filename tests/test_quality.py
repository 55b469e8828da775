"""Quality verdicts against hand-made series: a glitch that reverts, a real step that persists,
a zero, a step shared by every peer; no leakage; the anchor's verdict at an origin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from milkprice.data.quality import (
    JUMP,
    QualityMatrix,
    anchor_verdicts,
    assess_readings,
    glitch_mask,
)
from milkprice.model.features import build_features, to_wide

CITY = ("Jalisco", "Guadalajara")
PAIRS = [
    ("Pasteurizada", "Tiendas"),
    ("Pasteurizada", "Autoservicios"),
    ("Ultrapasteurizada", "Tiendas"),
    ("Ultrapasteurizada", "Autoservicios"),
]


def _dates(n: int) -> pd.DatetimeIndex:
    days = pd.date_range("2024-01-01", periods=n * 3, freq="D")
    return days[days.weekday.isin([0, 2, 4])][:n]


def _frame(
    prices: dict[tuple[str, str], list[float]], city: tuple[str, str] = CITY
) -> pd.DataFrame:
    rows = []
    for (tipo, canal), values in prices.items():
        for day, price in zip(_dates(len(values)), values, strict=True):
            rows.append((day, *city, tipo, canal, price))
    return pd.DataFrame(rows, columns=["Fecha", "Estado", "Ciudad", "Tipo", "Canal", "Precio"])


def _series(verdicts: pd.DataFrame, tipo: str, canal: str) -> pd.DataFrame:
    mask = (verdicts["Tipo"] == tipo) & (verdicts["Canal"] == canal)
    return verdicts.loc[mask].reset_index(drop=True)


def test_a_glitch_that_reverts_is_suspect_then_settled_as_a_glitch() -> None:
    prices = [25.0] * 5 + [20.0] + [25.0] * 4
    verdicts = _series(assess_readings(_frame({PAIRS[0]: prices})), *PAIRS[0])
    glitch = verdicts.iloc[5]
    assert glitch["verdict"] == "suspect"
    assert glitch["level"] == 25.0
    assert 0 < glitch["p_glitch"] < 1
    assert glitch["settled"] == "glitch"
    assert glitch["settled_on"] == verdicts.iloc[6]["Fecha"]
    assert (verdicts.drop(index=5)["verdict"] == "ok").all()


def test_a_real_step_that_persists_is_settled_as_a_move_and_becomes_the_level() -> None:
    prices = [25.0] * 5 + [27.0] * 5
    verdicts = _series(assess_readings(_frame({PAIRS[0]: prices})), *PAIRS[0])
    step = verdicts.iloc[5]
    assert step["verdict"] == "suspect"
    assert step["settled"] == "move"
    assert verdicts.iloc[6]["level"] == 27.0
    assert (verdicts.iloc[6:]["verdict"] == "ok").all()


def test_small_moves_are_ok_and_zero_is_missing() -> None:
    small = 25.0 * np.exp(JUMP / 2)
    prices = [25.0, 25.0, small, small, 0.0, small]
    verdicts = _series(assess_readings(_frame({PAIRS[0]: prices})), *PAIRS[0])
    assert verdicts["verdict"].tolist() == ["ok", "ok", "ok", "ok", "missing", "ok"]
    assert np.isnan(verdicts.iloc[4]["Precio"])
    assert np.isnan(verdicts.iloc[4]["p_glitch"])


def _history_with_learnable_jumps() -> dict[tuple[str, str], list[float]]:
    """Four series of one city: lone jumps revert, city-wide steps persist, many times over."""
    series: dict[tuple[str, str], list[float]] = {pair: [] for pair in PAIRS}
    level = 25.0
    for step in range(12):
        for index, pair in enumerate(PAIRS):  # each series, in turn, has a lone glitch
            for other in PAIRS:
                glitch = other == pair
                series[other] += [level, level * 0.8 if glitch else level, level, level]
            del index
        # Then a step of the glitches' size that every series takes on the same day, and keeps.
        level *= 0.8 if step % 2 else 1.25
        for pair in PAIRS:
            series[pair] += [level, level]
    return series


def test_peers_tell_a_glitch_from_a_move_once_enough_jumps_are_settled() -> None:
    history = _history_with_learnable_jumps()
    lone = {pair: [*values, values[-1]] for pair, values in history.items()}
    lone[PAIRS[0]][-1] = history[PAIRS[0]][-1] * 0.8
    shared = {pair: [*values, values[-1] * 0.8] for pair, values in history.items()}
    lone_verdict = _series(assess_readings(_frame(lone)), *PAIRS[0]).iloc[-1]
    shared_verdict = _series(assess_readings(_frame(shared)), *PAIRS[0]).iloc[-1]
    assert lone_verdict["verdict"] == shared_verdict["verdict"] == "suspect"
    assert lone_verdict["settled"] == shared_verdict["settled"] == ""
    # Same size, same series: only the peers differ.
    assert lone_verdict["p_glitch"] > 0.5 > shared_verdict["p_glitch"], (
        lone_verdict["p_glitch"],
        shared_verdict["p_glitch"],
    )


def test_a_verdict_does_not_change_when_later_rows_are_removed_until_settled() -> None:
    frame = _frame(_history_with_learnable_jumps())
    full = assess_readings(frame)
    for cut in pd.DatetimeIndex(sorted(frame["Fecha"].unique()))[::7]:
        partial = assess_readings(frame.loc[frame["Fecha"] <= cut])
        keys = ["Fecha", "Estado", "Ciudad", "Tipo", "Canal"]
        joined = partial.merge(full, on=keys, suffixes=("", "_full"))
        assert len(joined) == len(partial)
        assert (joined["verdict"] == joined["verdict_full"]).all()
        assert (joined["reason"] == joined["reason_full"]).all()
        assert np.allclose(joined["level"], joined["level_full"], equal_nan=True)
        assert np.allclose(joined["p_glitch"], joined["p_glitch_full"], equal_nan=True)
        # Settled in the partial frame: settled the same way in the full one.
        settled = joined["settled"] != ""
        assert (joined.loc[settled, "settled"] == joined.loc[settled, "settled_full"]).all()
        # Pending in the partial frame: settled only by a publication after the cut.
        pending = (joined["verdict"] == "suspect") & ~settled
        assert (joined.loc[pending, "settled_on_full"].dropna() > cut).all()


def test_the_anchor_skips_a_known_glitch_and_weighs_a_pending_one() -> None:
    prices = [25.0] * 5 + [20.0] + [25.0] * 3 + [21.0]
    frame = _frame({PAIRS[0]: prices})
    verdicts = assess_readings(frame)
    dates = pd.DatetimeIndex(sorted(frame["Fecha"].unique()))
    # Right after the glitch: it is the anchor, suspect, with the level before it.
    at_glitch = anchor_verdicts(verdicts, dates[5]).table.iloc[0]
    assert at_glitch["last_price"] == 20.0
    assert bool(at_glitch["suspect"])
    assert at_glitch["previous_level"] == 25.0
    assert at_glitch["p_glitch"] > 0
    # Once reverted it is a known glitch: not an anchor, and masked out of the features.
    later = anchor_verdicts(verdicts, dates[7]).table.iloc[0]
    assert later["last_price"] == 25.0
    assert not bool(later["suspect"])
    assert len(glitch_mask(verdicts, dates[7])) == 1
    features = build_features(frame, dates[7], [dates[7] + pd.Timedelta(days=2)])
    assert features["anchor"].iloc[0] == 25.0
    # min over 91 days would be 20.0 if the glitch were still in the history.
    assert features["rel_min_91d"].iloc[0] == 0.0
    # The last reading (21.0) is pending: the features carry its p_glitch and previous level.
    final = build_features(frame, dates[9], [dates[9] + pd.Timedelta(days=2)])
    assert final["anchor"].iloc[0] == 21.0
    assert final["p_glitch"].iloc[0] > 0
    assert final["previous_level"].iloc[0] == 25.0


def test_the_quality_matrix_agrees_with_the_anchor_verdicts() -> None:
    frame = _frame(_history_with_learnable_jumps())
    verdicts = assess_readings(frame)
    wide = to_wide(frame)
    matrix = QualityMatrix.from_verdicts(verdicts, wide.index, wide.columns)
    for row in range(10, len(wide), 9):
        origin = wide.index[row]
        _, p_glitch, level = matrix.at(wide.to_numpy()[: row + 1], origin)
        table = anchor_verdicts(verdicts, origin).table
        assert np.allclose(table["p_glitch"].to_numpy(), p_glitch)
        suspect = table["suspect"].to_numpy()
        assert np.allclose(table["previous_level"].to_numpy()[suspect], level[suspect])


@pytest.mark.parametrize("price", [0.0, np.nan])
def test_a_series_that_only_reports_missing_has_no_anchor(price: float) -> None:
    frame = _frame({PAIRS[0]: [25.0] * 4, PAIRS[1]: [price] * 4})
    table = anchor_verdicts(assess_readings(frame), frame["Fecha"].max()).table
    assert set(table["Canal"]) == {PAIRS[0][1]}

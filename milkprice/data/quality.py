"""Quality verdicts for every reading: can the forecaster trust it as an anchor?

A reading (one price of one series on one publication date) is ``missing`` (absent, or 0 in the
publication), ``ok``, or ``suspect``: it jumped at least :data:`JUMP` (in log terms) away from
the series' trusted level. A suspect reading carries ``p_glitch``, the probability that the
series returns to its previous level at the next publication (the reading was a glitch), from a
logistic model fit on the jumps *settled before the reading's month*. Its inputs are the size
and direction of the jump, whether the reading's peers moved the same way on the same date (the
city's other type/channel series, the state's other cities for the same type and channel), and
the series' own record of settled jumps: size alone does not tell a glitch from a move.

The next published reading settles a suspect one: closer to the previous level than to the
suspect price, it was a ``glitch`` (the level stays where it was), otherwise a ``move`` (the
level follows). Verdicts are computed in time order from the raw prices only, so the verdict of
a reading never depends on later rows until the next reading settles it; the lake keeps the
raw prices and the verdicts are reproducible from them (:func:`assess_readings`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

__all__ = [
    "JUMP",
    "VERDICTS",
    "VERDICT_COLUMNS",
    "AnchorVerdicts",
    "QualityMatrix",
    "anchor_verdicts",
    "assess_readings",
    "glitch_mask",
]

SERIES_KEYS = ["Estado", "Ciudad", "Tipo", "Canal"]
VERDICTS = ("ok", "missing", "suspect")
VERDICT_COLUMNS = [
    "Fecha",
    *SERIES_KEYS,
    "Precio",
    "verdict",
    "reason",
    "p_glitch",
    "level",
    "settled",
    "settled_on",
]
# A reading this far (|log ratio|) from the trusted level is suspect: about 1 in 10 such jumps
# in the real data returned to the previous level at the next publication.
JUMP = 0.03
# A peer "moved the same way" when its own price moved at least this much in that direction.
_PEER_MOVE = 0.01
# Fewer settled jumps than this (or only one outcome among them): the smoothed base rate.
_MIN_SETTLED = 30
_PRIOR_GLITCHES, _PRIOR_JUMPS = 1.0, 10.0
_FEATURES = ["size", "down", "peers_city", "peers_state", "own_glitches", "own_moves"]


def _wide(frame: pd.DataFrame) -> pd.DataFrame:
    grouped = frame.groupby(["Fecha", *SERIES_KEYS], sort=True)["Precio"].mean()
    wide = grouped.unstack(SERIES_KEYS).sort_index().astype(float)
    return wide.where(wide > 0)


def _peer_share(direction: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Per (date, series): share of the *other* series of its group that moved the same way.

    ``direction`` is -1/0/+1 (NaN where a series did not report); with no reporting peer the
    share is 0 (no evidence of a shared move).
    """
    out = np.zeros_like(direction)
    for group in np.unique(groups):
        cols = np.flatnonzero(groups == group)
        block = direction[:, cols]
        reported = ~np.isnan(block)
        for sign in (-1.0, 1.0):
            same = (block == sign).sum(axis=1, keepdims=True) - (block == sign)
            peers = reported.sum(axis=1, keepdims=True) - reported
            share = np.where(peers > 0, same / np.maximum(peers, 1), 0.0)
            out[:, cols] = np.where(block == sign, share, out[:, cols])
    return out


def _directions(values: np.ndarray) -> np.ndarray:
    """Move of each reading from the series' previous reading: -1, 0, +1 (NaN if unknown)."""
    previous = pd.DataFrame(values).ffill().shift(1).to_numpy()
    step = np.log(values / previous)
    out = np.where(step >= _PEER_MOVE, 1.0, np.where(step <= -_PEER_MOVE, -1.0, 0.0))
    return np.where(np.isnan(step), np.nan, out)


def _glitch_probabilities(
    candidates: list[tuple[pd.Timestamp, list[float]]],
    settled: list[tuple[pd.Timestamp, list[float], int]],
) -> np.ndarray:
    """P(glitch) of each candidate jump.

    From a logistic model of the jumps settled before the candidate's month (refit once a
    month; the smoothed base rate while too few are settled).
    """
    out = np.empty(len(candidates))
    months = np.asarray([day.to_period("M").start_time for day, _ in candidates])
    settled_on = np.asarray([when for when, _, _ in settled], dtype="datetime64[ns]")
    for start in np.unique(months) if len(months) else []:
        known = settled_on < np.datetime64(start, "ns")
        outcomes = [y for (_, _, y), k in zip(settled, known, strict=True) if k]
        rate = (sum(outcomes) + _PRIOR_GLITCHES) / (len(outcomes) + _PRIOR_JUMPS)
        here = np.flatnonzero(months == start)
        if len(outcomes) >= _MIN_SETTLED and 0 < sum(outcomes) < len(outcomes):
            x = np.asarray([x for (_, x, _), k in zip(settled, known, strict=True) if k])
            model = LogisticRegression(C=1.0, max_iter=200).fit(x, outcomes)
            features = np.asarray([candidates[i][1] for i in here])
            out[here] = model.predict_proba(features)[:, 1]
        else:
            out[here] = rate
    return out


@dataclass
class _SeriesState:
    level: float = np.nan
    pending: int = -1  # row of an unsettled suspect reading
    glitches: int = 0
    moves: int = 0


def assess_readings(frame: pd.DataFrame) -> pd.DataFrame:
    """The quality verdict of every (series, publication date) of ``frame``, in time order.

    Args:
        frame: Tidy rows (``Fecha``, the series keys, ``Precio``); prices of 0 count as missing.

    Returns:
        :data:`VERDICT_COLUMNS`: ``verdict`` (ok, missing, suspect) and ``reason`` as known on
        the reading's date; ``p_glitch`` (0 for ok, NaN for missing); ``level``, the trusted
        level before the reading; ``settled`` (``glitch``, ``move`` or empty while pending) and
        ``settled_on``, the date of the reading that settled it.
    """
    wide = _wide(frame)
    dates = pd.DatetimeIndex(wide.index)
    values = wide.to_numpy(dtype=float)
    keys = pd.DataFrame(list(wide.columns), columns=SERIES_KEYS)
    direction = _directions(values)
    city = _peer_share(direction, keys.groupby(["Estado", "Ciudad"]).ngroup().to_numpy())
    state = _peer_share(direction, keys.groupby(["Estado", "Tipo", "Canal"]).ngroup().to_numpy())
    n_dates, n_series = values.shape
    verdict = np.where(np.isnan(values), "missing", "ok").astype(object)
    reason = np.where(np.isnan(values), "no price published (absent or 0)", "").astype(object)
    p_glitch = np.where(np.isnan(values), np.nan, 0.0)
    level = np.full(values.shape, np.nan)
    settled = np.full(values.shape, "", dtype=object)
    settled_on = np.full(values.shape, np.datetime64("NaT"), dtype="datetime64[ns]")
    features: dict[tuple[int, int], list[float]] = {}
    candidates: list[tuple[int, int]] = []
    settled_jumps: list[tuple[pd.Timestamp, list[float], int]] = []
    states = [_SeriesState() for _ in range(n_series)]
    for t in range(n_dates):
        for j in np.flatnonzero(~np.isnan(values[t])):
            state_j = states[j]
            price = values[t, j]
            if state_j.pending >= 0:  # this reading settles the suspect one before it
                s = state_j.pending
                glitch = abs(price - state_j.level) < abs(price - values[s, j])
                settled[s, j], settled_on[s, j] = ("glitch" if glitch else "move"), dates[t]
                settled_jumps.append((dates[t], features[(s, j)], int(glitch)))
                state_j.glitches += int(glitch)
                state_j.moves += int(not glitch)
                if not glitch:
                    state_j.level = values[s, j]
                state_j.pending = -1
            level[t, j] = state_j.level
            if np.isnan(state_j.level):
                state_j.level = price
                continue
            jump = float(np.log(price / state_j.level))
            if abs(jump) < JUMP:
                state_j.level = price
                continue
            x = [
                abs(jump),
                float(jump < 0),
                city[t, j],
                state[t, j],
                np.log1p(state_j.glitches),
                np.log1p(state_j.moves),
            ]
            features[(t, j)] = x
            verdict[t, j] = "suspect"
            reason[t, j] = (
                f"{jump:+.1%} from the level {state_j.level:.2f}; peers moving the same way: "
                f"city {city[t, j]:.0%}, state {state[t, j]:.0%}"
            )
            candidates.append((t, j))
            state_j.pending = t
    # A jump's probability needs only the jumps settled before its month: computed afterwards,
    # one model per month, exactly as if it had been computed on the reading's date.
    probabilities = _glitch_probabilities(
        [(dates[t], features[(t, j)]) for t, j in candidates], settled_jumps
    )
    for (t, j), probability in zip(candidates, probabilities, strict=True):
        p_glitch[t, j] = probability
    out = keys.loc[keys.index.repeat(n_dates)].reset_index(drop=True)
    out.insert(0, "Fecha", np.tile(dates.to_numpy(), n_series))
    columns = {
        "Precio": values,
        "verdict": verdict,
        "reason": reason,
        "p_glitch": p_glitch,
        "level": level,
        "settled": settled,
        "settled_on": settled_on,
    }
    for name, matrix in columns.items():
        out[name] = matrix.T.reshape(-1)
    return out[VERDICT_COLUMNS].sort_values(["Fecha", *SERIES_KEYS]).reset_index(drop=True)


def glitch_mask(verdicts: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """The readings known at ``origin`` to have been glitches (settled on or before it)."""
    origin = pd.Timestamp(origin)
    known = (verdicts["settled"] == "glitch") & (verdicts["settled_on"] <= origin)
    return verdicts.loc[known, ["Fecha", *SERIES_KEYS]]


@dataclass(frozen=True)
class AnchorVerdicts:
    """Per series, the verdict of its last reading as known at an origin.

    Attributes:
        table: ``SERIES_KEYS``, ``anchor_date``, ``last_price`` (the last published price),
            ``previous_level`` (the trusted level before it), ``suspect`` (bool) and
            ``p_glitch`` (0 unless suspect and unsettled at the origin).
    """

    table: pd.DataFrame


def anchor_verdicts(verdicts: pd.DataFrame, origin: pd.Timestamp) -> AnchorVerdicts:
    """The last published reading of every series at ``origin``, and whether to trust it.

    A suspect reading not yet settled at the origin keeps its ``p_glitch``; one settled as a
    glitch is not an anchor at all (the series' anchor is the reading before it, the trusted
    level); one settled as a move is ``ok``.
    """
    origin = pd.Timestamp(origin)
    known = verdicts.loc[(verdicts["Fecha"] <= origin) & verdicts["Precio"].notna()]
    glitch = (known["settled"] == "glitch") & (known["settled_on"] <= origin)
    known = known.loc[~glitch]
    last = known.groupby(SERIES_KEYS, sort=True).tail(1)
    pending = (last["verdict"] == "suspect") & ~(last["settled_on"] <= origin)
    table = pd.DataFrame(
        {
            **{key: last[key].to_numpy() for key in SERIES_KEYS},
            "anchor_date": last["Fecha"].to_numpy(),
            "last_price": last["Precio"].to_numpy(dtype=float),
            "previous_level": np.where(pending, last["level"], last["Precio"]).astype(float),
            "suspect": pending.to_numpy(),
            "p_glitch": np.where(pending, last["p_glitch"], 0.0).astype(float),
        }
    )
    return AnchorVerdicts(table.reset_index(drop=True))


@dataclass(frozen=True)
class QualityMatrix:
    """Verdicts laid out as a dates x series matrix, to apply at any origin cheaply.

    Attributes:
        glitch_known_on: When each reading was settled as a glitch (ns since the epoch; NaN:
            never).
        pending_until: When each suspect reading was settled (ns; NaN: not yet or not
            suspect).
        p_glitch: ``p_glitch`` of each suspect reading (0 elsewhere).
        level: The trusted level before each reading.
    """

    glitch_known_on: np.ndarray
    pending_until: np.ndarray
    p_glitch: np.ndarray
    level: np.ndarray

    @classmethod
    def from_verdicts(
        cls, verdicts: pd.DataFrame, index: pd.Index, columns: pd.Index
    ) -> QualityMatrix:
        """Align ``verdicts`` (:func:`assess_readings`) with a wide matrix's dates and series."""
        table = verdicts.set_index(["Fecha", *SERIES_KEYS])

        def wide(values: pd.Series) -> pd.DataFrame:
            return values.unstack(SERIES_KEYS).reindex(index=index, columns=columns)

        def when(values: pd.Series) -> np.ndarray:
            # Nanoseconds as floats, NaN for never: comparisons with NaN are simply False.
            stamps = pd.to_datetime(values)
            ns = stamps.astype("int64").astype(float).where(stamps.notna())
            return wide(ns).to_numpy(dtype=float)

        suspect = table["verdict"] == "suspect"
        glitch = table["settled"] == "glitch"
        return cls(
            glitch_known_on=when(table["settled_on"].where(glitch)),
            pending_until=when(table["settled_on"].where(suspect)),
            p_glitch=wide(table["p_glitch"].where(suspect, 0.0)).fillna(0.0).to_numpy(float),
            level=wide(table["level"]).to_numpy(dtype=float),
        )

    def at(
        self, values: np.ndarray, origin: pd.Timestamp
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The quality at ``origin`` of the first ``len(values)`` dates.

        Returns:
            The values with known glitches removed, and per series the anchor's ``p_glitch``
            and the level before it.
        """
        rows = len(values)
        when = float(pd.Timestamp(origin).value)
        known = self.glitch_known_on[:rows] <= when
        clean = np.where(known, np.nan, values)
        observed = ~np.isnan(clean)
        last = np.where(observed, np.arange(rows)[:, None], -1).max(axis=0, initial=-1)
        series = np.arange(clean.shape[1])
        safe = np.maximum(last, 0)
        pending = (last >= 0) & ~(self.pending_until[safe, series] <= when)
        p_glitch = np.where(pending, self.p_glitch[safe, series], 0.0)
        level = np.where(p_glitch > 0, self.level[safe, series], np.nan)
        return clean, p_glitch, level

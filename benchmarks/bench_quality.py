"""What the quality verdicts flag on the real SNIIM data, and what they cost and save.

Run: ``.venv/bin/python benchmarks/bench_quality.py``. Over the design months 2024-07..2025-01
(2025-02..2025-04 are the developers' hold-out and are not read): how many readings were
suspect, how many of those the next publication settled as glitches or as real moves, how many
real moves the verdicts delayed (a suspect real move with ``p_glitch > 0.5`` is not used as
the median anchor) or discounted (a pending real move mixed with the previous level). Then, for
each design month, the anchors at the forecast origin (the end of the month before): the
squared error of the whole month's forecasts anchored on the last published price, against
the same anchored on the verdicts (the median: trusted last price; the mean: the mixture of the
anchor and the previous level by ``p_glitch``), split into the series whose suspect anchor was
a glitch (what the verdicts saved) and a real move (what they cost). Writes
``benchmarks/results/quality.json``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from milkprice.data.lake import Lake
from milkprice.data.quality import assess_readings
from milkprice.model.features import SERIES_KEYS, build_features, publication_dates
from milkprice.months import Month, month_range

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "quality.json"
FIRST, LAST = Month(2024, 7), Month(2025, 1)


def data_root() -> Path:
    return Path(os.environ.get("MILKPRICE_REAL_DATA", REPO.parent / "shared" / "data" / "sniim"))


def main() -> int:
    lake = Lake(str(data_root()))
    frame = lake.read_window(month_range(Month(2024, 1), LAST)).frame
    verdicts = assess_readings(frame)
    design = verdicts.loc[verdicts["Fecha"].between(FIRST.start, LAST.end)]
    suspect = design.loc[design["verdict"] == "suspect"]
    moves = suspect.loc[suspect["settled"] == "move"]
    counts = {
        "readings": int(design["Precio"].notna().sum()),
        "missing": int((design["verdict"] == "missing").sum()),
        "suspect": len(suspect),
        "settled_glitch": int((suspect["settled"] == "glitch").sum()),
        "settled_move": len(moves),
        "moves_delayed_p_over_half": int((moves["p_glitch"] > 0.5).sum()),
        "moves_discounted": len(moves),
        "mean_p_glitch_of_moves": float(moves["p_glitch"].mean()),
        "mean_p_glitch_of_glitches": float(
            suspect.loc[suspect["settled"] == "glitch", "p_glitch"].mean()
        ),
    }
    months = []
    for month in month_range(FIRST, LAST):
        origin = month.shift(-1).end
        history = frame.loc[frame["Fecha"].between(month.shift(-12).start, origin)]
        actual = frame.loc[frame["Fecha"].between(month.start, month.end)].dropna(subset=["Precio"])
        dates = publication_dates(actual, month)
        rows = build_features(
            history, origin, dates, verdicts=verdicts.loc[verdicts["Fecha"] <= origin]
        )
        rows = rows.merge(actual[[*SERIES_KEYS, "Fecha", "Precio"]], on=[*SERIES_KEYS, "Fecha"])
        naive = rows["anchor"].to_numpy()
        p = rows["p_glitch"].to_numpy()
        previous = np.where(np.isfinite(rows["previous_level"]), rows["previous_level"], naive)
        median = np.where(p > 0.5, previous, naive)
        mean = (1 - p) * naive + p * previous
        y = rows["Precio"].to_numpy()
        # Was the suspect anchor a glitch? The verdict table says, once settled after the origin.
        last = verdicts.loc[(verdicts["Fecha"] <= origin) & verdicts["Precio"].notna()]
        last = last.groupby(SERIES_KEYS).tail(1)[[*SERIES_KEYS, "settled"]]
        outcome = rows[SERIES_KEYS].merge(last, on=SERIES_KEYS, how="left")["settled"]
        flagged = p > 0
        record = {
            "month": str(month),
            "suspect_anchors": int(rows.loc[flagged, SERIES_KEYS].drop_duplicates().shape[0]),
        }
        for name, forecast in (("median", median), ("mean", mean)):
            gain = (y - naive) ** 2 - (y - forecast) ** 2
            record[f"{name}_saved_sq"] = float(
                gain[flagged & (outcome == "glitch").to_numpy()].sum()
            )
            record[f"{name}_cost_sq"] = float(-gain[flagged & (outcome == "move").to_numpy()].sum())
            record[f"{name}_net_sq"] = float(gain.sum())
            record["naive_sq"] = float(((y - naive) ** 2).sum())
        months.append(record)
    table = pd.DataFrame(months).set_index("month")
    print(json.dumps(counts, indent=2))
    print(table.round(3).to_string())
    print(table.sum(numeric_only=True).round(3).to_string())
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"counts": counts, "months": months}, indent=2))
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

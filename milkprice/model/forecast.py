"""The forecaster: a two-part model of sticky prices, and the distribution it implies.

Prices are sticky: most series do not move between publications, so the last trusted price
(the *anchor*) is the most likely single outcome, while the expected outcome is a small move.
One number cannot serve both, so the forecaster models the outcome in two parts:

1. *whether and how it moves*: a LightGBM classifier of four outcomes at each horizon: stays at
   the anchor, goes back to the level before the last change (``prev_level_delta``), moves up,
   moves down;
2. *how far, given a move*: a LightGBM regression of the log size of a move (up or down), whose
   residuals give the shape of the size distribution around its prediction.

Together they give, for each row, a :class:`~milkprice.model.distribution.Distribution`: atoms at
the anchor and the previous level, and quantile points of the up and down moves. The median is
the published ``price`` (scored with MAE), the mean the expected price (scored with RMSE), and
``p_change`` the probability of any change; a suspect anchor mixes the distribution around the
anchor with the same one around the previous level (see :mod:`milkprice.data.quality`).

The settings are few and fixed (chosen on the design months 2024-07..2025-01 only, see
``docs/accuracy.md``): LightGBM defaults for both boosters except 40 boosting rounds at learning
rate 0.05, a short fit that keeps the probabilities close to the base rates when the evidence
is thin.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from milkprice.model.distribution import CHANGE_TOLERANCE, Distribution
from milkprice.model.features import (
    ANCHOR_COLUMN,
    FEATURE_COLUMNS,
    SERIES_KEYS,
    TARGET_COLUMN,
    build_features,
    build_training_set,
)
from milkprice.model.intervals import HORIZON_EDGES, IntervalTable
from milkprice.model.metrics import PREDICTION_COLUMN

__all__ = [
    "CLASSES",
    "DATASET_PARAMS",
    "DEFAULT_N_JOBS",
    "DEFAULT_PARAMS",
    "MilkForecaster",
    "fit_booster",
    "outcome_classes",
]

FORMAT_VERSION = 2
_CLASSIFIER_FILE = "classifier.txt"
_SIZE_FILE = "size.txt"
_CONFIG_FILE = "forecaster.json"
_INTERVALS_FILE = "intervals.json"

# Outcome classes of the classifier, in its output order.
CLASSES: tuple[str, ...] = ("down", "stay", "up", "revert")
_DOWN, _STAY, _UP, _REVERT = range(len(CLASSES))
# Points per direction that describe the size of a move (quantiles of its shape).
_SIZE_POINTS = 20
DEFAULT_PARAMS: dict[str, Any] = {
    "learning_rate": 0.05,
    "num_boost_round": 40,
    "num_leaves": 15,
    "min_data_in_leaf": 100,
    "feature_fraction": 0.8,
    "bagging_fraction": 0.8,
    "bagging_freq": 1,
    "lambda_l2": 1.0,
}
# One thread: on this small data (tens of thousands of rows) a second OpenMP thread gains
# little, and on a shared 2-core machine a busy neighbour makes LightGBM's spinning threads
# 10-20x slower (measured 0.4 s vs 12 s for the same fit). Callers may pass n_jobs=2.
DEFAULT_N_JOBS = 1
DATASET_PARAMS: dict[str, Any] = {"max_bin": 63, "feature_pre_filter": False, "verbosity": -1}
_OWN_KEYS = {"num_boost_round"}
_SIZE_FEATURES = [*FEATURE_COLUMNS, "move_up"]


def outcome_classes(rows: pd.DataFrame) -> np.ndarray:
    """The class of each supervised row's outcome (index into :data:`CLASSES`)."""
    change = rows[TARGET_COLUMN].to_numpy(dtype=float) - rows[ANCHOR_COLUMN].to_numpy(dtype=float)
    back = rows["prev_level_delta"].to_numpy(dtype=float)
    classes = np.where(
        change > CHANGE_TOLERANCE, _UP, np.where(change < -CHANGE_TOLERANCE, _DOWN, _STAY)
    )
    reverted = (classes != _STAY) & np.isfinite(back) & (np.abs(change - back) <= CHANGE_TOLERANCE)
    return np.where(reverted, _REVERT, classes)


def _booster_params(
    params: dict[str, Any], seed: int, n_jobs: int, objective: dict[str, Any]
) -> dict[str, Any]:
    booster = {k: v for k, v in params.items() if k not in _OWN_KEYS}
    booster.update(DATASET_PARAMS)
    booster.update(objective)
    booster.update(
        seed=seed, num_threads=n_jobs, deterministic=True, force_row_wise=True, verbosity=-1
    )
    return booster


def fit_booster(
    features: np.ndarray,
    label: np.ndarray,
    params: dict[str, Any],
    objective: dict[str, Any],
    *,
    seed: int,
    n_jobs: int = DEFAULT_N_JOBS,
    feature_names: Sequence[str] = FEATURE_COLUMNS,
) -> lgb.Booster:
    """Train one LightGBM booster (``objective``: LightGBM's objective parameters)."""
    dataset = lgb.Dataset(
        features, label=label, feature_name=list(feature_names), params=DATASET_PARAMS
    )
    return lgb.train(
        _booster_params(params, seed, n_jobs, objective),
        dataset,
        num_boost_round=int(params["num_boost_round"]),
        # No round trip through the model's text form after training: the booster is kept.
        keep_training_booster=True,
    )


def _rate_keys(ultra: np.ndarray, autoservicio: np.ndarray, horizon: np.ndarray) -> np.ndarray:
    """``"<ultra><autoservicio><bucket>"`` per row, e.g. ``"102"`` (JSON-friendly keys)."""
    bucket = np.searchsorted(np.asarray(HORIZON_EDGES), horizon, side="left")
    codes = 100 * ultra.astype(int) + 10 * autoservicio.astype(int) + bucket
    return np.char.zfill(codes.astype(str), 3)


def _base_rates(features: np.ndarray, changed: np.ndarray) -> dict[str, float]:
    """Share of changed outcomes per Tipo x Canal x horizon bucket (keys as :func:`_rate_keys`)."""
    column = FEATURE_COLUMNS.index
    keys = _rate_keys(
        features[:, column("is_ultra")],
        features[:, column("is_autoservicio")],
        features[:, column("horizon_days")],
    )
    frame = pd.DataFrame({"key": keys, "changed": changed.astype(float)})
    return {str(k): float(v) for k, v in frame.groupby("key")["changed"].mean().items()}


class MilkForecaster:
    """Forecast distributions of every series' price at dates after an origin (sklearn-style).

    Args:
        params: Overrides of :data:`DEFAULT_PARAMS` (LightGBM parameters, ``num_boost_round``).
        seed: Seed for LightGBM's bagging and feature sampling.
        n_jobs: LightGBM threads.

    Attributes:
        classifier_: The booster of the outcome classes (:data:`CLASSES`).
        size_: The booster of the log size of a move (features plus ``move_up``).
        size_shape_: Quantile points of the size residuals, ``{"up": [...], "down": [...]}``.
        feature_names_: Feature columns the boosters expect.
        n_training_rows_: Number of supervised rows used in ``fit``.
        origins_: The training origins.
        intervals_: Optional :class:`~milkprice.model.intervals.IntervalTable` (set by the
            training run from out-of-sample residuals; saved beside the boosters).
        aggregate_dependence_: Optional, set with ``intervals_``: the residuals' correlation
            the bands of averages are simulated with (:mod:`milkprice.model.aggregate`).
    """

    def __init__(
        self, params: dict[str, Any] | None = None, seed: int = 0, n_jobs: int = DEFAULT_N_JOBS
    ) -> None:
        self.params = dict(params or {})
        self.seed = seed
        self.n_jobs = n_jobs

    @property
    def merged_params_(self) -> dict[str, Any]:
        """Defaults updated with the given params."""
        return {**DEFAULT_PARAMS, **self.params}

    def fit(
        self, frame: pd.DataFrame, origins: Sequence[pd.Timestamp], *, date_stride: int = 1
    ) -> MilkForecaster:
        """Fit on supervised rows built at every origin (targets: one month after each origin).

        Args:
            frame: Clean tidy rows covering the histories and target dates; every target date
                present in it may be used, so cut it at the last date you may learn from.
            origins: Forecast origins.
            date_stride: Thinning of target dates (see ``build_training_set``).

        Returns:
            self.
        """
        return self.fit_rows(build_training_set(frame, origins, date_stride=date_stride))

    def fit_rows(self, rows: pd.DataFrame) -> MilkForecaster:
        """Fit both parts on an already built training set."""
        if rows.empty:
            raise ValueError("no training rows: every target price is missing")
        params = self.merged_params_
        features = rows[FEATURE_COLUMNS].to_numpy(dtype=float)
        classes = outcome_classes(rows)
        self.classifier_ = fit_booster(
            features,
            classes,
            params,
            {"objective": "multiclass", "num_class": len(CLASSES)},
            seed=self.seed,
            n_jobs=self.n_jobs,
        )
        moved = (classes == _UP) | (classes == _DOWN)
        if not moved.any():
            raise ValueError("no training row moves up or down; cannot learn the size of a move")
        change = rows[TARGET_COLUMN].to_numpy(dtype=float) - rows[ANCHOR_COLUMN].to_numpy(
            dtype=float
        )
        up = (classes[moved] == _UP).astype(float)
        size_x = np.column_stack([features[moved], up])
        log_size = np.log(np.abs(change[moved]))
        self.size_ = fit_booster(
            size_x,
            log_size,
            params,
            {"objective": "l2"},
            seed=self.seed,
            n_jobs=self.n_jobs,
            feature_names=_SIZE_FEATURES,
        )
        residual = log_size - self.size_.predict(size_x)
        levels = (np.arange(_SIZE_POINTS) + 0.5) / _SIZE_POINTS
        self.size_shape_ = {
            name: [float(x) for x in np.quantile(residual[mask], levels)]
            if mask.any()
            else [0.0] * _SIZE_POINTS
            for name, mask in (("up", up == 1), ("down", up == 0))
        }
        self.base_rates_ = _base_rates(features, classes != _STAY)
        self.feature_names_ = list(FEATURE_COLUMNS)
        self.n_training_rows_ = len(rows)
        self.origins_ = [pd.Timestamp(o) for o in np.unique(rows["origin"].to_numpy())]
        return self

    def _check_fitted(self) -> None:
        if not hasattr(self, "classifier_"):
            raise RuntimeError("MilkForecaster is not fitted; call fit() or from_artifacts()")

    def distribution_of(
        self,
        features: np.ndarray,
        p_glitch: np.ndarray | None = None,
        previous_level: np.ndarray | None = None,
    ) -> Distribution:
        """The forecast distribution of feature rows (a matrix in :data:`FEATURE_COLUMNS` order).

        Args:
            features: Feature matrix; its anchor column is the last published (unsettled) price.
            p_glitch: Per row, the probability that the anchor is a glitch (default 0).
            previous_level: Per row, the trusted level before a suspect anchor.

        Returns:
            The distribution; with ``p_glitch``, a mixture of the shape around the anchor and
            the same shape around the previous level.
        """
        self._check_fitted()
        n = len(features)
        probs = self.classifier_.predict(features).reshape(n, len(CLASSES))
        anchor = features[:, FEATURE_COLUMNS.index(ANCHOR_COLUMN)]
        back = np.nan_to_num(features[:, FEATURE_COLUMNS.index("prev_level_delta")])
        sizes = {
            name: np.exp(self.size_.predict(np.column_stack([features, np.full(n, flag)])))
            for name, flag in (("up", 1.0), ("down", 0.0))
        }
        up = sizes["up"][:, None] * np.exp(np.asarray(self.size_shape_["up"]))[None, :]
        down = sizes["down"][:, None] * np.exp(np.asarray(self.size_shape_["down"]))[None, :]
        shift = np.concatenate([np.zeros((n, 1)), back[:, None], up, -down], axis=1)
        weights = np.concatenate(
            [
                probs[:, [_STAY]],
                probs[:, [_REVERT]],
                np.repeat(probs[:, [_UP]] / _SIZE_POINTS, _SIZE_POINTS, axis=1),
                np.repeat(probs[:, [_DOWN]] / _SIZE_POINTS, _SIZE_POINTS, axis=1),
            ],
            axis=1,
        )
        around = Distribution(points=anchor[:, None] + shift, weights=weights, anchor=anchor)
        if p_glitch is None or previous_level is None or not np.any(p_glitch > 0):
            return around
        level = np.where(np.isfinite(previous_level), previous_level, anchor)
        moved = Distribution(points=level[:, None] + shift, weights=weights, anchor=level)
        return Distribution.mixture(around, moved, np.nan_to_num(p_glitch))

    def distribution(self, rows: pd.DataFrame) -> Distribution:
        """The distribution of feature rows (a frame; ``p_glitch``/``previous_level`` if given)."""
        p_glitch = rows["p_glitch"].to_numpy(dtype=float) if "p_glitch" in rows else None
        previous = (
            rows["previous_level"].to_numpy(dtype=float) if "previous_level" in rows else None
        )
        return self.distribution_of(rows[FEATURE_COLUMNS].to_numpy(dtype=float), p_glitch, previous)

    def base_rate(self, rows: pd.DataFrame, horizon_days: np.ndarray) -> np.ndarray:
        """The training window's share of changed prices per Tipo x Canal x horizon bucket.

        The reference forecast that ``p_change``'s Brier score is compared with.
        """
        self._check_fitted()
        keys = _rate_keys(
            rows["is_ultra"].to_numpy(dtype=float),
            rows["is_autoservicio"].to_numpy(dtype=float),
            np.asarray(horizon_days, dtype=float),
        )
        overall = float(np.mean(list(self.base_rates_.values())))
        codes, inverse = np.unique(keys, return_inverse=True)
        rates = np.asarray([self.base_rates_.get(str(k), overall) for k in codes], dtype=float)
        return rates[inverse]

    def predict_rows(self, rows: pd.DataFrame) -> np.ndarray:
        """The median forecast (the published ``price``) of feature rows."""
        return self.distribution(rows).median()

    def predict(
        self,
        history: pd.DataFrame,
        origin: pd.Timestamp,
        target_dates: Sequence[pd.Timestamp],
        series: pd.DataFrame | None = None,
    ) -> pd.DataFrame:
        """Forecast each series at each target date from the history up to the origin.

        Args:
            history: Clean tidy rows; rows after the origin are ignored.
            origin: The forecast origin.
            target_dates: Dates to forecast (after the origin).
            series: Optional ``SERIES_KEYS`` frame of series to forecast (default: all in history).

        Returns:
            ``SERIES_KEYS``, ``Fecha``, ``prediction`` (the median), ``mean`` and ``p_change``.
        """
        rows = build_features(history, origin, target_dates, series=series)
        distribution = self.distribution(rows)
        out = rows[[*SERIES_KEYS, "Fecha"]].copy()
        out[PREDICTION_COLUMN] = distribution.median()
        out["mean"] = distribution.mean()
        out["p_change"] = distribution.p_change()
        return out

    def to_artifacts(self, directory: Path) -> None:
        """Write the boosters as LightGBM text and the configuration as JSON (no pickle)."""
        self._check_fitted()
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.classifier_.save_model(str(directory / _CLASSIFIER_FILE))
        self.size_.save_model(str(directory / _SIZE_FILE))
        config = {
            "format_version": FORMAT_VERSION,
            "params": self.params,
            "merged_params": self.merged_params_,
            "seed": self.seed,
            "n_jobs": self.n_jobs,
            "feature_names": self.feature_names_,
            "classes": list(CLASSES),
            "size_shape": self.size_shape_,
            "base_rates": self.base_rates_,
            "n_training_rows": self.n_training_rows_,
            "origins": [str(o.date()) for o in self.origins_],
        }
        if hasattr(self, "aggregate_dependence_"):
            config["aggregate_dependence"] = float(self.aggregate_dependence_)
        (directory / _CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
        intervals: IntervalTable | None = getattr(self, "intervals_", None)
        if intervals is not None:
            (directory / _INTERVALS_FILE).write_text(
                json.dumps(intervals.to_dict(), indent=2, sort_keys=True)
            )

    @classmethod
    def from_artifacts(cls, directory: Path) -> MilkForecaster:
        """Load a forecaster written by :meth:`to_artifacts`."""
        directory = Path(directory)
        config_path = directory / _CONFIG_FILE
        if not config_path.exists():
            raise FileNotFoundError(f"no {_CONFIG_FILE} in {directory}; not a forecaster artifact")
        config = json.loads(config_path.read_text())
        if config.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{config_path} has format_version {config.get('format_version')}, "
                f"this code reads {FORMAT_VERSION}; retrain"
            )
        if config["feature_names"] != FEATURE_COLUMNS:
            raise ValueError(
                f"{config_path} was trained on different features than this code builds; retrain"
            )
        model = cls(params=config["params"], seed=config["seed"], n_jobs=config["n_jobs"])
        model.classifier_ = lgb.Booster(model_file=str(directory / _CLASSIFIER_FILE))
        model.size_ = lgb.Booster(model_file=str(directory / _SIZE_FILE))
        model.size_shape_ = {k: [float(x) for x in v] for k, v in config["size_shape"].items()}
        model.base_rates_ = {k: float(v) for k, v in config["base_rates"].items()}
        model.feature_names_ = list(config["feature_names"])
        model.n_training_rows_ = int(config["n_training_rows"])
        model.origins_ = [pd.Timestamp(o) for o in config["origins"]]
        if "aggregate_dependence" in config:  # absent from models saved before it existed
            model.aggregate_dependence_ = float(config["aggregate_dependence"])
        intervals_path = directory / _INTERVALS_FILE
        if intervals_path.exists():
            model.intervals_ = IntervalTable.from_dict(json.loads(intervals_path.read_text()))
        return model

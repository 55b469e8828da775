"""Model registry: register a version and move the ``champion`` alias only when it is better.

The gate, in order (the first rule that applies decides):

1. a candidate that does not beat the better of the two baselines on its validation month (the
   naive last published price, score 1.0, and the trusted last price, the anchor after quality
   verdicts) is rejected;
2. with no champion yet, the candidate is promoted;
3. a candidate whose validation month is older than the champion's is rejected, so that a
   backfill never demotes a model trained on newer data;
4. the champion is re-scored on the candidate's validation month; a candidate with a higher
   score than the champion there is rejected. When both validated on the same month, the
   champion's registered model was refit on that month, so re-scoring it there would be
   in-sample: its recorded out-of-sample score on that month (the ``gate_score`` tag written at
   registration) is used instead;
5. otherwise the candidate is promoted.

"Better" is the :func:`gate_score`, the mean of RMSE/naive and MAE/naive on the same rows, where
the model's MAE is its median's and its RMSE its mean's (the metrics each is made for): a model
that trades a lower RMSE for a higher MAE than the last price does not beat it. When no model
has passed yet, the registry serves a *baseline version* (the trusted last price with conformal
intervals, :func:`register_baseline`), so users never get a forecast worse than "no change"
because nothing better exists; it is then the champion a candidate must beat. The decision and its reason are recorded as tags of the
candidate version. Aliases are used, not the deprecated stages.

Concurrency: registering and the read-decide-write of the gate run under
:func:`~milkprice.registry.locks.registry_lock`, which holds for every process sharing the store
(a file lock for SQLite, an advisory lock for PostgreSQL, a lease in the registry for an HTTP
tracking server). Inside it, the alias is moved only if it still names the champion the
decision was made against (compare-and-set); if it moved meanwhile (someone moved it by hand,
or a lease expired during a very long re-scoring), the gate is run again against the new one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from milkprice.months import Month
from milkprice.registry.tracking import LoggedRun, registry_lock

__all__ = [
    "CHAMPION_ALIAS",
    "Champion",
    "PromotionDecision",
    "baseline_score",
    "current_champion",
    "decide_promotion",
    "gate_score",
    "promote_baseline",
    "promote_if_better",
    "register_version",
]

CHAMPION_ALIAS = "champion"
VALIDATION_MONTH_TAG = "validation_month"
GATE_SCORE_TAG = "gate_score"
_MAX_DECISIONS = 5  # gate runs when the alias keeps moving under a decision (see the docstring)


@dataclass(frozen=True)
class Champion:
    """The version holding the ``champion`` alias."""

    version: str
    validation_month: Month
    model_uri: str
    recorded_score: float | None = None
    """Its out-of-sample gate score on its own validation month, when recorded."""


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the candidate took the alias, and why."""

    candidate_version: str
    promoted: bool
    reason: str
    previous_champion: str | None = None
    champion_score_on_month: float | None = None
    served_baseline: str | None = None
    """The baseline version that took the alias because no model has passed yet, if any."""

    def to_dict(self) -> dict[str, object]:
        """Plain dict, for logs and artifacts."""
        return asdict(self)


def gate_score(metrics: Mapping[str, float]) -> float:
    """``(RMSE / naive RMSE + MAE / naive MAE) / 2`` on the same rows; below 1 beats naive.

    NaN when a naive error is 0 (nothing to beat), which no comparison accepts.
    """
    ratios = []
    for metric in ("rmse", "mae"):
        naive = float(metrics[f"naive_val_{metric}"])
        ratios.append(float(metrics[f"val_{metric}"]) / naive if naive else float("nan"))
    return (ratios[0] + ratios[1]) / 2


def baseline_score(metrics: Mapping[str, float]) -> float:
    """The better baseline's gate score: the naive forecast's (1.0) or the trusted last price's.

    The trusted last price is one number, scored with both RMSE and MAE on the same rows.
    """
    trusted = []
    for metric in ("rmse", "mae"):
        naive = float(metrics[f"naive_val_{metric}"])
        value = metrics.get(f"trusted_val_{metric}")
        if value is None or not naive:
            return 1.0
        trusted.append(float(value) / naive)
    return min(1.0, (trusted[0] + trusted[1]) / 2)


def register_version(
    tracking_uri: str, model_name: str, logged: LoggedRun, tags: Mapping[str, str]
) -> str:
    """Register the run's model as a new version of ``model_name``; return the version.

    Under the registry lock: a version number is ``max + 1``, which concurrent writers to a
    database store would otherwise race for (MLflow retries that a few times, then fails).
    """
    mlflow.set_tracking_uri(tracking_uri)
    with registry_lock(tracking_uri, model_name):
        version = mlflow.register_model(logged.model_uri, model_name, tags=dict(tags))
    return str(version.version)


def current_champion(client: MlflowClient, model_name: str) -> Champion | None:
    """The version behind the ``champion`` alias, or ``None`` when there is none yet."""
    try:
        version = client.get_model_version_by_alias(model_name, CHAMPION_ALIAS)
    except MlflowException:
        return None
    month_text = version.tags.get(VALIDATION_MONTH_TAG)
    if not month_text:
        raise ValueError(
            f"champion version {version.version} of {model_name!r} has no "
            f"{VALIDATION_MONTH_TAG!r} tag; tag it or move the alias by hand"
        )
    recorded = version.tags.get(GATE_SCORE_TAG)
    return Champion(
        str(version.version),
        Month.parse(month_text),
        f"models:/{model_name}/{version.version}",
        float(recorded) if recorded else None,
    )


def decide_promotion(
    *,
    candidate_version: str,
    candidate_month: Month,
    candidate_metrics: Mapping[str, float],
    champion: Champion | None,
    rescore_champion: Callable[[Champion], float],
) -> PromotionDecision:
    """Apply the gate (module docstring) without touching the registry."""
    score = gate_score(candidate_metrics)
    baseline = baseline_score(candidate_metrics)
    if not score < baseline:
        which = "the naive forecast" if baseline >= 1.0 else "the trusted last price"
        return PromotionDecision(
            candidate_version,
            False,
            f"score {score:.4f} (mean of RMSE and MAE / naive) does not beat {which} "
            f"({baseline:.4f}) on {candidate_month}",
            champion.version if champion else None,
        )
    if champion is None:
        return PromotionDecision(
            candidate_version,
            True,
            f"first champion: score {score:.4f} beats the baselines ({baseline:.4f}) on "
            f"{candidate_month}",
        )
    if candidate_month < champion.validation_month:
        return PromotionDecision(
            candidate_version,
            False,
            f"validation month {candidate_month} is older than the champion's "
            f"({champion.validation_month}, version {champion.version})",
            champion.version,
        )
    same_month = candidate_month == champion.validation_month
    if same_month and champion.recorded_score is not None:
        champion_score, how = champion.recorded_score, "recorded out-of-sample"
    else:
        champion_score, how = float(rescore_champion(champion)), "re-scored"
    if score > champion_score:
        return PromotionDecision(
            candidate_version,
            False,
            f"score {score:.4f} is worse than champion version {champion.version} "
            f"{how} on {candidate_month} ({champion_score:.4f})",
            champion.version,
            champion_score,
        )
    return PromotionDecision(
        candidate_version,
        True,
        f"score {score:.4f} beats the baselines ({baseline:.4f}) and champion version "
        f"{champion.version} "
        f"({how} {champion_score:.4f}) on {candidate_month}",
        champion.version,
        champion_score,
    )


def promote_if_better(
    *,
    tracking_uri: str,
    model_name: str,
    candidate_version: str,
    candidate_month: Month,
    candidate_metrics: Mapping[str, float],
    rescore_champion: Callable[[Champion], float],
) -> PromotionDecision:
    """Decide, move the alias if the candidate wins, and tag the candidate with the decision.

    The whole read-decide-write runs under the registry lock, so two runs finishing together,
    on one machine or two, cannot both decide against the same champion and both take the
    alias; the alias is set only while it still names the champion decided against.
    """
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    with registry_lock(tracking_uri, model_name):
        decision = _decide_and_set(
            client,
            model_name,
            candidate_version=candidate_version,
            candidate_month=candidate_month,
            candidate_metrics=candidate_metrics,
            rescore_champion=rescore_champion,
        )
        client.set_model_version_tag(
            model_name,
            candidate_version,
            "promotion",
            "promoted" if decision.promoted else "rejected",
        )
        client.set_model_version_tag(
            model_name, candidate_version, "promotion_reason", decision.reason
        )
    return decision


def promote_baseline(tracking_uri: str, model_name: str, baseline_version: str) -> bool:
    """Give a registered baseline version the alias if, under the lock, there is no champion.

    Returns:
        Whether the baseline took the alias (a model promoted meanwhile keeps it).
    """
    client = MlflowClient(tracking_uri=tracking_uri)
    with registry_lock(tracking_uri, model_name):
        taken = current_champion(client, model_name) is None
        if taken:
            client.set_registered_model_alias(model_name, CHAMPION_ALIAS, baseline_version)
        client.set_model_version_tag(
            model_name, baseline_version, "promotion", "promoted" if taken else "rejected"
        )
        client.set_model_version_tag(
            model_name,
            baseline_version,
            "promotion_reason",
            "no model has passed the gate: the trusted last price is served"
            if taken
            else "a model took the alias first",
        )
    return taken


def _version_of(champion: Champion | None) -> str | None:
    return champion.version if champion else None


def _decide_and_set(
    client: MlflowClient,
    model_name: str,
    *,
    candidate_version: str,
    candidate_month: Month,
    candidate_metrics: Mapping[str, float],
    rescore_champion: Callable[[Champion], float],
) -> PromotionDecision:
    """The gate against the current champion; the alias moves only if that is still it."""
    for _ in range(_MAX_DECISIONS):
        champion = current_champion(client, model_name)
        decision = decide_promotion(
            candidate_version=candidate_version,
            candidate_month=candidate_month,
            candidate_metrics=candidate_metrics,
            champion=champion,
            rescore_champion=rescore_champion,
        )
        if not decision.promoted:
            return decision
        if _version_of(current_champion(client, model_name)) != _version_of(champion):
            continue  # the alias moved while the champion was re-scored: decide again
        client.set_registered_model_alias(model_name, CHAMPION_ALIAS, candidate_version)
        return decision
    raise RuntimeError(
        f"the {CHAMPION_ALIAS!r} alias of {model_name!r} moved during each of "
        f"{_MAX_DECISIONS} promotion decisions for version {candidate_version}; is something "
        "outside milkprice moving it?"
    )

"""Model registry: register a version and move the ``champion`` alias only when it is better.

The gate, in order (the first rule that applies decides):

1. a candidate that does not beat the naive forecast on its validation month is rejected;
2. with no champion yet, the candidate is promoted;
3. a candidate whose validation month is older than the champion's is rejected, so that a
   backfill never demotes a model trained on newer data;
4. the champion is re-scored on the candidate's validation month; a candidate with a higher
   score than the champion there is rejected;
5. otherwise the candidate is promoted.

"Better" is the :func:`gate_score`, the mean of RMSE/naive and MAE/naive on the same rows (the
metric the model's settings are chosen on): a model that trades a lower RMSE for a higher MAE
than the last price does not beat it. The decision and its reason are recorded as tags of the
candidate version. Aliases are used, not the deprecated stages.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from milkprice.months import Month
from milkprice.registry.tracking import LoggedRun, mlflow_lock

__all__ = [
    "CHAMPION_ALIAS",
    "Champion",
    "PromotionDecision",
    "current_champion",
    "decide_promotion",
    "gate_score",
    "promote_if_better",
    "register_version",
]

CHAMPION_ALIAS = "champion"
VALIDATION_MONTH_TAG = "validation_month"


@dataclass(frozen=True)
class Champion:
    """The version holding the ``champion`` alias."""

    version: str
    validation_month: Month
    model_uri: str


@dataclass(frozen=True)
class PromotionDecision:
    """Whether the candidate took the alias, and why."""

    candidate_version: str
    promoted: bool
    reason: str
    previous_champion: str | None = None
    champion_score_on_month: float | None = None

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


def register_version(
    tracking_uri: str, model_name: str, logged: LoggedRun, tags: Mapping[str, str]
) -> str:
    """Register the run's model as a new version of ``model_name``; return the version."""
    mlflow.set_tracking_uri(tracking_uri)
    with mlflow_lock(tracking_uri):
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
    return Champion(
        str(version.version), Month.parse(month_text), f"models:/{model_name}/{version.version}"
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
    if not score < 1.0:
        return PromotionDecision(
            candidate_version,
            False,
            f"score {score:.4f} (mean of RMSE and MAE / naive) does not beat the naive forecast "
            f"(1.0) on {candidate_month}",
            champion.version if champion else None,
        )
    if champion is None:
        return PromotionDecision(
            candidate_version,
            True,
            f"first champion: score {score:.4f} beats naive (1.0) on {candidate_month}",
        )
    if candidate_month < champion.validation_month:
        return PromotionDecision(
            candidate_version,
            False,
            f"validation month {candidate_month} is older than the champion's "
            f"({champion.validation_month}, version {champion.version})",
            champion.version,
        )
    champion_score = float(rescore_champion(champion))
    if score > champion_score:
        return PromotionDecision(
            candidate_version,
            False,
            f"score {score:.4f} is worse than champion version {champion.version} "
            f"re-scored on {candidate_month} ({champion_score:.4f})",
            champion.version,
            champion_score,
        )
    return PromotionDecision(
        candidate_version,
        True,
        f"score {score:.4f} beats naive (1.0) and champion version {champion.version} "
        f"({champion_score:.4f}) on {candidate_month}",
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

    The whole read-decide-write runs under the store's lock, so two runs finishing together
    cannot both read the same champion and both take the alias.
    """
    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    with mlflow_lock(tracking_uri):
        decision = decide_promotion(
            candidate_version=candidate_version,
            candidate_month=candidate_month,
            candidate_metrics=candidate_metrics,
            champion=current_champion(client, model_name),
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
        if decision.promoted:
            client.set_registered_model_alias(model_name, CHAMPION_ALIAS, candidate_version)
    return decision

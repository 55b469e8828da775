"""Monitoring that acts: thresholds on the accuracy table, alerts, and a webhook sender.

:func:`evaluate_accuracy` is pure: it reads one month of
:func:`~milkprice.monitoring.accuracy.accuracy_table` (by default the newest month with scored
rows) and returns the :class:`Alert` objects its figures call for. Other checks (data drift,
later) are functions of the same shape whose alerts are appended to the same list; everything
downstream (events, webhook, report) takes a list of alerts and does not care which check made
them. :func:`send_alerts` POSTs them as Slack-compatible JSON (a ``text`` field) to a webhook:
it returns whether they were delivered, never raises, and never logs the webhook's URL (it is
a secret: Slack and Teams put the credential in the path).
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import httpx
import pandas as pd
import tenacity
from mlflow import MlflowClient
from pydantic import SecretStr

from milkprice.serving.loader import NoChampionError, resolve_version
from milkprice.settings import Settings

__all__ = [
    "Alert",
    "AlertThresholds",
    "ChampionFigures",
    "champion_figures",
    "evaluate_accuracy",
    "failure_alert",
    "monitoring_markdown",
    "month_accuracy",
    "send_alerts",
    "webhook_payload",
]

logger = logging.getLogger(__name__)

_TIMEOUT_S = 5.0
_CONNECT_RETRIES = 2  # httpx's transport retries a failed connection (with its own backoff)
_ATTEMPTS = 3  # sends of the same alert on a 429/5xx answer or a timeout
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})


@dataclass(frozen=True)
class AlertThresholds:
    """When the accuracy of a month calls for an alert (from :class:`Settings`)."""

    rmse_ratio: float = 1.03
    min_coverage_80: float = 0.70
    max_rmse_increase: float = 0.25
    min_scored_rows: int = 400

    @classmethod
    def from_settings(cls, settings: Settings) -> AlertThresholds:
        """The thresholds the ``MILKPRICE_ALERT_*`` variables set."""
        return cls(
            rmse_ratio=settings.alert_rmse_ratio,
            min_coverage_80=settings.alert_min_coverage_80,
            max_rmse_increase=settings.alert_max_rmse_increase,
            min_scored_rows=settings.alert_min_scored_rows,
        )


@dataclass(frozen=True)
class Alert:
    """One reason to act, with the figures behind it and a message for humans.

    Attributes:
        kind: What is wrong: ``accuracy`` (errors too large), ``coverage`` (intervals too
            narrow), ``failure`` (a flow run failed), ``drift``, ``stale-data`` (no new
            publication for too long, :mod:`milkprice.monitoring.freshness`).
        check: The rule that fired, e.g. ``rmse_vs_naive``.
        message: One line a person can act on.
        month: The month monitored (``YYYY-MM``), if any.
        value: The figure the rule compared.
        threshold: The limit it crossed.
        figures: Every figure of the month worth seeing beside it.
    """

    kind: str
    check: str
    message: str
    month: str | None = None
    value: float | None = None
    threshold: float | None = None
    figures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain, JSON-serialisable dict (events, webhooks, artifacts)."""
        return asdict(self)


@dataclass(frozen=True)
class ChampionFigures:
    """The champion's validation figures, as its MLflow run logged them."""

    version: str
    validation_month: str
    val_rmse: float | None


def champion_figures(settings: Settings) -> ChampionFigures | None:
    """The champion's version and ``val_rmse``; ``None`` when the registry has no champion."""
    try:
        registered = resolve_version(settings)
    except NoChampionError:
        return None
    val_rmse = None
    if registered.run_id:
        run = MlflowClient(tracking_uri=settings.mlflow_tracking_uri).get_run(registered.run_id)
        val_rmse = run.data.metrics.get("val_rmse")
    return ChampionFigures(registered.version, registered.validation_month, val_rmse)


def month_accuracy(table: pd.DataFrame, month: str | None = None) -> dict[str, Any] | None:
    """One month's row of a per-month accuracy table (no ``by`` columns).

    Args:
        table: Output of :func:`~milkprice.monitoring.accuracy.accuracy_table` with ``by=()``.
        month: ``YYYY-MM``; ``None`` means the newest month with scored rows.

    Returns:
        The row as a dict, or ``None`` when the month has no row (no stored forecast covers
        it) or, with ``month=None``, no month has scored rows yet.
    """
    if table.empty:
        return None
    if month is None:
        scored = table.loc[table["scored"] > 0]
        return scored.sort_values("month").iloc[-1].to_dict() if len(scored) else None
    rows = table.loc[table["month"] == month]
    return rows.iloc[0].to_dict() if len(rows) else None


def _figures(row: dict[str, Any]) -> dict[str, float]:
    keys = ("scored", "pending", "rmse", "naive_rmse", "rmse_ratio", "mae_ratio", "coverage_80")
    return {k: float(row[k]) for k in (*keys, "coverage_95") if k in row}


def evaluate_accuracy(
    table: pd.DataFrame,
    thresholds: AlertThresholds,
    *,
    month: str | None = None,
    champion_val_rmse: float | None = None,
) -> list[Alert]:
    """The alerts one month of the accuracy table calls for (empty: all is well).

    A month with fewer than ``thresholds.min_scored_rows`` scored rows (not published yet, or
    no forecast) never alerts: its figures are too noisy to act on.

    Args:
        table: Per-month accuracy table (:func:`~milkprice.monitoring.accuracy.accuracy_table`).
        thresholds: The limits.
        month: ``YYYY-MM`` to evaluate; ``None``: the newest month with scored rows.
        champion_val_rmse: The champion's RMSE on its validation month; ``None`` skips the
            comparison with it.
    """
    row = month_accuracy(table, month)
    if row is None or row["scored"] < thresholds.min_scored_rows:
        return []
    at, figures, alerts = str(row["month"]), _figures(row), []
    ratio, coverage, rmse = row["rmse_ratio"], row["coverage_80"], row["rmse"]
    if not math.isnan(ratio) and ratio > thresholds.rmse_ratio:
        alerts.append(
            Alert(
                "accuracy",
                "rmse_vs_naive",
                f"{at}: the model's RMSE is {ratio:.3f}x the naive forecast's from the same "
                f"cut-offs (alert above {thresholds.rmse_ratio:.3f}) on {row['scored']:.0f} rows",
                at,
                float(ratio),
                thresholds.rmse_ratio,
                figures,
            )
        )
    limit = (
        None
        if champion_val_rmse is None
        else champion_val_rmse * (1 + thresholds.max_rmse_increase)
    )
    if limit is not None and not math.isnan(rmse) and rmse > limit:
        alerts.append(
            Alert(
                "accuracy",
                "rmse_vs_validation",
                f"{at}: RMSE {rmse:.4f} is {rmse / champion_val_rmse - 1:.0%} above the "
                f"champion's validation RMSE {champion_val_rmse:.4f} (alert above "
                f"+{thresholds.max_rmse_increase:.0%})",
                at,
                float(rmse),
                float(limit),
                {**figures, "champion_val_rmse": float(champion_val_rmse)},
            )
        )
    if not math.isnan(coverage) and coverage < thresholds.min_coverage_80:
        alerts.append(
            Alert(
                "coverage",
                "coverage_80",
                f"{at}: the 80% interval covered {coverage:.1%} of the actual prices (alert "
                f"below {thresholds.min_coverage_80:.0%})",
                at,
                float(coverage),
                thresholds.min_coverage_80,
                figures,
            )
        )
    return alerts


def failure_alert(flow_name: str, run_name: str, message: str) -> Alert:
    """The alert a failed flow run sends."""
    return Alert("failure", "flow_run", f"flow run {run_name} of {flow_name} failed: {message}")


def webhook_payload(alerts: list[Alert]) -> dict[str, Any]:
    """Slack-compatible JSON: ``text`` for people, ``alerts`` for machines."""
    lines = [f"milkprice: {len(alerts)} alert(s)", *(f"- {a.message}" for a in alerts)]
    return {"text": "\n".join(lines), "alerts": [a.to_dict() for a in alerts]}


class _UndeliveredError(Exception):
    """The webhook did not take the message; ``outcome`` says why (never the URL)."""

    def __init__(self, outcome: str) -> None:
        super().__init__(outcome)
        self.outcome = outcome


class _RetryableError(_UndeliveredError):
    """A 429/5xx answer or a timeout: worth another send."""


def _send_once(transport: httpx.HTTPTransport, request: httpx.Request) -> None:
    """One POST; raises :class:`_RetryableError` or :class:`_UndeliveredError` unless a 2xx answers."""
    try:
        response = transport.handle_request(request)
        response.read()
        response.close()
    except httpx.TimeoutException as exc:
        raise _RetryableError(type(exc).__name__) from exc
    if response.is_success:
        return
    outcome = f"HTTP {response.status_code}"
    raise (_RetryableError if response.status_code in _RETRY_STATUS else _UndeliveredError)(outcome)


def send_alerts(
    alerts: list[Alert],
    webhook: SecretStr | None,
    *,
    timeout_s: float = _TIMEOUT_S,
    attempts: int = _ATTEMPTS,
    backoff_s: float = 0.5,
) -> bool:
    """POST ``alerts`` to ``webhook`` as one message; whether it was delivered (a 2xx answer).

    A refused connection is retried by httpx's transport; a 429/5xx answer or a timeout is
    retried up to ``attempts`` sends, ``backoff_s`` apart (doubling). Never raises; logs the
    failure without the URL (only the error's type or the HTTP status).
    """
    url = webhook.get_secret_value() if webhook is not None else ""
    if not alerts or not url:
        return False
    try:
        request = httpx.Request(
            "POST",
            url,
            json=webhook_payload(alerts),
            extensions={"timeout": httpx.Timeout(timeout_s).as_dict()},
        )
    except Exception as exc:
        logger.warning(
            "alert webhook not sent: MILKPRICE_ALERT_WEBHOOK is invalid (%s)", type(exc).__name__
        )
        return False
    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(_RetryableError),
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=tenacity.wait_exponential(multiplier=backoff_s, exp_base=2),
        reraise=True,
    )
    try:
        # The transport, not httpx.Client: the client logs every request's full URL at INFO.
        with httpx.HTTPTransport(retries=_CONNECT_RETRIES) as transport:
            retrying(_send_once, transport, request)
    except _UndeliveredError as exc:
        outcome = exc.outcome
    except Exception as exc:  # refused after the transport's retries, a broken URL, ...
        outcome = type(exc).__name__
    else:
        return True
    logger.warning(
        "alert webhook not delivered (%s); %d alert(s) not sent: %s",
        outcome,
        len(alerts),
        "; ".join(a.check for a in alerts),
    )
    return False


def _fmt(value: object, pattern: str = "{:.3f}") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return pattern.format(value)


def monitoring_markdown(
    month: str,
    row: dict[str, Any] | None,
    alerts: list[Alert],
    *,
    champion: ChampionFigures | None = None,
    delivered: bool | None = None,
) -> str:
    """The monitoring run's summary: the month's accuracy and coverage, and its alerts.

    Args:
        month: The month monitored.
        row: Its row of the accuracy table (:func:`month_accuracy`), ``None`` if no forecast.
        alerts: What was raised.
        champion: The model in service, for context.
        delivered: Whether the webhook got the alerts; ``None`` when none is configured.
    """
    lines = [f"# Monitoring {month}", ""]
    if champion is not None:
        lines.append(
            f"Champion: version **{champion.version}**, validated on "
            f"{champion.validation_month}, val RMSE {_fmt(champion.val_rmse, '{:.4f}')}."
        )
    if row is None:
        lines += [
            "",
            f"**No stored forecast covers {month}**: nothing to score. Forecasts are stored by "
            "the `milk-price-forecast` flow (`milkprice forecast`) under `forecasts/`.",
        ]
    else:
        lines += [
            "",
            "| scored | pending | unreported | RMSE | naive RMSE | RMSE/naive | MAE/naive "
            "| cover 80% | cover 95% |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
            f"| {row['scored']:.0f} | {row['pending']:.0f} | {row['unreported']:.0f} "
            f"| {_fmt(row['rmse'], '{:.4f}')} | {_fmt(row['naive_rmse'], '{:.4f}')} "
            f"| {_fmt(row['rmse_ratio'])} | {_fmt(row['mae_ratio'])} "
            f"| {_fmt(row['coverage_80'], '{:.1%}')} | {_fmt(row['coverage_95'], '{:.1%}')} |",
        ]
        if row["scored"] == 0:
            lines += ["", f"Nothing of {month} is published yet: every row is pending."]
        suspect = row.get("suspect_series")
        if suspect:
            lines += [
                "",
                f"Anchors discounted: {suspect:.0f} series had a suspect last price at the "
                "cut-off (a jump from its level not yet settled); their forecasts mixed it with "
                "the previous level by its p_glitch.",
            ]
        brier = row.get("brier_change")
        if brier is not None and not math.isnan(brier):
            lines += ["", f"Brier score of p_change: {brier:.4f}."]
    lines += ["", f"## Alerts ({len(alerts)})", ""]
    lines += [f"- **{a.kind}** ({a.check}): {a.message}" for a in alerts] or ["None."]
    if alerts:
        sent = {
            None: "no webhook configured (MILKPRICE_ALERT_WEBHOOK): alerts logged only",
            True: "sent to the webhook",
            False: "the webhook did NOT receive them (see the run's logs)",
        }[delivered]
        lines += ["", f"Notification: {sent}."]
    return "\n".join(lines)

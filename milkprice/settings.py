"""The one settings object, read at each entry point (flow start, CLI, API start-up).

Nothing here runs at import time: call :func:`get_settings` where a program starts.
Standard variables keep their standard names (``AWS_ENDPOINT_URL``, ``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["SNIIM_LECHE_URL_TEMPLATE", "STACK_FILE", "Settings", "Source", "get_settings"]

# The file in the state folder (STATE_DIR) where `make up` records its stack; read by one-off
# runs to reuse its Prefect server.
STACK_FILE = "stack.json"

Source = Literal["local", "s3"]

# Public SNIIM file pattern seen in parsers of people who used the real publication (one file per
# publication day, DDMMYYYY); plausible, not verified here: nothing reaches the network in tests.
SNIIM_LECHE_URL_TEMPLATE = (
    "https://www.economia-sniim.gob.mx/SNIIM-Archivosfuente/Comentarios/Otros/"
    "Leche{day:%d%m%Y}.xlsx"
)


class Settings(BaseSettings):
    """Where the lake lives, where MLflow tracks, and the names milkprice uses."""

    # Each field is read from its one documented variable only (its validation_alias). With
    # populate_by_name pydantic-settings would also read the bare field name from the
    # environment, so a stray SEED, SOURCE or DATA_ROOT would change milkprice's settings;
    # keyword overrides by field name are mapped to the variable names instead (see below).
    model_config = SettingsConfigDict(extra="ignore", populate_by_name=False)

    data_root: Path = Field(
        Path("data/datalake"),
        validation_alias="MILKPRICE_DATA_ROOT",
        description="Root folder of the local lake.",
    )
    s3_bucket: str = Field(
        "mlops-milk-datalake",
        validation_alias="S3_BUCKET",
        description="Bucket of the S3 lake.",
    )
    s3_prefix: str = Field(
        "",
        validation_alias="MILKPRICE_S3_PREFIX",
        description="Optional key prefix of the S3 lake inside the bucket.",
    )
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias="AWS_ENDPOINT_URL",
        description="S3-compatible endpoint (MinIO, moto, ...); unset means AWS itself.",
    )
    source: Source = Field(
        "local",
        validation_alias="MILKPRICE_SOURCE",
        description="Default lake: local or s3.",
    )
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias="MLFLOW_TRACKING_URI",
        description="MLflow tracking store; default an SQLite file in the working directory.",
    )
    mlflow_ui_url: str = Field(
        "http://127.0.0.1:5000",
        validation_alias="MILKPRICE_MLFLOW_UI_URL",
        description="Where the MLflow UI answers, for links to runs from a file-based store.",
    )
    mlflow_experiment: str = Field(
        "milk-price",
        validation_alias="MILKPRICE_MLFLOW_EXPERIMENT",
    )
    registered_model: str = Field(
        "milk-price-model",
        validation_alias="MILKPRICE_REGISTERED_MODEL",
    )
    seed: int = Field(0, validation_alias="MILKPRICE_SEED")
    n_trials: int = Field(
        0,
        ge=0,
        validation_alias="MILKPRICE_N_TRIALS",
        description="Optuna trials per training run; 0 (the default): the forecaster's fixed "
        "settings, nothing searched.",
    )
    api_reload_seconds: float = Field(
        60.0,
        gt=0,
        validation_alias="MILKPRICE_API_RELOAD_SECONDS",
        description="How often the API checks whether the champion alias moved (seconds).",
    )
    api_admin_token: SecretStr | None = Field(
        None,
        validation_alias="MILKPRICE_API_ADMIN_TOKEN",
        description="Bearer token for the API's /admin endpoints; required to bind beyond "
        "loopback; secret (never logged).",
    )
    alert_rmse_ratio: float = Field(
        1.03,
        gt=0,
        validation_alias="MILKPRICE_ALERT_RMSE_RATIO",
        description="Alert when a month's RMSE / naive RMSE (same cut-offs, same rows) is above.",
    )
    alert_min_coverage_80: float = Field(
        0.70,
        ge=0,
        le=1,
        validation_alias="MILKPRICE_ALERT_MIN_COVERAGE_80",
        description="Alert when a month's 80% interval covers fewer actual prices than this.",
    )
    alert_max_rmse_increase: float = Field(
        0.25,
        ge=0,
        validation_alias="MILKPRICE_ALERT_MAX_RMSE_INCREASE",
        description="Alert when a month's RMSE is above the champion's val_rmse by more than "
        "this fraction (0.25 = 25%).",
    )
    alert_min_scored_rows: int = Field(
        400,
        ge=1,
        validation_alias="MILKPRICE_ALERT_MIN_SCORED_ROWS",
        description="A month with fewer scored forecast rows is reported but never alerts.",
    )
    # 0.4: prices trend up, so the 4 `price` pairs (of 12) drift against a 12-month window in
    # a quiet month (share 0.33); one group drifting in all three columns makes it 0.5.
    alert_max_drift_share: float = Field(
        0.4,
        ge=0,
        le=1,
        validation_alias="MILKPRICE_ALERT_MAX_DRIFT_SHARE",
        description="Alert when a month's share of drifted (Tipo/Canal, column) pairs is above.",
    )
    alert_webhook: SecretStr | None = Field(
        None,
        validation_alias="MILKPRICE_ALERT_WEBHOOK",
        description="Webhook (Slack-compatible JSON with `text`) that receives alerts; secret.",
    )
    retrain_on_alert: bool = Field(
        False,
        validation_alias="MILKPRICE_RETRAIN_ON_ALERT",
        description="Serve train-milk-model with a trigger on milkprice.alert.accuracy events.",
    )

    dask_address: str | None = Field(
        None,
        validation_alias="MILKPRICE_DASK_ADDRESS",
        description="Address of an existing Dask scheduler (tcp://host:port) for fan-out work "
        "(backtests, backfills); unset: run in this process.",
    )
    work_pool: str = Field(
        "milkprice-pool",
        validation_alias="MILKPRICE_WORK_POOL",
        description="Prefect work pool (type process) the cluster deployments go to.",
    )

    timezone: str = Field(
        "America/Mexico_City",
        validation_alias="MILKPRICE_TIMEZONE",
        description="IANA time zone of every schedule, and where year=0/month=0 and day=None "
        "resolve (the previous month / the day of a run's scheduled time in this zone).",
    )
    sniim_url_template: str = Field(
        SNIIM_LECHE_URL_TEMPLATE,
        validation_alias="MILKPRICE_SNIIM_URL_TEMPLATE",
        description="URL of a day's SNIIM milk publication: a Python format string over `day` "
        "(a datetime.date), e.g. '.../Leche{day:%d%m%Y}.xlsx'.",
    )
    sniim_timeout_seconds: float = Field(
        30.0,
        gt=0,
        validation_alias="MILKPRICE_SNIIM_TIMEOUT_SECONDS",
        description="How long one download of a publication may take before it counts as failed.",
    )
    catch_up_days: int = Field(
        31,
        ge=0,
        validation_alias="MILKPRICE_CATCH_UP_DAYS",
        description="How far back the ingest flow looks for publication days missing since "
        "the lake's newest date.",
    )
    stale_lake_days: int = Field(
        7,
        ge=1,
        validation_alias="MILKPRICE_STALE_LAKE_DAYS",
        description="Alert when the lake's newest publication is older than this many days.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"MILKPRICE_TIMEZONE={value!r} is not an IANA time zone") from exc
        return value

    @field_validator("sniim_url_template")
    @classmethod
    def _formattable_template(cls, value: str) -> str:
        try:
            value.format(day=date(2025, 1, 31))
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(
                f"MILKPRICE_SNIIM_URL_TEMPLATE={value!r} is not a format string over day "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        return value

    @property
    def zone(self) -> ZoneInfo:
        """The time zone of :attr:`timezone`."""
        return ZoneInfo(self.timezone)

    @model_validator(mode="before")
    @classmethod
    def _field_names_as_overrides(cls, data: object) -> object:
        """Accept ``Settings(data_root=...)``: only keyword arguments can carry field names."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for name, info in cls.model_fields.items():
            if name in data and isinstance(info.validation_alias, str):
                data[info.validation_alias] = data.pop(name)
        return data

    def lake_uri(self, source: Source | None = None) -> str:
        """Base URI of the lake for ``source`` (default: the configured source)."""
        chosen = source or self.source
        if chosen == "local":
            return str(self.data_root.expanduser().resolve())
        prefix = self.s3_prefix.strip("/")
        return f"s3://{self.s3_bucket}/{prefix}" if prefix else f"s3://{self.s3_bucket}"

    def storage_options(self, source: Source | None = None) -> dict[str, object]:
        """Storage options (fsspec) for ``source``; only S3 needs any."""
        if (source or self.source) == "local":
            return {}
        options: dict[str, object] = {}
        if self.aws_endpoint_url:
            options["endpoint_url"] = self.aws_endpoint_url
        return options


def get_settings(**overrides: object) -> Settings:
    """Read the settings from the environment now; keyword overrides win."""
    return Settings(**overrides)  # type: ignore[arg-type]

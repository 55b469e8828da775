"""The one settings object, read at each entry point (flow start, CLI, API start-up).

Nothing here runs at import time: call :func:`get_settings` where a program starts.
Standard variables keep their standard names (``AWS_ENDPOINT_URL``, ``MLFLOW_TRACKING_URI``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["Settings", "Source", "get_settings"]

Source = Literal["local", "s3"]


class Settings(BaseSettings):
    """Where the lake lives, where MLflow tracks, and the names milkprice uses."""

    model_config = SettingsConfigDict(extra="ignore", populate_by_name=True)

    data_root: Path = Field(
        Path("data/datalake"),
        validation_alias=AliasChoices("MILKPRICE_DATA_ROOT", "data_root"),
        description="Root folder of the local lake.",
    )
    s3_bucket: str = Field(
        "mlops-milk-datalake",
        validation_alias=AliasChoices("S3_BUCKET", "s3_bucket"),
        description="Bucket of the S3 lake.",
    )
    s3_prefix: str = Field(
        "",
        validation_alias=AliasChoices("MILKPRICE_S3_PREFIX", "s3_prefix"),
        description="Optional key prefix of the S3 lake inside the bucket.",
    )
    aws_endpoint_url: str | None = Field(
        None,
        validation_alias=AliasChoices("AWS_ENDPOINT_URL", "aws_endpoint_url"),
        description="S3-compatible endpoint (MinIO, moto, ...); unset means AWS itself.",
    )
    source: Source = Field(
        "local",
        validation_alias=AliasChoices("MILKPRICE_SOURCE", "source"),
        description="Default lake: local or s3.",
    )
    mlflow_tracking_uri: str = Field(
        "sqlite:///mlflow.db",
        validation_alias=AliasChoices("MLFLOW_TRACKING_URI", "mlflow_tracking_uri"),
        description="MLflow tracking store; default an SQLite file in the working directory.",
    )
    mlflow_experiment: str = Field(
        "milk-price",
        validation_alias=AliasChoices("MILKPRICE_MLFLOW_EXPERIMENT", "mlflow_experiment"),
    )
    registered_model: str = Field(
        "milk-price-model",
        validation_alias=AliasChoices("MILKPRICE_REGISTERED_MODEL", "registered_model"),
    )
    seed: int = Field(0, validation_alias=AliasChoices("MILKPRICE_SEED", "seed"))
    n_trials: int = Field(
        20,
        ge=1,
        validation_alias=AliasChoices("MILKPRICE_N_TRIALS", "n_trials"),
        description="Optuna trials per training run.",
    )

    def lake_uri(self, source: Source | None = None) -> str:
        """Base URI of the lake for ``source`` (default: the configured source)."""
        chosen = source or self.source
        if chosen == "local":
            return str(self.data_root.expanduser().resolve())
        prefix = self.s3_prefix.strip("/")
        return f"s3://{self.s3_bucket}/{prefix}" if prefix else f"s3://{self.s3_bucket}"

    def storage_options(self, source: Source | None = None) -> dict[str, object]:
        """fsspec storage options for ``source``; only S3 needs any."""
        if (source or self.source) == "local":
            return {}
        options: dict[str, object] = {}
        if self.aws_endpoint_url:
            options["endpoint_url"] = self.aws_endpoint_url
        return options


def get_settings(**overrides: object) -> Settings:
    """Read the settings from the environment now; keyword overrides win."""
    return Settings(**overrides)  # type: ignore[arg-type]

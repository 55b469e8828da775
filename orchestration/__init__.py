"""The Prefect layer of milkprice: flows, tasks, deployments and the CLI that drives them."""

from __future__ import annotations

import os

__all__ = ["NO_TELEMETRY", "disable_telemetry"]

# milkprice never talks to anything but its own services: Prefect's and MLflow's usage
# telemetry (and any tool honouring the DO_NOT_TRACK convention) are off unless a user
# explicitly turns them back on in the environment.
NO_TELEMETRY = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
}


def disable_telemetry() -> None:
    """Set the telemetry switches off for this process and its children (user values win)."""
    for key, value in NO_TELEMETRY.items():
        os.environ.setdefault(key, value)

"""Flow runs whose process died are marked Crashed: heartbeats plus one automation.

When the serving process (and the flow-run subprocess it started) is killed, nothing is left
to report the run's end, and a self-hosted Prefect server keeps it ``Running`` forever (Prefect
Cloud has a managed "unresponsive run detection"; the OSS server has none). Prefect's documented
remedy ("Detect zombie flows", Prefect >= 3.1.8) has two halves:

- the flow-run process emits a ``prefect.flow-run.heartbeat`` event every
  ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY`` seconds (30 at least): :data:`HEARTBEAT_SECONDS`, set
  in the serving process's environment, which its flow-run subprocesses inherit;
- a proactive automation on the server: after a heartbeat of a run, if neither another heartbeat
  nor a final state of that run arrives within :data:`GRACE_SECONDS`, set the run ``Crashed``.
  :func:`ensure_crash_detection` creates it (or updates it to this definition) by name.
"""

from __future__ import annotations

import os
from datetime import timedelta
from uuid import UUID

from prefect.automations import Automation
from prefect.client.orchestration import get_client
from prefect.client.schemas.objects import StateType
from prefect.events.actions import ChangeFlowRunState
from prefect.events.schemas.automations import EventTrigger, Posture
from prefect.events.schemas.events import ResourceSpecification

__all__ = [
    "AUTOMATION_NAME",
    "GRACE_SECONDS",
    "HEARTBEAT_SECONDS",
    "crash_detection_automation",
    "enable_heartbeats",
    "ensure_crash_detection",
]

AUTOMATION_NAME = "milkprice: crash flow runs that stopped sending heartbeats"
# Prefect's minimum heartbeat interval; 3 missed beats make a run a zombie (the docs' 90 s).
HEARTBEAT_SECONDS = 30
GRACE_SECONDS = 90
_HEARTBEAT_VARIABLE = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
_FINAL_EVENTS = {
    "prefect.flow-run.Completed",
    "prefect.flow-run.Failed",
    "prefect.flow-run.Cancelled",
    "prefect.flow-run.Crashed",
}


def enable_heartbeats(environ: dict[str, str] | None = None) -> str:
    """Make flow runs started from this process send heartbeats (unless already configured).

    Returns the interval in force, in seconds. Call it before serving: the flow-run
    subprocesses read their settings from the environment they inherit.
    """
    target = os.environ if environ is None else environ
    return target.setdefault(_HEARTBEAT_VARIABLE, str(HEARTBEAT_SECONDS))


def crash_detection_automation(grace_seconds: int = GRACE_SECONDS) -> Automation:
    """The automation: a run silent for ``grace_seconds`` after a heartbeat becomes Crashed."""
    return Automation(
        name=AUTOMATION_NAME,
        description="Marks a flow run Crashed when its process stops sending heartbeats "
        f"(PREFECT_FLOWS_HEARTBEAT_FREQUENCY) for {grace_seconds} s, e.g. when the serving "
        "process was killed. Created by `milkprice serve`.",
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *_FINAL_EVENTS},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=grace_seconds),
        ),
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED,
                message=f"no heartbeat from the flow run's process for {grace_seconds} s: "
                "it was killed or its machine stopped",
            )
        ],
    )


def ensure_crash_detection(grace_seconds: int = GRACE_SECONDS) -> UUID:
    """Create the automation on the server of ``PREFECT_API_URL``, or update it; its id."""
    wanted = crash_detection_automation(grace_seconds)
    with get_client(sync_client=True) as client:
        existing = client.read_automations_by_name(name=AUTOMATION_NAME)
    if not existing:
        return UUID(str(wanted.create().id))
    wanted.id = existing[0].id
    wanted.update()
    return existing[0].id

"""A proposed remediation and its life: the record the executor, the API and the notifier share.

    proposed ──approve (enough approvers)──▶ approved ──▶ running ──▶ succeeded ──▶ verified
        │                                                    │            └──▶ failed verification ──▶ reverted
        ├──reject──▶ rejected                                └──▶ failed (exit code, timeout)
        └──expiry──▶ expired                 (restart mid-run) ──▶ interrupted (re-run only if idempotent)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionStatus = Literal[
    "proposed", "approved", "rejected", "expired", "running", "succeeded", "failed", "interrupted", "reverted"
]
Verification = Literal["pending", "passed", "failed", "skipped"]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    who: str
    role: str
    approve: bool
    at: float
    comment: str = ""


class Action(BaseModel):
    """One playbook run for one incident, from proposal to outcome."""

    model_config = ConfigDict(extra="forbid")

    id: str
    incident_id: str
    playbook: str
    service: str
    params: dict[str, Any]
    status: ActionStatus
    reason: str = Field(description="why this playbook was proposed")
    required_approvals: int = 1
    decisions: list[Decision] = Field(default_factory=list)
    proposed_at: float
    expires_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    command: list[str] = Field(default_factory=list, description="the argument list run (or, in dry-run, not run)")
    dry_run: bool = False
    verification: Verification = "pending"
    reverted: bool = False

    @property
    def approvals(self) -> list[Decision]:
        return [d for d in self.decisions if d.approve]

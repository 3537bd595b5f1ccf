"""A proposed remediation and its life: the record the executor, the API and the notifier share.

    proposed ──approve (enough approvers)──▶ approved ──▶ running ──▶ succeeded ──▶ verification passed
        │                                     │              │            └──▶ verification failed ──▶ reverting
        ├──reject──▶ rejected ◀──reject───────┤              └──▶ failed (exit code, timeout)          │
        └──expiry──▶ expired ◀──expiry────────┘                                        reverted ◀──────┤
                                              (crash mid-run) ──▶ interrupted             failed ◀──────┘
                                                               (or re-run, if the playbook is idempotent)

"Verified" is ``status == "succeeded"`` with ``verification == "passed"``. A dry run ends as
``succeeded`` with ``dry_run`` set, the command recorded and ``verification == "skipped"``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ActionStatus = Literal[
    "proposed", "approved", "rejected", "expired", "running", "succeeded", "failed", "interrupted", "reverting",
    "reverted",
]
OPEN_STATUSES = ("proposed", "approved", "running", "reverting")
Verification = Literal["pending", "passed", "failed", "skipped"]


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    who: str
    role: str
    approve: bool
    at: float
    comment: str = ""
    params: dict[str, Any] = Field(default_factory=dict, description="the parameters this decision was about")


class Outcome(BaseModel):
    """What one command run did; exit code None when it never started or was killed."""

    model_config = ConfigDict(extra="forbid")

    command: list[str]
    exit_code: int | None = None
    stdout: str = ""
    stderr: str = ""
    timed_out: bool = False

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and not self.timed_out


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
    timed_out: bool = False
    attempts: int = Field(default=0, description="runs started (more than one only after a crash, if idempotent)")
    blocked: str = Field(default="", description="why an approved action is not starting yet (blast radius)")
    verified_at: float | None = None
    revert: Outcome | None = Field(default=None, description="the revert command's run, after failed verification")

    @property
    def approvals(self) -> list[Decision]:
        return [d for d in self.decisions if d.approve]

    @property
    def approvers(self) -> set[str]:
        """People whose approval counts: approvals of the parameters as they stand now."""
        return {d.who for d in self.approvals if d.params == self.params}

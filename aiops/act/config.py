"""How remediation is allowed to run: ``executor:`` in ``aiops.yaml``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class ExecutorConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    playbooks_dir: Path = Field(default=Path("playbooks"), description="playbooks/*.yaml and playbooks/scripts/")
    target: Literal["kubectl", "sim"] = Field(default="kubectl", description="what the scripts act on (AIOPS_EXECUTOR__TARGET)")
    sim_control_url: str | None = Field(default=None, description="the simulator's control API, for target 'sim'")
    required_approvals: int = Field(default=1, ge=1, description="approvers needed unless a playbook asks for more")
    approval_ttl_s: float = Field(default=3600.0, gt=0, description="a proposal not approved by then expires")
    max_actions_per_hour: int = Field(default=10, ge=0, description="blast radius: runs per hour, all services")
    max_actions_per_service_per_hour: int = Field(default=3, ge=0)
    dry_run: bool = Field(default=False, description="record the command instead of running it")
    detached: bool = Field(default=False, description=(
        "run each command under a supervisor process (aiops.act.supervise) that holds the lease and "
        "records the outcome itself, so the run survives the engine dying and a standby never repeats it"))

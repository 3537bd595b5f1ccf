"""How expert feedback may change the models: ``learn:`` in ``aiops.yaml``."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class LearnConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_feedback: float = Field(default=0.25, gt=0, le=1, description="below this share of the configured "
                                "sensitivity a retune needs an approver's sign-off")  # fmt: skip
    record_points: int = Field(default=180, ge=0, description="recent points kept per series for replays (0: off)")
    match_s: float = Field(default=300.0, gt=0, description="an alert this close to a label counts as it")

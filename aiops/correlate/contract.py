"""The incident record others script against (shared/DESIGN.md, "Incident output")."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RootCause(_Model):
    service: str
    score: float
    reason: str
    indicators: list[str]


class AnomalyRef(_Model):
    series: str
    service: str
    first_seen_unix_nano: int
    score: float


class ChangeRef(_Model):
    service: str
    version: str
    at_unix_nano: int


class Incident(_Model):
    id: str
    opened_at_unix_nano: int
    updated_at_unix_nano: int
    status: Literal["open", "resolved"]
    kind: Literal["detected", "predicted"]
    severity: Literal["info", "warning", "critical"]
    services: list[str]
    root_causes: list[RootCause]
    anomalies: list[AnomalyRef]
    changes: list[ChangeRef]
    suggested_playbook: str | None

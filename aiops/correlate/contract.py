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


class ForecastRef(_Model):
    """Why a predicted incident exists: which SLO, when it is expected to break, how sure, and what happened."""

    series: str
    service: str
    slo: str  # "memory of limit > 0.9"
    threshold: float
    predicted_at_unix_nano: int
    probability: float  # of a breach within the horizon, at prediction time
    expected_breach_unix_nano: int | None  # the forecast mean crosses the line (None: not within the horizon)
    earliest_breach_unix_nano: int | None  # the interval's edges: upper and lower bound cross the line
    latest_breach_unix_nano: int | None
    model: str
    fit: dict[str, float | None]  # in-sample MAE, the naive forecast's MAE, AIC (None if not defined), points
    outcome: Literal["pending", "breached", "averted"]
    outcome_at_unix_nano: int | None


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
    forecast: ForecastRef | None = None  # set on predicted incidents, and on detected ones that were forecast

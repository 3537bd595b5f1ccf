"""Service-level objectives: which series have a line that must not be crossed, and where.

An SLO is a glob over series keys (``service/metric{attrs}``) with a threshold and a direction.
It does two jobs: crossing it flags the point as anomalous whatever the detector thinks (the
breach *is* the incident), and the forecaster predicts when a series under an SLO will cross it.
The defaults follow OpenTelemetry semantic-convention names and units (durations in seconds,
utilizations and ratios as fractions); user rules come first and the first match wins.
"""

from __future__ import annotations

import fnmatch
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SloKind = Literal["latency", "errors", "saturation", "other"]


class SloRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str = Field(description="glob over the series key, e.g. 'checkout/http.server.request.duration:p99*'")
    above: float | None = Field(default=None, description="breached when the value is above this")
    below: float | None = Field(default=None, description="breached when the value is below this")
    kind: SloKind = Field(default="other", description="what a breach means; saturation suggests scaling out")
    name: str | None = Field(default=None, description="how incidents name it; the metric name when unset")

    @model_validator(mode="after")
    def _one_side(self) -> SloRule:
        if (self.above is None) == (self.below is None):
            raise ValueError(f"SLO {self.match!r}: set exactly one of 'above' and 'below'")
        return self

    @property
    def threshold(self) -> float:
        return self.above if self.above is not None else self.below  # type: ignore[return-value]

    @property
    def sign(self) -> int:
        """+1 when larger is worse, -1 when smaller is worse."""
        return 1 if self.above is not None else -1

    def describe(self) -> str:
        return f"{'>' if self.sign > 0 else '<'} {self.threshold:g}"


DEFAULT_SLOS = [
    SloRule(match="*/http.server.request.duration:p99*", above=0.8, kind="latency", name="p99 latency"),
    SloRule(match="*/rpc.server.duration:p99*", above=800.0, kind="latency", name="p99 latency"),  # ms (older semconv)
    SloRule(match="*/span.server.duration:p99*", above=0.8, kind="latency", name="p99 latency (spans)"),
    SloRule(match="*/http.server.request.count:error_ratio", above=0.05, kind="errors", name="error ratio"),
    SloRule(match="*/rpc.server.requests_per_rpc:error_ratio", above=0.05, kind="errors", name="error ratio"),
    SloRule(match="*memory.utilization*", above=0.9, kind="saturation", name="memory of limit"),
    SloRule(match="*memory_limit_utilization*", above=0.9, kind="saturation", name="memory of limit"),
    SloRule(match="*cpu.utilization*", above=0.95, kind="saturation", name="cpu"),
    SloRule(match="*cpu_limit_utilization*", above=0.95, kind="saturation", name="cpu of limit"),
    SloRule(match="*filesystem.utilization*", above=0.9, kind="saturation", name="disk"),
]


class SloPolicy(BaseModel):
    """The SLO list of a deployment: ``slos:`` in ``aiops.yaml``."""

    model_config = ConfigDict(extra="forbid")

    rules: list[SloRule] = Field(default_factory=list)
    use_default_rules: bool = True

    def all_rules(self) -> list[SloRule]:
        return [*self.rules, *(DEFAULT_SLOS if self.use_default_rules else [])]

    def resolve(self, key: str) -> int:
        """Index into :meth:`all_rules` of the first rule matching ``key``, or -1."""
        for i, rule in enumerate(self.all_rules()):
            if fnmatch.fnmatchcase(key, rule.match):
                return i
        return -1

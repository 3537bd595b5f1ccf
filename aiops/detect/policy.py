"""Per-series detection policy: which way matters, how long, how sensitive, and hard SLO lines.

Rules match series keys (``service/metric{attrs}``) by glob, first match wins; the defaults
follow OpenTelemetry metric names: latency, errors and saturation only alarm upwards, rates both
ways. A hard SLO bound is an extra rule: crossing it flags the point whatever the detector says.
"""

from __future__ import annotations

import fnmatch
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from aiops.forecast.slo import SloPolicy

Direction = Literal["up", "down", "both"]
_DIRECTION = {"up": 1, "down": -1, "both": 0}


class SeriesRule(BaseModel):
    model_config = ConfigDict(extra="forbid")

    match: str = Field(description="glob over the series key, e.g. 'checkout/*duration*'")
    direction: Direction | None = None
    min_duration: int | None = Field(default=None, ge=1, description="flagged points in a row before an anomaly opens")
    min_duration_s: float | None = Field(
        default=None, ge=0, description="and for how long, counting each point's sampling interval"
    )
    sensitivity: float | None = Field(default=None, gt=0, description="multiplies the alarm risk: 10 = more alerts")
    slo_above: float | None = None
    slo_below: float | None = None


DEFAULT_RULES = [
    # Series built from sampled spans and logs in 30 s windows are noisier than scraped metrics:
    # they must stay anomalous for three windows.
    SeriesRule(match="*/span.*", min_duration=3),
    SeriesRule(match="*/log.*", min_duration=3),
    SeriesRule(match="*duration*", direction="up"),
    SeriesRule(match="*latency*", direction="up"),
    SeriesRule(match="*error*", direction="up"),
    SeriesRule(match="*availability*", direction="down"),  # rising availability is recovery
    SeriesRule(match="*status_code=5*", direction="up"),
    SeriesRule(match="*severity=ERROR*", direction="up"),
    SeriesRule(match="*severity=WARN*", direction="up"),
    SeriesRule(match="*cpu*", direction="up"),
    SeriesRule(match="*memory.usage*", direction="up"),
]


class DetectionPolicy(BaseModel):
    """Resolved once per series, when it is first seen; user rules come before the defaults."""

    model_config = ConfigDict(extra="forbid")

    rules: list[SeriesRule] = Field(default_factory=list)
    default_direction: Direction = "both"
    default_min_duration: int = Field(default=1, ge=1)
    default_min_duration_s: float = Field(default=30.0, ge=0)  # 3 scrapes at 10 s, 1 at a minute or more
    use_default_rules: bool = True

    def resolve(self, key: str) -> tuple[int, int, float, float, float, float]:
        """(direction, min_duration, sensitivity, slo_above, slo_below, min_duration_s) for one series key.

        Each field comes from the first matching rule that sets it, user rules before defaults.
        """
        direction: Direction | None = None
        min_duration: int | None = None
        min_duration_s: float | None = None
        sensitivity: float | None = None
        above: float | None = None
        below: float | None = None
        for rule in [*self.rules, *(DEFAULT_RULES if self.use_default_rules else [])]:
            if fnmatch.fnmatchcase(key, rule.match):
                direction = direction or rule.direction
                min_duration = min_duration or rule.min_duration
                min_duration_s = min_duration_s if min_duration_s is not None else rule.min_duration_s
                sensitivity = sensitivity or rule.sensitivity
                above = above if above is not None else rule.slo_above
                below = below if below is not None else rule.slo_below
        return (
            _DIRECTION[direction or self.default_direction],
            min_duration or self.default_min_duration,
            sensitivity or 1.0,
            np.inf if above is None else above,
            -np.inf if below is None else below,
            self.default_min_duration_s if min_duration_s is None else min_duration_s,
        )


class PolicyTable:
    """The resolved policy of every series, as arrays indexed by series id.

    A series' hard bounds come from its detection rule, else from the first matching SLO;
    ``slo_rule`` keeps which SLO (an index into ``slos.all_rules()``, -1 for none) so the
    forecaster knows which series to watch and what their line means.
    """

    def __init__(self, policy: DetectionPolicy | None = None, slos: SloPolicy | None = None) -> None:
        self.policy = policy or DetectionPolicy()
        self.slos = slos or SloPolicy()
        self.slo_rules = self.slos.all_rules()
        self.direction = np.zeros(0, dtype=np.int8)
        self.min_duration = np.zeros(0, dtype=np.int16)
        self.sensitivity = np.zeros(0, dtype=np.float32)
        self.slo_above = np.zeros(0)
        self.slo_below = np.zeros(0)
        self.min_duration_ns = np.zeros(0, dtype=np.int64)
        self.slo_rule = np.zeros(0, dtype=np.int32)

    def __len__(self) -> int:
        return len(self.direction)

    def extend(self, keys: list[str]) -> range:
        """Resolve the keys past the table's end (new series); return their ids."""
        start = len(self)
        rows = [self.policy.resolve(k) for k in keys[start:]]
        if rows:
            d, m, s, a, b, t = (np.array(col) for col in zip(*rows, strict=True))
            slo = np.array([self.slos.resolve(k) for k in keys[start:]], dtype=np.int32)
            for i in np.flatnonzero((slo >= 0) & np.isinf(a) & np.isinf(b)):
                rule = self.slo_rules[slo[i]]
                a[i] = np.inf if rule.above is None else rule.above
                b[i] = -np.inf if rule.below is None else rule.below
            self.slo_rule = np.r_[self.slo_rule, slo]
            self.direction = np.r_[self.direction, d.astype(np.int8)]
            self.min_duration = np.r_[self.min_duration, m.astype(np.int16)]
            self.sensitivity = np.r_[self.sensitivity, s.astype(np.float32)]
            self.slo_above = np.r_[self.slo_above, a.astype(np.float64)]
            self.slo_below = np.r_[self.slo_below, b.astype(np.float64)]
            self.min_duration_ns = np.r_[self.min_duration_ns, (t * 1e9).astype(np.int64)]
        return range(start, len(self))

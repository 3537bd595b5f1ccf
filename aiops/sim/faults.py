"""Fault specifications and their per-window effect on a service.

A fault acts on whole simulation windows: window ``[a, b)`` (seconds from sim start) shows a
fault's symptoms when ``start <= a < end``, so telemetry stamped ``b`` is the first to change
(collection lag of at most one step, as with a real scrape). ``bad_release`` is the exception
that makes change-correlation testable: its deployment record is stamped exactly at ``start``
and its symptoms begin ``RELEASE_DELAY_S`` later (rollout), then a rollback at ``end``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, get_args

__all__ = [
    "DEFAULT_MAGNITUDE",
    "FAULT_KINDS",
    "RELEASE_DELAY_S",
    "Controls",
    "Effect",
    "FaultKind",
    "FaultSpec",
    "effects_for_window",
]

FaultKind = Literal["cpu", "latency", "errors", "memory_leak", "crash", "bad_release"]
FAULT_KINDS: tuple[str, ...] = get_args(FaultKind)

# What ``magnitude`` means per kind, and its default:
#   cpu          added CPU utilisation (0..1); latency grows as queueing 1/(1-util)
#   latency      added seconds per request of the service's own work
#   errors       added error ratio (0..1) of the service's own requests
#   memory_leak  fraction (0..1] of the headroom to the memory limit consumed at the end
#   crash        unused (1.0): the service is gone
#   bad_release  added error ratio; own latency is multiplied by (1 + 3 * magnitude)
DEFAULT_MAGNITUDE: dict[str, float] = {
    "cpu": 0.5,
    "latency": 0.2,
    "errors": 0.3,
    "memory_leak": 0.95,
    "crash": 1.0,
    "bad_release": 0.3,
}
RELEASE_DELAY_S = 20.0
BACKEND_KINDS = frozenset({"cpu", "latency", "errors", "crash"})


@dataclass(frozen=True)
class FaultSpec:
    """One injected fault: ``kind`` on ``service`` for ``duration`` s from ``start`` s.

    ``ramp_s`` > 0 makes a slow-building fault: its magnitude grows linearly from zero to full
    over that many seconds (gradual saturation, a growing error rate); a memory leak always
    grows over its whole duration.
    """

    service: str
    kind: FaultKind
    start: float
    duration: float
    magnitude: float | None = None
    ramp_s: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}; one of {FAULT_KINDS}")
        if self.start < 0 or self.duration <= 0 or self.ramp_s < 0:
            raise ValueError("fault start must be >= 0, duration > 0 and ramp_s >= 0")
        mag = DEFAULT_MAGNITUDE[self.kind] if self.magnitude is None else float(self.magnitude)
        if mag < 0 or (self.kind in ("cpu", "errors", "memory_leak", "bad_release") and mag > 1):
            raise ValueError(f"magnitude {mag} out of range for {self.kind}")
        object.__setattr__(self, "magnitude", mag)

    @property
    def end(self) -> float:
        """Seconds from sim start when the fault stops."""
        return self.start + self.duration

    @property
    def mag(self) -> float:
        """The resolved magnitude (never None after construction)."""
        assert self.magnitude is not None
        return self.magnitude

    def truth(self, sim_start_unix_nano: int) -> dict[str, object]:
        """The ground-truth record for scoring RCA."""
        return {
            "service": self.service,
            "fault": self.kind,
            "onset_unix_nano": sim_start_unix_nano + int(round(self.start * 1e9)),
            "end_unix_nano": sim_start_unix_nano + int(round(self.end * 1e9)),
            "magnitude": self.mag,
            **({"ramp_s": self.ramp_s} if self.ramp_s else {}),
        }


@dataclass
class Effect:
    """Combined fault effects on one service for one window."""

    cpu_add: float = 0.0
    latency_add_s: float = 0.0
    latency_mult: float = 1.0
    error_add: float = 0.0
    leak_frac: float = 0.0
    crashed: bool = False
    capacity: float = 1.0  # replicas relative to the default: load per replica divides by it
    kinds: list[str] = field(default_factory=list)

    def add_error(self, ratio: float) -> None:
        """Combine independent error sources: 1 - prod(1 - e)."""
        self.error_add = 1.0 - (1.0 - self.error_add) * (1.0 - ratio)


@dataclass
class Controls:
    """What operators changed (the control API, :mod:`aiops.sim.control`), by service.

    ``capacity``: replicas relative to the default; ``canary_weight``: the share (0..1) of traffic
    the newest release gets, so a bad release hurts in proportion; ``restarted_at``: seconds from
    sim start of the last restart, where a memory leak starts growing again from nothing.
    """

    capacity: dict[str, float] = field(default_factory=dict)
    canary_weight: dict[str, float] = field(default_factory=dict)
    restarted_at: dict[str, float] = field(default_factory=dict)


def effects_for_window(faults: list[FaultSpec], a: float, b: float,
                       controls: Controls | None = None) -> dict[str, Effect]:
    """Effects of the faults active in window ``[a, b)`` (seconds from start), by service."""
    out: dict[str, Effect] = {}
    ctl = controls or Controls()
    for service, capacity in ctl.capacity.items():
        out.setdefault(service, Effect()).capacity = capacity
    for f in faults:
        begin = f.start + (RELEASE_DELAY_S if f.kind == "bad_release" else 0.0)
        if not (begin <= a < f.end):
            continue
        eff = out.setdefault(f.service, Effect())
        eff.kinds.append(f.kind)
        m = f.mag * (min(1.0, (b - f.start) / f.ramp_s) if f.ramp_s > 0 else 1.0)
        if f.kind == "bad_release":
            m *= ctl.canary_weight.get(f.service, 1.0)
        if f.kind == "cpu":
            eff.cpu_add += m
        elif f.kind == "latency":
            eff.latency_add_s += m
        elif f.kind == "errors":
            eff.add_error(m)
        elif f.kind == "memory_leak":
            grown_from = max(f.start, ctl.restarted_at.get(f.service, f.start))
            progress = min(1.0, max(0.0, (b - grown_from) / f.duration))
            eff.leak_frac = max(eff.leak_frac, m * progress)
        elif f.kind == "crash":
            eff.crashed = True
        elif f.kind == "bad_release":
            eff.add_error(m)
            eff.latency_mult *= 1.0 + 3.0 * m
    return out

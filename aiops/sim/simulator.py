"""The simulator: discrete event-time steps that emit OTLP/JSON Kafka message payloads.

Each :meth:`Simulator.step` covers one window ``[a, b)`` of ``step_seconds`` and returns what an
OTel Collector's kafka exporter (``encoding: otlp_json``) would have produced for it: one metrics
message per running monitored service, one logs message and one traces message, all stamped
``b``. Nothing sleeps; pacing in wall time is the caller's business. Separate seeded numpy
streams drive the model, traces, logs and benign deploys, so the same seed and configuration give
byte-identical output (for a given JSON backend: orjson and the stdlib format some floats
differently), and turning one feature on does not reshuffle the others.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np

from ._logs import LogBuilder, deployment_record, log_record
from ._metrics import MetricState
from ._model import Model
from ._rng import Draws
from ._traces import TraceBuilder
from .faults import BACKEND_KINDS, Controls, FaultSpec, effects_for_window
from .topology import Topology, build_topology

__all__ = ["DEFAULT_REPLICAS", "DEFAULT_START_UNIX_NANO", "SimMessage", "Simulator", "default_scenario"]

# 2023-11-14T22:13:20Z: a fixed default keeps runs reproducible; live demos pass time.time_ns().
DEFAULT_START_UNIX_NANO = 1_700_000_000_000_000_000
SignalKind = Literal["metrics", "logs", "spans"]
DEFAULT_REPLICAS = 2  # every service's replica count until the control API scales it


@dataclass(frozen=True, slots=True)
class SimMessage:
    """One Kafka message: its signal, event time and OTLP/JSON payload.

    ``key`` is the ``service.name`` for single-service messages (metrics), usable as the Kafka
    partition key; None for messages that span services.
    """

    kind: SignalKind
    ts_unix_nano: int
    payload: bytes
    key: str | None = None


class Simulator:
    """A deterministic microservice system with injected faults, advanced step by step."""

    def __init__(
        self,
        n_services: int = 8,
        seed: int = 0,
        start_unix_nano: int = DEFAULT_START_UNIX_NANO,
        step_seconds: float = 10.0,
        faults: Iterable[FaultSpec] = (),
        *,
        benign_deploys_per_hour: float = 0.0,
        traces_per_step: tuple[int, int] = (5, 20),
        access_log_rate: float = 0.005,
        topology: Topology | None = None,
    ) -> None:
        if step_seconds <= 0:
            raise ValueError("step_seconds must be > 0")
        lo, hi = traces_per_step
        if not 0 <= lo <= hi:
            raise ValueError("traces_per_step must be (lo, hi) with 0 <= lo <= hi")
        self.topology = topology if topology is not None else build_topology(n_services, seed)
        self.seed = seed
        self.start_unix_nano = int(start_unix_nano)
        self.step_seconds = float(step_seconds)
        self.faults = sorted(faults, key=lambda f: (f.start, f.service, f.kind))
        for f in self.faults:
            svc = self.topology.services.get(f.service)
            if svc is None:
                raise ValueError(f"fault on unknown service {f.service!r}")
            if not svc.monitored and f.kind not in BACKEND_KINDS:
                raise ValueError(f"{f.kind} cannot target backend {f.service!r}")
        self.benign_deploys_per_hour = float(benign_deploys_per_hour)
        self.traces_per_step = (int(lo), int(hi))

        ss = np.random.SeedSequence([seed, 0x5133])
        r_model, r_traces, r_logs, r_deploy = (np.random.default_rng(s) for s in ss.spawn(4))
        self._model = Model(self.topology, r_model)
        self._trace_draws = Draws(r_traces)
        self._traces = TraceBuilder(self._model, self._trace_draws)
        self._logs = LogBuilder(self._model, Draws(r_logs), access_log_rate)
        self._deploy = Draws(r_deploy)
        entry = self.topology.entry
        self._metrics = {
            n: MetricState(self.start_unix_nano, with_summary=(n == entry))
            for n in self.topology.monitored
        }
        self._versions = {n: self.topology.services[n].version for n in self.topology.monitored}
        self._rollback_to: dict[int, str] = {}
        self._down: set[str] = set()
        self._deployments: list[dict[str, Any]] = []
        self._k = 0
        self._controls = Controls()
        self._replicas = dict.fromkeys(self.topology.monitored, DEFAULT_REPLICAS)
        self._pending_deploys: list[tuple[str, str]] = []  # rollbacks asked for outside a bad release
        self._lock = threading.Lock()  # control calls arrive from another thread than step()

    # -- public state --------------------------------------------------------------------------

    @property
    def now_unix_nano(self) -> int:
        """End of the last emitted window (the start time before the first step)."""
        return self._at(self._k * self.step_seconds)

    @property
    def truth(self) -> list[dict[str, Any]]:
        """Ground truth, one record per configured fault, by onset."""
        return [f.truth(self.start_unix_nano) for f in self.faults]

    @property
    def deployments(self) -> list[dict[str, Any]]:
        """Deployment events emitted so far (fault-related and benign), in time order."""
        return list(self._deployments)

    def steps_for(self, duration_seconds: float) -> int:
        """How many steps cover ``duration_seconds``."""
        return max(0, math.ceil(duration_seconds / self.step_seconds - 1e-9))

    def run(self, duration_seconds: float) -> Iterator[SimMessage]:
        """Messages of the next ``duration_seconds`` of simulated time, in time order."""
        for _ in range(self.steps_for(duration_seconds)):
            yield from self.step()

    # -- stepping ------------------------------------------------------------------------------

    def _at(self, seconds: float) -> int:
        return self.start_unix_nano + int(round(seconds * 1e9))

    def step(self) -> list[SimMessage]:
        """Advance one window and return its messages: metrics per service, logs, spans."""
        with self._lock:
            return self._step()

    # -- operator controls (aiops.sim.control serves them over HTTP) ---------------------------

    def scale(self, service: str, replicas: int) -> dict[str, Any]:
        """Run ``replicas`` replicas of ``service``: load per replica follows; the rollout restarts it."""
        if replicas < 1:
            raise ValueError("replicas must be >= 1")
        with self._lock:
            self._monitored(service)
            self._replicas[service] = replicas
            self._controls.capacity[service] = replicas / DEFAULT_REPLICAS
            self._controls.restarted_at[service] = self._k * self.step_seconds
            return {"service": service, "replicas": replicas, "restarted": True}

    def shift_traffic(self, service: str, canary_weight: float) -> dict[str, Any]:
        """Send ``canary_weight`` % of ``service``'s traffic to its newest release, the rest to stable."""
        if not 0 <= canary_weight <= 100:
            raise ValueError("canary_weight must be within 0..100")
        with self._lock:
            self._monitored(service)
            self._controls.canary_weight[service] = canary_weight / 100.0
            return {"service": service, "canary_weight": canary_weight, "stable_weight": 100 - canary_weight}

    def rollback(self, service: str, version: str | None = None) -> dict[str, Any]:
        """Roll ``service`` back (to ``version``, else to what ran before): ends an active bad release.

        The rollback's deployment event is emitted with the next step, stamped at its start.
        """
        with self._lock:
            self._monitored(service)
            now = self._k * self.step_seconds
            for i, f in enumerate(self.faults):
                if f.kind == "bad_release" and f.service == service and f.start < now < f.end and i in self._rollback_to:
                    duration = now - f.start
                    if f.start + duration < now:  # float rounding must not end it before this window
                        duration = math.nextafter(duration, math.inf)
                    self.faults[i] = replace(f, duration=duration)
                    self._rollback_to[i] = version or self._rollback_to[i]
                    return {"service": service, "version": self._rollback_to[i], "ended_bad_release": True}
            target = version or next((d["previous"] for d in reversed(self._deployments) if d["service"] == service),
                                     None)  # fmt: skip
            if target is None or target == self._versions[service]:
                return {"service": service, "version": self._versions[service], "ended_bad_release": False,
                        "note": "nothing to roll back"}  # fmt: skip
            self._pending_deploys.append((service, target))
            return {"service": service, "version": target, "ended_bad_release": False}

    def fault_targets(self) -> list[str]:
        """Every service a fault can be injected into (backends included)."""
        return sorted(self.topology.services)

    def inject(self, service: str, kind: str, duration_s: float, magnitude: float | None = None,
               ramp_s: float = 0.0) -> dict[str, Any]:
        """Start a fault now (the demo's "break something" button); returns its ground truth."""
        with self._lock:
            if service not in self.topology.services:
                raise KeyError(f"no service {service!r}; known: {', '.join(sorted(self.topology.services))}")
            fault = FaultSpec(service, kind, self._k * self.step_seconds, duration_s, magnitude, ramp_s)  # type: ignore[arg-type]
            self.faults.append(fault)
            return fault.truth(self.start_unix_nano)

    def control_state(self) -> dict[str, Any]:
        """Replicas, traffic weights and versions per monitored service."""
        with self._lock:
            return {n: {"replicas": self._replicas[n], "version": self._versions[n],
                        "canary_weight": 100 * self._controls.canary_weight.get(n, 1.0)}
                    for n in self.topology.monitored}  # fmt: skip

    def _monitored(self, service: str) -> None:
        if service not in self._versions:
            raise KeyError(f"no monitored service {service!r}; known: {', '.join(sorted(self._versions))}")

    # -- stepping (continued) --------------------------------------------------------------------

    def _step(self) -> list[SimMessage]:
        topo, step = self.topology, self.step_seconds
        a_rel, b_rel = self._k * step, (self._k + 1) * step
        a_ns, b_ns = self._at(a_rel), self._at(b_rel)
        step_ns = b_ns - a_ns
        w = self._model.window(effects_for_window(self.faults, a_rel, b_rel, self._controls), b_ns)
        extra: dict[str, list[dict[str, Any]]] = {}
        running = [n for n in topo.monitored if not w[n].crashed]

        for n in topo.monitored:
            if w[n].crashed:
                self._down.add(n)
            elif n in self._down:  # restarted: counters reset, as a new process's would
                self._down.discard(n)
                self._metrics[n].reset(a_ns)
                svc = topo.services[n]
                extra.setdefault(n, []).append(log_record(a_ns + 1_500_000_000, "INFO",
                    f"Started {n} {self._versions[n]} on {svc.ip}:{svc.port} in 1.5s"))
        self._change_events(a_rel, b_rel, running, extra)

        samples = {}
        rng = self._model.rng
        for n in running:
            count = int(rng.poisson(w[n].rate * step))
            lat, err, client = self._model.sample(n, count, w)
            self._metrics[n].record(lat, err, client)
            samples[n] = (lat, err, client)

        out: list[SimMessage] = []
        for n in running:
            svc, sw = topo.services[n], w[n]
            payload = self._metrics[n].message(n, self._versions[n], b_ns, sw.cpu, sw.memory,
                                               svc.memory_limit_bytes)
            out.append(SimMessage("metrics", b_ns, payload, n))
        logs = self._logs.build(w, a_ns, step_ns, samples, extra, self._versions)
        if logs is not None:
            out.append(SimMessage("logs", b_ns, logs))
        lo, hi = self.traces_per_step
        n_traces = self._trace_draws.randint(lo, hi)
        spans = self._traces.build(w, a_ns, int(step_ns * 0.8), n_traces, self._versions)
        if spans is not None:
            out.append(SimMessage("spans", b_ns, spans))
        self._k += 1
        return out

    def _change_events(self, a_rel: float, b_rel: float, running: list[str],
                       extra: dict[str, list[dict[str, Any]]]) -> None:
        """Deployments in ``[a_rel, b_rel)``: bad releases, their rollbacks, benign deploys."""
        for i, f in enumerate(self.faults):
            if f.kind != "bad_release":
                continue
            if a_rel <= f.start < b_rel:
                old = self._versions[f.service]
                self._rollback_to[i] = old
                self._deploy_event(f.service, _bump(old, minor=True), self._at(f.start), extra,
                                   fault=True)
            if a_rel <= f.end < b_rel and i in self._rollback_to:
                self._deploy_event(f.service, self._rollback_to.pop(i), self._at(f.end), extra,
                                   fault=True, rollback=True)
        for service, version in self._pending_deploys:
            self._deploy_event(service, version, self._at(a_rel), extra, fault=False, rollback=True)
        self._pending_deploys.clear()
        if self.benign_deploys_per_hour > 0:
            p = self.benign_deploys_per_hour * self.step_seconds / 3600.0
            for n in running:
                if self._deploy.u() < p:
                    at = self._at(a_rel + self._deploy.u() * (b_rel - a_rel))
                    self._deploy_event(n, _bump(self._versions[n]), at, extra, fault=False)

    def _deploy_event(self, service: str, version: str, at: int,
                      extra: dict[str, list[dict[str, Any]]], *, fault: bool,
                      rollback: bool = False) -> None:
        previous = self._versions[service]
        self._versions[service] = version
        extra.setdefault(service, []).append(
            deployment_record(at, service, version, previous, rollback))
        self._deployments.append({"service": service, "version": version, "previous": previous,
                                  "at_unix_nano": at, "fault": fault, "rollback": rollback})


def _bump(version: str, minor: bool = False) -> str:
    major, mi, patch = (int(x) for x in version.split("."))
    return f"{major}.{mi + 1}.0" if minor else f"{major}.{mi}.{patch + 1}"


# Fault plan of the default scenario: (kind, preferred targets, start s, duration s, magnitude,
# ramp s). 4 min warm-up, then one fault every 10 min with 6 min of quiet between them; last, an
# error ratio that builds up over 25 minutes, which the forecaster warns of before it breaks the SLO.
_SCENARIO: list[tuple[str, list[str], float, float, float, float]] = [
    ("latency", ["postgres"], 240.0, 240.0, 0.25, 0.0),
    ("bad_release", ["cart", "catalog", "checkout"], 840.0, 240.0, 0.3, 0.0),
    ("memory_leak", ["recommendation", "catalog", "cart"], 1440.0, 420.0, 0.95, 0.0),
    ("crash", ["payment", "currency", "shipping", "checkout"], 2220.0, 180.0, 1.0, 0.0),
    ("errors", ["catalog", "checkout", "cart"], 2700.0, 1800.0, 0.08, 1500.0),
]
DEFAULT_LEAD_IN_SECONDS = 1800.0  # calm traffic first: young series need history before they may alert
DEFAULT_SCENARIO_SECONDS = 4500.0 + DEFAULT_LEAD_IN_SECONDS


def default_scenario(
    start_unix_nano: int = DEFAULT_START_UNIX_NANO, n_services: int = 8, seed: int = 0,
    lead_in_s: float = DEFAULT_LEAD_IN_SECONDS, **kwargs: Any,
) -> Simulator:
    """A 105-minute scenario: postgres latency, a bad release, a memory leak, a crash, then a slowly
    growing error ratio.

    ``lead_in_s`` of calm traffic come before the 75-minute fault schedule.
    Targets fall back to other services when the graph is too small to hold the preferred ones.
    ``kwargs`` go to :class:`Simulator` (e.g. ``step_seconds``, ``benign_deploys_per_hour``).
    """
    topo = build_topology(n_services, seed)
    candidates = [n for n in topo.monitored if n != topo.entry] or [topo.entry]
    used: set[str] = set()
    faults = []
    for kind, prefs, start, duration, mag, ramp in _SCENARIO:
        pool = [p for p in prefs if p in topo.services and p not in used]
        pool += [c for c in candidates if c not in used] or candidates
        target = pool[0]
        used.add(target)
        faults.append(FaultSpec(target, kind, start + lead_in_s, duration, mag, ramp))  # type: ignore[arg-type]
    return Simulator(n_services, seed, start_unix_nano, faults=faults, topology=topo, **kwargs)

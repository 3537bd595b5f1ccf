"""The simulated system's state per window: load, resources, latency and errors.

Symptoms propagate along the call graph here, once per window: a service's latency is its own
work plus the calls it makes (each made by a fraction ``p_call`` of its requests), and a failed
call fails the caller's request with the edge's ``propagate`` probability. A crashed callee
fails every call, half by timeout and half by refused connection.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .faults import Effect
from .topology import Edge, Topology

__all__ = ["ADDED_SIGMA", "Model", "NET_S", "SIGMA", "ServiceWindow", "TIMEOUT_S"]

TIMEOUT_S = 1.0          # client timeout towards a vanished callee
REFUSED_S = 0.002        # connection refused: fails fast
NET_S = 0.0008           # one network round trip inside the cluster
SIGMA = 0.35             # lognormal spread of per-request own work
ADDED_SIGMA = 0.1        # spread of injected delay (a netem-like, nearly constant delay)
BASE_ERROR = 0.001       # background error ratio of a healthy service
BACKEND_UTIL = 0.3       # nominal utilisation of a backend (its cpu is never exported)
_NO_EFFECT = Effect()


@dataclass
class ServiceWindow:
    """One service during one window (expected values; requests are sampled from these)."""

    name: str
    crashed: bool
    rate: float = 0.0
    cpu: float = 0.0
    memory: int = 0
    own_med: float = 0.0
    added_s: float = 0.0
    own_err: float = 0.0
    lat_med: float = 0.0
    err: float = 0.0
    effect: Effect = field(default_factory=Effect)


class Model:
    """Computes :class:`ServiceWindow` per service per window from faults and slow noise."""

    def __init__(self, topology: Topology, rng: np.random.Generator) -> None:
        self.topo = topology
        self.rng = rng
        self._mem_ar = {n: 0.0 for n in topology.monitored}
        self._load_ar = 0.0
        self.baseline = self.window({}, 0, noise=False)

    def client_view(self, edge: Edge, w: dict[str, ServiceWindow]) -> tuple[float, float]:
        """(median latency, error ratio) the caller observes on ``edge``."""
        callee = w[edge.callee]
        if callee.crashed:
            return 0.5 * (TIMEOUT_S + REFUSED_S), 1.0
        return callee.lat_med + NET_S, callee.err

    def window(
        self, effects: dict[str, Effect], b_unix_nano: int, noise: bool = True
    ) -> dict[str, ServiceWindow]:
        """State of every service for the window ending at ``b_unix_nano``."""
        topo = self.topo
        svcs = topo.services
        w = {n: ServiceWindow(n, effects.get(n, _NO_EFFECT).crashed,
                              effect=effects.get(n, _NO_EFFECT)) for n in topo.order}
        # Load: a slow daily cycle plus AR(1) noise at the entry, then down the graph.
        day = (b_unix_nano / 1e9 % 86400.0) / 86400.0
        if noise:
            self._load_ar = 0.8 * self._load_ar + 0.02 * float(self.rng.standard_normal())
        load = (1.0 + 0.25 * math.sin(2 * math.pi * day - math.pi / 2)) * (1.0 + self._load_ar)
        w[topo.entry].rate = svcs[topo.entry].base_rps * load
        for n in topo.order:
            if w[n].crashed:
                w[n].rate = 0.0
                continue
            for e in topo.callees(n):
                w[e.callee].rate += w[n].rate * e.p_call
        z = self.rng.standard_normal(len(topo.order)).tolist() if noise else [0.0] * len(
            topo.order
        )
        # Resources, then own latency/error, callees first so callers can add them up.
        for i, n in enumerate(reversed(topo.order)):
            s, sw, eff = svcs[n], w[n], w[n].effect
            if s.monitored:
                ratio = sw.rate / s.base_rps if s.base_rps > 0 else 0.0
                if noise:
                    self._mem_ar[n] = 0.9 * self._mem_ar[n] + 0.3 * z[i]
                mem = s.memory_base_bytes * (1.0 + 0.03 * self._mem_ar[n])
                mem += eff.leak_frac * (s.memory_limit_bytes - s.memory_base_bytes)
                sw.memory = int(min(mem, s.memory_limit_bytes * 0.995))
                gc = max(0.0, sw.memory / s.memory_limit_bytes - 0.85) * 2.0
                u0 = s.cpu_base
                util = (s.cpu_base * (0.5 + 0.5 * ratio) + eff.cpu_add) / eff.capacity + gc
                sw.cpu = min(0.995, max(0.005, util + (0.012 * z[i] if noise else 0.0)))
            else:
                u0 = BACKEND_UTIL
                util = (BACKEND_UTIL + eff.cpu_add) / eff.capacity
            queue = min(25.0, (1.0 - u0) / (1.0 - min(util, 0.97)))
            sw.added_s = eff.latency_add_s
            sw.own_med = s.base_latency_s * max(1.0, queue) * eff.latency_mult + sw.added_s
            sw.own_err = 1.0 - (1.0 - BASE_ERROR * (1.0 if s.monitored else 0.2)) * (
                1.0 - eff.error_add
            )
            lat, ok = sw.own_med, 1.0 - sw.own_err
            for e in topo.callees(n):
                c_lat, c_err = self.client_view(e, w)
                lat += e.p_call * c_lat
                ok *= 1.0 - e.p_call * e.propagate * c_err
            sw.lat_med, sw.err = lat, 1.0 - ok
        return w

    def own_latency(self, sw: ServiceWindow, z: float, z_added: float) -> float:
        """One request's own work (s) from standard normals: lognormal work + injected delay."""
        return (sw.own_med - sw.added_s) * math.exp(SIGMA * z) + sw.added_s * math.exp(
            ADDED_SIGMA * z_added)

    def sample(
        self, name: str, n: int, w: dict[str, ServiceWindow]
    ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """Per-request server latencies (s), error flags, and client latencies per callee."""
        rng = self.rng
        sw = w[name]
        lat = (sw.own_med - sw.added_s) * np.exp(SIGMA * rng.standard_normal(n))
        if sw.added_s:
            lat += sw.added_s * np.exp(ADDED_SIGMA * rng.standard_normal(n))
        err = rng.random(n) < sw.own_err
        client: dict[str, np.ndarray] = {}
        for e in self.topo.callees(name):
            called = rng.random(n) < e.p_call
            k = int(called.sum())
            callee = w[e.callee]
            if callee.crashed:
                c_lat = np.where(rng.random(k) < 0.5, TIMEOUT_S, REFUSED_S)
                c_err = np.ones(k, dtype=bool)
            else:
                c_lat = callee.lat_med * np.exp(0.25 * rng.standard_normal(k)) + NET_S
                c_err = rng.random(k) < callee.err
            lat[called] += c_lat
            fails = np.zeros(n, dtype=bool)
            fails[called] = c_err & (rng.random(k) < e.propagate)
            err |= fails
            client[e.callee] = c_lat
        return lat, err, client

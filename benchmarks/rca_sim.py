"""RCA on generated simulator scenarios: detection, ranking accuracy, false incidents.

    python benchmarks/rca_sim.py [--scenarios 36] [--seed 0]

Each scenario is a fresh simulated system (6-12 services, its own seed) with 30 minutes of normal
traffic, one fault (all six kinds in turn; latency/errors/cpu/crash also on unmonitored
backends), unrelated benign deployments on other services, and 10 minutes after the fault. The
embedded pipeline runs over it as in ``aiops replay``. Reported:

- detection recall: an incident opens within [onset - 60 s, onset + 5 min];
- time to detect (median, p90): that incident's opening minus the onset;
- AC@1, AC@3, Avg@5: the truth service's rank in that incident's latest root causes;
- false incidents per hour of normal traffic: incidents opened between minute 15 (detectors
  warmed up) and onset - 60 s;
- the naive baseline in the same run: services ranked by their largest anomaly score.
"""

from __future__ import annotations

import argparse
import hashlib
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _history import report  # noqa: E402

from aiops.correlate.contract import Incident  # noqa: E402
from aiops.ingest.deadletter import MemoryDeadLetter  # noqa: E402
from aiops.pipeline import Pipeline  # noqa: E402
from aiops.sim import FAULT_KINDS, FaultSpec, Simulator, build_topology  # noqa: E402
from aiops.sim.source import SimulatorSource  # noqa: E402

NS = 1_000_000_000
LEAD_IN_S = 1800.0
WARM_S = 900.0
TAIL_S = 600.0
BACKEND_KINDS = ("latency", "errors", "cpu", "crash")


def scenario(k: int, seed: int) -> tuple[Simulator, dict]:
    rng = np.random.default_rng([seed, k])
    n = int(rng.integers(6, 13))
    topo = build_topology(n, seed * 1000 + k)
    kind = FAULT_KINDS[k % len(FAULT_KINDS)]
    backends = [s for s in topo.services if not topo.services[s].monitored]
    monitored = [s for s in topo.monitored if s != topo.entry]
    on_backend = kind in BACKEND_KINDS and backends and k % 3 == 0
    target = str(rng.choice(backends if on_backend else monitored))
    start = LEAD_IN_S + float(rng.integers(0, 300))
    duration = float(rng.integers(240, 600))
    fault = FaultSpec(target, kind, start, duration)  # type: ignore[arg-type]
    sim = Simulator(n, seed * 1000 + k, 1_700_000_000 * NS, faults=[fault], topology=topo,
                    benign_deploys_per_hour=2.0)  # fmt: skip
    truth = sim.truth[0] | {"services": n, "backend": bool(on_backend), "duration_s": start + duration + TAIL_S}
    return sim, truth


def run(sim: Simulator, duration_s: float) -> dict[str, Incident]:
    latest: dict[str, Incident] = {}
    pipeline = Pipeline(MemoryDeadLetter(), lambda inc: latest.__setitem__(inc.id, inc), now_ns=lambda: sim.now_unix_nano)
    for batch in SimulatorSource(sim, sim.steps_for(duration_s)).batches():
        pipeline.process(batch)
    pipeline.flush()
    assert pipeline.stats.rejects == 0, pipeline.stats.reasons
    return latest


def naive(inc: Incident) -> list[str]:
    best: dict[str, float] = {}
    for a in inc.anomalies:
        best[a.service] = max(best.get(a.service, 0.0), a.score)
    return sorted(best, key=lambda s: -best[s])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=36)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    t0 = time.perf_counter()
    ranks, naive_ranks, ttd = [], [], []
    false_incidents, normal_hours = 0, 0.0
    rows = []
    for k in range(args.scenarios):
        sim, truth = scenario(k, args.seed)
        incidents = run(sim, truth["duration_s"])
        onset = truth["onset_unix_nano"]
        start = sim.start_unix_nano
        hits = sorted((i for i in incidents.values() if -60 * NS <= i.opened_at_unix_nano - onset <= 300 * NS),
                      key=lambda i: i.opened_at_unix_nano)  # fmt: skip
        false_incidents += sum(1 for i in incidents.values()
                               if start + WARM_S * NS <= i.opened_at_unix_nano < onset - 60 * NS)  # fmt: skip
        normal_hours += (onset - 60 * NS - start - WARM_S * NS) / 3600 / NS
        if hits:
            inc = hits[0]
            order = [rc.service for rc in inc.root_causes]
            rank = order.index(truth["service"]) + 1 if truth["service"] in order else None
            nv = naive(inc)
            naive_ranks.append(nv.index(truth["service"]) + 1 if truth["service"] in nv else None)
            ttd.append((inc.opened_at_unix_nano - onset) / NS)
            top = order[0]
        else:
            rank, top = None, "-"
            naive_ranks.append(None)
        ranks.append(rank if hits else None)
        rows.append(f"{k:3d} {truth['fault']:12s} {truth['service']:15s} backend={truth['backend']!s:5s} "
                    f"detected={bool(hits)!s:5s} rank={rank} top={top}")  # fmt: skip
    for r in rows:
        print(r, file=sys.stderr)
    n = len(ranks)

    def ac(rs: list[int | None], k: int) -> float:
        return sum(1 for r in rs if r is not None and r <= k) / n

    figures = {
        "scenarios": n,
        "detection_recall": round(sum(1 for r in rows if "detected=True" in r) / n, 4),
        "ttd_median_s": round(statistics.median(ttd), 1) if ttd else float("nan"),
        "ttd_p90_s": round(float(np.percentile(ttd, 90)), 1) if ttd else float("nan"),
        "AC@1": round(ac(ranks, 1), 4),
        "AC@3": round(ac(ranks, 3), 4),
        "Avg@5": round(sum(ac(ranks, k) for k in range(1, 6)) / 5, 4),
        "naive_AC@1": round(ac(naive_ranks, 1), 4),
        "naive_AC@3": round(ac(naive_ranks, 3), 4),
        "false_incidents": false_incidents,
        "normal_hours": round(normal_hours, 2),
        "false_incidents_per_hour": round(false_incidents / normal_hours, 3) if normal_hours else float("nan"),
        "runtime_s": round(time.perf_counter() - t0, 1),
    }
    data_hash = hashlib.sha256(f"{args.scenarios}:{args.seed}".encode()).hexdigest()[:12]
    report("rca_sim", {"scenarios": args.scenarios, "seed": args.seed, "lead_in_s": LEAD_IN_S, "warm_s": WARM_S},
           "simulator scenarios", data_hash, figures)  # fmt: skip


if __name__ == "__main__":
    main()

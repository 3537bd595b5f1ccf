"""Early warning on slow-building faults: lead time of predicted SLO breaches, false predictions, cost.

    python benchmarks/forecast.py [--scenarios 24] [--seed 0] [--cost-series 1000]

Each scenario is a fresh simulated system (6-12 services, its own seed) with an hour of normal
traffic, then one slow-building fault on a monitored service, in turn: a memory leak over
20-40 min, a CPU ramp (gradual saturation) or an error ratio growing over 20-40 min. The
embedded pipeline runs over it as in ``aiops replay``, with the default SLOs. Reported:

- **breach**: the first one-minute mean of any SLO series past its line after the onset (the
  actual SLO breach, read from the data the engine saw, judged as the forecaster judges it);
- **lead time**: breach time minus the first ``predicted`` forecast event in [onset, breach]
  (it opens a predicted incident, or attaches to the incident already holding the series);
  share of faults warned >= 5 min ahead (target >= 80 %);
- how each first warning surfaced: as a new ``predicted`` incident, or attached to the incident the
  anomaly detectors had already opened on the same service;
- **false predictions per hour** of normal traffic: forecast events between minute 20 (enough
  history to forecast) and the onset (target <= 0.1);
- **naive alternative**, same run: a static warning line at 80 % of each SLO (first one-minute
  mean past it after onset; false warnings: means past it before onset, once per series per hour);
- **cost**: CPU seconds per model fit, and per hour of replayed data with ``--cost-series`` SLO
  series (10 s points, 5 % of them ramping), for the forecaster alone.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _history import digest, report

from aiops.correlate.contract import Incident
from aiops.forecast import Forecaster, Prediction
from aiops.forecast.slo import DEFAULT_SLOS, SloRule
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.pipeline import Pipeline
from aiops.sim import FaultSpec, Simulator, build_topology
from aiops.sim.source import SimulatorSource

NS = 1_000_000_000
LEAD_IN_S = 3600.0
WARM_S = 1200.0
KINDS = ("memory_leak", "cpu", "errors")


def scenario(k: int, seed: int) -> tuple[Simulator, dict[str, Any]]:
    rng = np.random.default_rng([seed, k, 5])
    n = int(rng.integers(6, 13))
    topo = build_topology(n, seed * 1000 + k)
    kind = KINDS[k % len(KINDS)]
    target = str(rng.choice([s for s in topo.monitored if s != topo.entry]))
    start = LEAD_IN_S + float(rng.integers(0, 300))
    build = float(rng.integers(1200, 2400))  # 20-40 minutes to full strength
    if kind == "memory_leak":
        fault = FaultSpec(target, "memory_leak", start, build, 0.98)
    elif kind == "cpu":
        fault = FaultSpec(target, "cpu", start, build + 600, 0.9, ramp_s=build)
    else:
        fault = FaultSpec(target, "errors", start, build + 600, 0.08, ramp_s=build)
    sim = Simulator(n, seed * 1000 + k, 1_700_000_000 * NS, faults=[fault], topology=topo,
                    benign_deploys_per_hour=2.0)  # fmt: skip
    truth = sim.truth[0] | {"services": n, "duration_s": start + build + 600}
    return sim, truth


def run(sim: Simulator, duration_s: float, onset: int) -> dict[str, Any]:
    """Replay one scenario; watch the raw SLO points and the forecast events as they pass."""
    published: list[Incident] = []
    pipeline = Pipeline(MemoryDeadLetter(), published.append, now_ns=lambda: sim.now_unix_nano)
    rules = pipeline.policy.slo_rules
    events: list[Prediction] = []
    breach: list[tuple[int, str]] = []
    naive_first: list[tuple[int, str]] = []
    naive_false: set[tuple[str, int]] = set()
    observe = pipeline.forecaster.observe
    warm = sim.start_unix_nano + int(WARM_S * NS)

    step_ns = int(pipeline.forecaster.config.step_s * NS)
    buckets: dict[str, list[float]] = {}  # series -> [bucket, sum, count]

    def judge(key: str, rule: SloRule, end: int, mean: float) -> None:
        """A closed step mean: past the line is a breach, past 80 % of it the naive warning."""
        if end >= onset and rule.sign * (mean - rule.threshold) > 0 and not breach:
            breach.append((end, key))
        if rule.sign * (mean - 0.8 * rule.threshold) > 0:
            if end >= onset and not naive_first:
                naive_first.append((end, key))
            elif warm <= end < onset:
                naive_false.add((key, end // (3600 * NS)))

    def watched(ids: np.ndarray, ts: np.ndarray, values: np.ndarray, rule_of: np.ndarray,
                keys: list[str], services: list[str]) -> list[Prediction]:  # fmt: skip
        for i, t, v in zip(ids.tolist(), ts.tolist(), values.tolist(), strict=True):
            if rule_of[i] < 0:
                continue
            b = buckets.setdefault(keys[i], [t // step_ns, 0.0, 0])
            if t // step_ns > b[0]:
                judge(keys[i], rules[int(rule_of[i])], int((b[0] + 1) * step_ns), b[1] / b[2])
                b[:] = [t // step_ns, 0.0, 0]
            b[1] += v
            b[2] += 1
        out = observe(ids, ts, values, rule_of, keys, services)
        events.extend(out)
        return out

    pipeline.forecaster.observe = watched  # type: ignore[method-assign]
    for batch in SimulatorSource(sim, sim.steps_for(duration_s)).batches():
        pipeline.process(batch)
    pipeline.flush()
    return {"events": events, "breach": breach[0] if breach else None, "naive": naive_first[0] if naive_first else None,
            "naive_false": len(naive_false), "forecast_stats": dict(pipeline.forecaster.stats),
            "incidents": published}  # fmt: skip


def cost(n_series: int, seed: int) -> dict[str, float]:
    """The forecaster alone on ``n_series`` SLO series for one hour of 10 s points."""
    rng = np.random.default_rng(seed)
    rule = SloRule(match="*", above=0.9, kind="saturation")
    fc = Forecaster([rule])
    keys = [f"svc{i}/process.memory.utilization" for i in range(n_series)]
    services = [k.split("/")[0] for k in keys]
    level = rng.uniform(0.3, 0.6, n_series)
    ramp = np.zeros(n_series)
    ramp[rng.choice(n_series, n_series // 20, replace=False)] = rng.uniform(0.3, 0.6, n_series // 20) / 360
    ids = np.arange(n_series)
    rule_of = np.zeros(n_series, dtype=np.int32)
    t0 = time.process_time()
    for step in range(720):  # two hours: the second is timed
        if step == 360:
            t0, fits0, fit_s0 = time.process_time(), fc.stats["fits"], fc.stats["fit_seconds"]
        x = level + rng.normal(0, 0.01, n_series) + ramp * max(0, step - 360)
        ts = np.full(n_series, (1_700_000_000 + step * 10) * NS)
        fc.observe(ids, ts, x, rule_of, keys, services)
    hour = time.process_time() - t0
    fits = fc.stats["fits"] - fits0
    return {
        "cost_series": n_series,
        "cost_cpu_s_per_hour": round(hour, 2),
        "cost_fits_per_hour": fits,
        "cost_cpu_s_per_fit": round((fc.stats["fit_seconds"] - fit_s0) / fits, 4) if fits else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=24)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cost-series", type=int, default=1000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    leads: list[float | None] = []
    naive_leads: list[float | None] = []
    false_pred, naive_false, normal_hours, breached = 0, 0, 0.0, 0
    fits = fit_s = rejected = 0.0
    kinds: Counter[str] = Counter()
    for k in range(args.scenarios):
        sim, truth = scenario(k, args.seed)
        onset = truth["onset_unix_nano"]
        r = run(sim, truth["duration_s"], onset)
        warm = sim.start_unix_nano + WARM_S * NS
        predicted = [e for e in r["events"] if e.event == "predicted"]
        false_pred += sum(1 for e in predicted if warm <= e.ts < onset)
        naive_false += r["naive_false"]
        normal_hours += (onset - warm) / 3600 / NS
        fs = r["forecast_stats"]
        fits, fit_s, rejected = fits + fs["fits"], fit_s + fs["fit_seconds"], rejected + fs["fits_rejected"]
        lead = naive_lead = None
        first = None
        surfaced = "-"
        if r["breach"]:
            breached += 1
            b_ts = r["breach"][0]
            first = next((e for e in predicted if onset <= e.ts <= b_ts), None)
            lead = (b_ts - first.ts) / 60 / NS if first else 0.0
            if first:  # did the warning open its own incident, or join one the detectors had opened?
                surfaced = next((i.kind for i in r["incidents"] if i.forecast and i.forecast.series == first.series
                                 and i.forecast.predicted_at_unix_nano == first.ts), "none")  # fmt: skip
                kinds[surfaced] += 1
            naive_lead = (b_ts - r["naive"][0]) / 60 / NS if r["naive"] else 0.0
        leads.append(lead)
        naive_leads.append(naive_lead)
        print(f"{k:3d} {truth['fault']:12s} {truth['service']:15s} breach="
              f"{'-' if not r['breach'] else r['breach'][1].split('/', 1)[1][:40]:40s} "
              f"at +{(r['breach'][0] - onset) / 60 / NS if r['breach'] else float('nan'):5.1f} min  "
              f"lead={lead if lead is None else round(lead, 1)} min via {first.series.split('/', 1)[1][:30] if first else '-'} "
              f"({surfaced})  "
              f"naive={naive_lead if naive_lead is None else round(naive_lead, 1)}", file=sys.stderr)  # fmt: skip
    got = [x for x in leads if x is not None]
    naive_got = [x for x in naive_leads if x is not None]
    n = max(breached, 1)  # shares are of the faults that did breach an SLO
    figures: dict[str, float] = {
        "scenarios": len(leads),
        "breached": breached,
        "predicted_ge_5min": round(sum(1 for x in got if x >= 5) / n, 4),
        "predicted_before_breach": round(sum(1 for x in got if x > 0) / n, 4),
        "lead_median_min": round(statistics.median(got), 1) if got else float("nan"),
        "warnings_opening_predicted_incident": kinds["predicted"],
        "warnings_joining_detected_incident": kinds["detected"],
        "false_predictions": false_pred,
        "normal_hours": round(normal_hours, 2),
        "false_predictions_per_hour": round(false_pred / normal_hours, 3) if normal_hours else float("nan"),
        "naive80_warned_ge_5min": round(sum(1 for x in naive_got if x >= 5) / n, 4),
        "naive80_lead_median_min": round(statistics.median(naive_got), 1) if naive_got else float("nan"),
        "naive80_false_warnings_per_hour": round(naive_false / normal_hours, 3) if normal_hours else float("nan"),
        "fits": int(fits),
        "fits_rejected_worse_than_naive": int(rejected),
        "cpu_s_per_fit_in_scenarios": round(fit_s / fits, 4) if fits else float("nan"),
    }
    if args.cost_series:
        figures |= cost(args.cost_series, args.seed)
    figures["runtime_s"] = round(time.perf_counter() - t0, 1)
    config = {"scenarios": args.scenarios, "seed": args.seed, "lead_in_s": LEAD_IN_S, "warm_s": WARM_S,
              "slos": [r.model_dump() for r in DEFAULT_SLOS]}  # fmt: skip
    report("forecast", config, "simulator slow-fault scenarios", digest([args.scenarios, args.seed]), figures)


if __name__ == "__main__":
    main()

"""What self-monitoring costs the pipeline thread, at 10 k series (and the drift pass at 100 k).

    python benchmarks/monitor_cost.py [--series 10000] [--repeat 200]

A real :class:`Pipeline` learns ``--series`` native-JSON gauges (100 per message, one point per
series per 10 s step, 30 steps); then, on that state:

* ``observe_us_per_batch``: :meth:`EngineMonitor.observe` for one batch of the same messages,
  when no drift interval ends (the every-batch cost: totals, rates, per-source counts);
* ``drift_tick_ms``: :meth:`EngineMonitor.observe` when a drift interval ends (plus one numpy
  pass over all series and the forecaster's watch list), once per ``drift_interval_s`` of event
  time; ``drift_tick_ms_100k`` is the drift pass alone on a 100 k-series bank;
* ``snapshot_us`` / ``health_us``: what a ``/metrics`` scrape or ``/healthz`` adds (API thread);
* ``process_batch_ms``: :meth:`Pipeline.process` of one such batch, for scale.

Each figure is the median of ``--repeat`` calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _history import report  # noqa: E402

from aiops.detect.bank import DetectorBank  # noqa: E402
from aiops.ingest.deadletter import MemoryDeadLetter  # noqa: E402
from aiops.ingest.records import Message  # noqa: E402
from aiops.monitor import EngineMonitor, MonitorConfig  # noqa: E402
from aiops.monitor.drift import DriftTracker  # noqa: E402
from aiops.pipeline import Pipeline  # noqa: E402

T0 = 1_700_000_000


def batch(series: int, step: int, rng: np.random.Generator) -> list[Message]:
    ts = T0 + 10 * step
    values = 100 + rng.normal(size=series)
    lines = [json.dumps({"ts": ts, "service": f"svc{i % 50}", "metric": f"m{i}", "value": float(v)})
             for i, v in enumerate(values)]  # fmt: skip
    return [Message("metrics", "native", "\n".join(lines[i:i + 100]).encode(), f"kafka:otlp_metrics/{i // 100 % 4}", step)
            for i in range(0, series, 100)]  # fmt: skip


def median_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=200)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    pipeline = Pipeline(MemoryDeadLetter(), lambda inc: None, now_ns=lambda: (T0 + 86_400) * 10**9)
    monitor = EngineMonitor(pipeline, config=MonitorConfig(drift_interval_s=1e9))  # ticks on its first batch only
    ticking = EngineMonitor(pipeline, config=MonitorConfig(drift_interval_s=0))  # ticks on every batch
    steps = [batch(args.series, s, rng) for s in range(31)]
    for messages in steps[:30]:
        pipeline.process(messages)
        monitor.observe(messages)
    last = steps[30]
    process_s = median_s(lambda: pipeline.process(last), 1)
    observe_s = median_s(lambda: monitor.observe(last), args.repeat)
    ticking.observe(last)  # its first tick also sorts every series into its source, once
    tick_s = median_s(lambda: ticking.observe(last), max(args.repeat // 10, 5))
    snapshot_s = median_s(monitor.snapshot, args.repeat)
    health_s = median_s(monitor.health, args.repeat)

    big, n = DetectorBank(), 100_000
    ids = np.arange(n)
    for s in range(12):
        big.update(ids, np.full(n, (T0 + 10 * s) * 10**9), 100 + rng.normal(size=n))
    keys = [f"svc{i % 50}/m{i}" for i in range(n)]
    tracker = DriftTracker()
    tracker.tick(T0 * 10**9, keys, *big.recent())  # first tick classifies every series once
    big_tick_s = median_s(lambda: tracker.tick(T0 * 10**9, keys, *big.recent()), 20)
    figures = {
        "series": float(args.series),
        "points_per_batch": float(args.series),
        "observe_us_per_batch": round(observe_s * 1e6, 1),
        "drift_tick_ms": round(tick_s * 1e3, 2),
        "drift_tick_ms_100k": round(big_tick_s * 1e3, 2),
        "snapshot_us": round(snapshot_s * 1e6, 1),
        "health_us": round(health_s * 1e6, 1),
        "process_batch_ms": round(process_s * 1e3, 1),
    }
    report("monitor_cost", vars(args), "synthetic-native-gauges", f"seed0-{args.series}", figures)


if __name__ == "__main__":
    main()

"""Scale-out of ``aiops run --role detect`` (issue 8): points/s with 1, 2 and 3 processes, the
pause a rebalance costs, and checkpoint bytes and memory per series.

A real broker (tests/kafka_broker.py, with Kafka's default 3 s initial rebalance delay) gets one
simulator feed beforehand: ``--services`` services for ``--minutes`` simulated minutes, keyed by
``service.name`` over 6 partitions per telemetry topic (as tests/reliability/test_scale_out.py
produces it). Every run has a fresh group and data dir; checkpoints every 1 s.

* Throughput: 1, 2 and 3 detect processes started together (they join one generation). The clock
  runs from their first "detecting partitions" line to the moment the last partition's checkpoint
  (logged just before its offsets are committed) reaches the end of the feed. Points are what the
  partitions' last checkpoints counted (OTLP data points; "series points" are the scored points
  after derivation, one per series per scrape). Best of ``--runs``, alternated. The CPU seconds of the
  detect processes and of the broker over the same span come from /proc.
* Rebalance: 2 processes on the feed, and a third started ``--lead`` s after they begin. From the
  logs: the third's join ("partitions revoked: []"); the old members' "Revoking previously assigned
  partitions" (kafka-python; they notice at their next heartbeat, every session timeout / 4 =
  2.5 s) and "partitions revoked" (their state saved); then every member's "Setting newly
  assigned partitions" and "detecting partitions" (state loaded, processing again).
* Memory, in-process: a detect pipeline fed ``--series`` synthetic gauges (benchmarks/latency.py's
  ticks) at two sizes, traced by tracemalloc; the slope is bytes per series. The checkpoint's bytes,
  save (snapshot + write) and load (read + restore) times at both sizes; the span-id map that each
  partition's dependency graph keeps, fed twice its bound (200 k) of spans.

    PYTHONPATH=. python benchmarks/scale.py [--services 60] [--minutes 90] [--runs 2]
"""

from __future__ import annotations

import argparse
import ast
import gc
import os
import re
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(Path(__file__).parent), str(ROOT / "tests"), str(ROOT / "tests" / "reliability")]

from _history import digest, report
from kafka_broker import KafkaBroker

PARTITIONS = 6
CHECKPOINT_S = 1.0
TICKS = 20  # points per series in the memory measure
DETECTING = r"detecting partitions \[([\d, ]*)\]"


def _stamps(log: Path, pattern: str, after: float = 0.0) -> list[tuple[float, re.Match[str]]]:
    """(wall-clock time, match) of every log line matching ``pattern``, from ``after`` on."""
    out = []
    for line in log.read_text(errors="replace").splitlines():
        if m := re.search(pattern, line):
            t = datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            if t >= after:
                out.append((t, m))
    return out


def _first(log: Path, pattern: str, after: float = 0.0) -> float:
    """When ``pattern`` was first logged from ``after`` on; 0.0 if not yet."""
    return next((t for t, _ in _stamps(log, pattern, after)), 0.0)


def _detecting(log: Path, after: float = 0.0) -> float:
    """When the process first held partitions (from ``after`` on); 0.0 if not yet."""
    return _first(log, r"detecting partitions \[\d", after)


def _owned(log: Path, before: float) -> list[set[int]]:
    """The partitions of each assignment the process had before ``before``."""
    return [{int(p) for p in m.group(1).split(",") if p.strip()} for t, m in _stamps(log, DETECTING) if t < before]


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_mb(pid: int) -> float:
    kb = re.search(r"VmRSS:\s+(\d+)", Path(f"/proc/{pid}/status").read_text())
    return int(kb.group(1)) / 1024 if kb else float("nan")


def _poll(cond: Callable[[], bool], procs: list[subprocess.Popen], every: float, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if any(p.poll() is not None for p in procs):
            raise RuntimeError("a detect process exited early")
        if time.monotonic() > deadline:
            raise TimeoutError("timed out")
        time.sleep(every)


def _done_at(logs: list[Path], ends: dict[str, int]) -> float:
    """When the last partition's checkpoint reached the end of the feed."""
    last = 0.0
    for p in {int(k.rsplit("/", 1)[1]) for k in ends}:
        want = {k: v for k, v in ends.items() if k.endswith(f"/{p}")}
        hits = [t for log in logs for t, m in _stamps(log, rf"checkpoint: partition {p} v\d+ at (\{{.*\}})")
                if all(ast.literal_eval(m.group(1)).get(k, 0) >= v for k, v in want.items())]  # fmt: skip
        last = max(last, min(hits))
    return last


class Broker(KafkaBroker):
    """The test broker with Kafka's default initial rebalance delay (the tests set 0): detect
    processes started together join one generation, so a throughput run has no start-up rebalance."""

    def _write_config(self) -> None:
        super()._write_config()
        with self.config_path.open("a") as fh:
            fh.write("group.initial.rebalance.delay.ms=3000\n")  # a later key wins in .properties


class Bench:
    """The feed on the broker, and detect processes started on it."""

    def __init__(self, broker: KafkaBroker, prefix: str, work: Path) -> None:
        self.broker, self.prefix, self.work = broker, prefix, work
        self.topics = {k: f"{prefix}-{k}" for k in ("metrics", "logs", "spans")}
        self.ends: dict[str, int] = {}  # "topic/partition" -> end offset, partitions with records

    def produce(self, services: int, minutes: float) -> dict[str, int]:
        from kafka import KafkaConsumer, TopicPartition

        from aiops.sim import Simulator
        from aiops.sim.kafka import produce

        self.broker.create_topics(list(self.topics.values()), partitions=PARTITIONS)
        self.broker.create_topics([f"{self.prefix}-deadletter"], partitions=1)
        sim = Simulator(n_services=services, seed=3, start_unix_nano=time.time_ns() - 12 * 3600 * 10**9)
        counts = produce(sim, self.broker.bootstrap, minutes * 60, self.topics, by_service=True)["messages"]
        with KafkaConsumer(bootstrap_servers=self.broker.bootstrap) as c:
            tps = [TopicPartition(t, p) for t in self.topics.values() for p in range(PARTITIONS)]
            self.ends = {f"{tp.topic}/{tp.partition}": o for tp, o in c.end_offsets(tps).items() if o}
        return counts

    def spawn(self, group: str, i: int) -> tuple[subprocess.Popen, Path]:
        """Detect process ``i`` of ``group``, logging to ``<group>-<i>.log``."""
        from service_harness import _env, _start

        p, log = self.prefix, self.work / f"{group}-{i}.log"
        env = _env(self.broker.bootstrap, p, self.work / group, AIOPS_KAFKA_GROUP=group,
                   AIOPS_KAFKA_TOPICS_METRICS=self.topics["metrics"], AIOPS_KAFKA_TOPIC_FORMATS="{}",
                   AIOPS_KAFKA_TOPIC_ANOMALIES=f"{p}-anomalies", AIOPS_KAFKA_TOPIC_TOPOLOGY=f"{p}-topology",
                   AIOPS_KAFKA_TOPIC_LEADER=f"{p}-leader", AIOPS_KAFKA_SESSION_TIMEOUT_MS="10000",
                   AIOPS_CHECKPOINT_INTERVAL_S=str(CHECKPOINT_S))  # fmt: skip
        return _start(env, log, "detect"), log

    def finished(self, group: str) -> bool:
        from service_harness import _committed

        got = _committed(self.broker.bootstrap, group)
        return all(got.get(k, 0) >= v for k, v in self.ends.items())

    def checkpoints(self, group: str) -> list[dict[str, Any]]:
        from aiops.detect.models import load_blob

        saved = [load_blob(self.work / group / "models", f"partitions/{group}/p{p}") for p in range(PARTITIONS)]
        return [s[1] for s in saved if s is not None]


def throughput(bench: Bench, n: int, run: int) -> dict[str, float]:
    """One run of ``n`` detect processes over the whole feed."""
    from service_harness import _stop_all

    group = f"{bench.prefix}-n{n}-r{run}"
    procs, logs = map(list, zip(*(bench.spawn(group, i) for i in range(n)), strict=True))
    pids = [p.pid for p in procs] + [bench.broker._proc.pid]  # type: ignore[union-attr]
    try:
        _poll(lambda: any(_detecting(log) for log in logs), procs, 0.01)
        cpu0, rss0 = [_cpu_s(pid) for pid in pids], max(_rss_mb(p.pid) for p in procs)
        _poll(lambda: bench.finished(group), procs, 0.5)
        finished = time.time()
        cpu1, rss1 = [_cpu_s(pid) for pid in pids], max(_rss_mb(p.pid) for p in procs)
    finally:
        _stop_all(procs)
    held = [_owned(log, finished) for log in logs]
    if any(len(h) != 1 for h in held):
        print(f"# run {run}, {n} detect: joined in more than one generation, rebalances counted", file=sys.stderr)
    seconds = _done_at(logs, bench.ends) - min(_detecting(log) for log in logs)
    metas = bench.checkpoints(group)
    points = {m["partition"]: m["stats"]["points"] for m in metas}
    busiest = max(sum(points[p] for p in h[-1]) for h in held) / sum(points.values())
    cpu = [b - a for a, b in zip(cpu0, cpu1, strict=True)]
    print(f"# run {run}, {n} detect: {seconds:.2f} s, {sum(points.values())} points, busiest process "
          f"{busiest:.0%}, detect CPU {sum(cpu[:-1]):.1f} s, broker CPU {cpu[-1]:.1f} s, RSS {rss0:.0f}-{rss1:.0f} MB",
          file=sys.stderr)  # fmt: skip
    return {"s": seconds, "points": sum(points.values()), "busiest": busiest, "detect_cpu_s": sum(cpu[:-1]),
            "broker_cpu_s": cpu[-1], "rss0_mb": rss0, "rss1_mb": rss1, "series": sum(m["series"] for m in metas),
            "checkpoint_bytes": sum(m["bytes"] for m in metas),
            "series_points": sum(m["stats"]["series_points"] for m in metas)}  # fmt: skip


def rebalance(bench: Bench, lead: float) -> dict[str, float]:
    """A third detect process joins two that are busy with the feed."""
    from service_harness import _stop_all

    group = f"{bench.prefix}-rebalance"
    procs, logs = map(list, zip(*(bench.spawn(group, i) for i in range(2)), strict=True))
    try:
        _poll(lambda: all(_detecting(log) for log in logs), procs, 0.05)
        time.sleep(lead)
        started = time.time()
        proc, log = bench.spawn(group, 2)
        procs, logs = [*procs, proc], [*logs, log]
        _poll(lambda: all(_detecting(lg, started) for lg in logs), procs, 0.05)
        assert not bench.finished(group), "the feed ended before the rebalance did: raise --minutes"
        _poll(lambda: bench.finished(group), procs, 0.5)  # and every partition is read to its end after it
    finally:
        _stop_all(procs)
    joined = _first(logs[2], r"partitions revoked: \[\]")
    revoking = [_first(lg, "Revoking previously assigned partitions {", started) for lg in logs[:2]]
    saved = [_first(lg, r"partitions revoked: \['", started) for lg in logs[:2]]
    setting = [_first(lg, "Setting newly assigned partitions", started) for lg in logs]
    back = [_detecting(lg, started) for lg in logs]
    resumed = sum(len(_stamps(lg, "resumed from checkpoint")) for lg in logs)
    print(f"# rebalance: join {joined - started:.2f} s after start; old members revoke after "
          f"{[round(t - joined, 2) for t in revoking]} s; all detecting {max(back) - joined:.2f} s after the join; "
          f"{resumed} partitions resumed from checkpoints", file=sys.stderr)  # fmt: skip
    return {
        "rebalance_join_to_all_detecting_s": round(max(back) - joined, 3),
        "rebalance_notice_s": round(min(revoking) - joined, 3),
        "rebalance_pause_s": round(max(back) - min(revoking), 3),
        "rebalance_old_member_pause_max_s": round(max(b - r for b, r in zip(back[:2], revoking, strict=True)), 3),
        "rebalance_save_s_max": round(max(s - r for s, r in zip(saved, revoking, strict=True)), 3),
        "rebalance_load_s_max": round(max(b - s for b, s in zip(back, setting, strict=True)), 3),
    }


def memory(sizes: list[int]) -> tuple[dict[int, dict[str, float]], int]:
    """Per size: traced bytes of a detect pipeline holding that many series, its checkpoint's bytes,
    save and load seconds; and the bytes of one partition's span-id map at its bound."""
    from latency import tick_messages

    from aiops.config import load_settings
    from aiops.detect.models import load_blob, save_blob
    from aiops.ingest.deadletter import MemoryDeadLetter
    from aiops.ingest.records import Message, Span
    from aiops.pipeline import Pipeline
    from aiops.rca.graph import DependencyGraph
    from aiops.scale.findings import FindingsWriter

    def pipeline() -> Pipeline:  # as DetectWorker builds it
        return Pipeline(MemoryDeadLetter(), lambda _: None, correlator=FindingsWriter, **load_settings().pipeline_options())

    def feed(n: int) -> list[list[Message]]:
        return [[Message("metrics", "otlp_proto", m, "x", 0) for m in tick_messages(n, t, start, {})] for t in range(TICKS)]

    def best_of_3(fn: Callable[[], object]) -> float:
        times = []
        for _ in range(3):
            began = time.perf_counter()
            fn()
            times.append(time.perf_counter() - began)
        return min(times)

    start = int(time.time()) - 12 * 3600
    for batch in feed(1000)[:2]:  # lazy imports happen here, outside the traced span
        pipeline().process(batch)
    out: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            batches = feed(n)
            gc.collect()
            tracemalloc.start()
            p = pipeline()
            for batch in batches:
                p.process(batch)
            gc.collect()
            traced = tracemalloc.get_traced_memory()[0]
            tracemalloc.stop()
            assert len(p.series) == n
            save = best_of_3(lambda p=p, n=n: save_blob(tmp, f"n{n}", p.snapshot(), {"series": n}))
            blob = load_blob(tmp, f"n{n}")
            assert blob is not None
            load = best_of_3(lambda n=n: pipeline().restore(load_blob(tmp, f"n{n}")[0]))  # type: ignore[index]
            out[n] = {"traced": traced, "bytes": len(blob[0]), "save_s": save, "load_s": load}
            del p, batches
    graph = DependencyGraph()
    tracemalloc.start()
    for lo in range(0, 2 * graph.max_spans, 10_000):  # past the bound: evictions churn it, as in a long run
        graph.observe([Span(f"{i:032x}", f"{i:016x}", "", "svc", "GET /", 2, 0, 1, False, {}) for i in range(lo, lo + 10_000)])
    gc.collect()
    span_map = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return out, span_map


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--services", type=int, default=60, help="simulated services (keys spread over 6 partitions)")
    ap.add_argument("--minutes", type=float, default=90.0, help="simulated minutes of telemetry")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--lead", type=float, default=2.0, help="seconds 2 processes detect before the third starts")
    ap.add_argument("--series", default="4000,12000", help="two pipeline sizes for memory per series")
    args = ap.parse_args()
    sizes = [int(s) for s in args.series.split(",")]

    figures: dict[str, float] = {}
    best: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, Broker(Path(tmp) / "kafka") as broker:
        bench = Bench(broker, "scale", Path(tmp))
        began = time.perf_counter()
        counts = bench.produce(args.services, args.minutes)
        print(f"# produced {counts} in {time.perf_counter() - began:.1f} s", file=sys.stderr)
        for run in range(args.runs):
            for n in (1, 2, 3):
                r = throughput(bench, n, run)
                if n not in best or r["s"] < best[n]["s"]:
                    best[n] = r
        figures |= rebalance(bench, args.lead)

    one = best[1]
    figures |= {"messages": sum(counts.values()), "points": one["points"], "series": one["series"],
                "series_points": one["series_points"],
                "sim_checkpoint_bytes_per_10k_series": round(one["checkpoint_bytes"] / one["series"] * 1e4)}  # fmt: skip
    for n, r in best.items():
        pps = r["points"] / r["s"]
        figures |= {
            f"p{n}_s": round(r["s"], 3),
            f"p{n}_points_per_s": round(pps),
            f"p{n}_points_per_s_per_process": round(pps / n),
            f"p{n}_over_p1": round(pps / (one["points"] / one["s"]), 3),
            f"p{n}_busiest_process_share": round(r["busiest"], 3),
            f"p{n}_detect_cores_busy": round(r["detect_cpu_s"] / r["s"], 2),
            f"p{n}_broker_cores_busy": round(r["broker_cpu_s"] / r["s"], 2),
            f"p{n}_points_per_detect_cpu_s": round(r["points"] / r["detect_cpu_s"]),
            f"p{n}_series_points_per_detect_cpu_s": round(r["series_points"] / r["detect_cpu_s"]),
            f"p{n}_rss_mb_start": round(r["rss0_mb"]),
            f"p{n}_rss_mb_end": round(r["rss1_mb"]),
        }

    mem, span_map = memory(sizes)
    lo, hi = mem[sizes[0]], mem[sizes[1]]
    per_series = {k: (hi[k] - lo[k]) / (sizes[1] - sizes[0]) for k in lo}  # the slope between the two sizes
    figures |= {
        "memory_bytes_per_series": round(per_series["traced"]),
        "checkpoint_bytes_per_10k_series": round(per_series["bytes"] * 1e4),
        "checkpoint_save_s_per_10k_series": round(per_series["save_s"] * 1e4, 4),
        "checkpoint_load_s_per_10k_series": round(per_series["load_s"] * 1e4, 4),
        f"checkpoint_save_s_{sizes[1]}_series": round(hi["save_s"], 4),
        f"checkpoint_load_s_{sizes[1]}_series": round(hi["load_s"], 4),
        "span_map_mb_per_partition_at_bound": round(span_map / 2**20, 1),
    }
    config = {"services": args.services, "minutes": args.minutes, "runs": args.runs, "partitions": PARTITIONS,
              "checkpoint_interval_s": CHECKPOINT_S, "lead_s": args.lead, "series": sizes, "ticks": TICKS}  # fmt: skip
    report("scale", config, f"sim seed 3, {args.services} services, keyed by service", digest(config), figures)


if __name__ == "__main__":
    main()

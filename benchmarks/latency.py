"""Kafka event → Slack webhook request latency of ``aiops run``, at a steady load.

    python benchmarks/latency.py [--rates 10000,100000] [--seconds 60]

A real Apache Kafka broker (the test harness's, on 127.0.0.1), the real ``aiops run`` service
as a subprocess, and a loopback HTTP server standing in for Slack's incoming webhook. The
producer sends OTLP/protobuf metrics (the Collector's default encoding) at a steady rate: every
"tick" is one message per 1,000 series holding one gauge point each, 10 s of event time apart,
so event time runs ahead of the wall clock and detectors warm up in seconds. After 100 warm-up
ticks, every 25th tick starts a fault: one series of a fresh service triples for 6 ticks. The
detector needs three flagged points (30 s of event time) before an anomaly opens, so the
message that *completes* the evidence is the fault's third tick; latency is the arrival of the
Slack request naming that service minus the moment that message was handed to the producer.

Reported per rate: p50/p99/max latency, incidents seen / faults injected, the consumer's
achieved points/s. Target: p99 ≤ 1 s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
from kafka import KafkaProducer
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).parent))
from _history import digest, report  # noqa: E402
from kafka_broker import KafkaBroker  # noqa: E402
from slack_server import SlackServer  # noqa: E402

NS = 1_000_000_000
SERIES_PER_SERVICE = 10
WARM_TICKS = 100
FAULT_EVERY = 25
FAULT_TICKS = 6
CONFIRM_TICK = 2  # the third flagged point completes 30 s of evidence


def tick_messages(n_series: int, tick: int, start_s: int, faulty: dict[int, float]) -> list[bytes]:
    """One tick of every series, in messages of 1,000 points (100 services × 10 gauges)."""
    rng = np.random.default_rng(tick)
    values = 100.0 + rng.normal(0, 2.0, n_series)
    for sid, factor in faulty.items():
        values[sid] *= factor
    ts = (start_s + 10 * tick) * NS
    out = []
    per_msg = 1000
    for lo in range(0, n_series, per_msg):
        req = ExportMetricsServiceRequest()
        for svc in range(lo // SERIES_PER_SERVICE, (lo + per_msg) // SERIES_PER_SERVICE):
            rm = ResourceMetrics(resource=Resource(attributes=[KeyValue(key="service.name",
                                                                        value=AnyValue(string_value=f"svc{svc:05d}"))]))  # fmt: skip
            sm = ScopeMetrics()
            for m in range(SERIES_PER_SERVICE):
                sid = svc * SERIES_PER_SERVICE + m
                point = NumberDataPoint(time_unix_nano=ts, as_double=float(values[sid]))
                sm.metrics.append(Metric(name=f"queue.depth.q{m}", gauge=Gauge(data_points=[point])))
            rm.scope_metrics.append(sm)
            req.resource_metrics.append(rm)
        out.append(req.SerializeToString())
    return out


def run_rate(broker: KafkaBroker, rate: int, seconds: float, work: Path) -> dict[str, float]:
    n_series = 1000 if rate <= 20_000 else 10_000
    ticks_per_s = rate / n_series
    topic = f"lat-{rate}-{int(time.time())}"
    broker.create_topics([topic])
    slack = SlackServer().start()
    data = work / f"data-{rate}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIOPS_")}
    env |= {"AIOPS_KAFKA_BOOTSTRAP": broker.bootstrap, "AIOPS_KAFKA_GROUP": f"{topic}-g",
            "AIOPS_KAFKA_TOPICS_METRICS": topic, "AIOPS_KAFKA_TOPICS_LOGS": f"{topic}-logs",
            "AIOPS_KAFKA_TOPICS_SPANS": f"{topic}-spans", "AIOPS_KAFKA_FORMAT": "otlp_proto",
            "AIOPS_DATA_DIR": str(data), "AIOPS_PORT": "0", "AIOPS_SLACK_WEBHOOK_URL": f"{slack.url}/webhook",
            "AIOPS_NOTIFY__MAX_PER_MINUTE": "1000", "AIOPS_CHECKPOINT_INTERVAL_S": "5"}  # fmt: skip
    log = (work / f"service-{rate}.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "aiops", "run"], env=env, stdout=subprocess.DEVNULL, stderr=log)
    port_file = data / "api.port"
    deadline = time.time() + 60
    while not port_file.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    api = f"http://127.0.0.1:{port_file.read_text()}"
    producer = KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=2, acks=1, max_request_size=16 << 20)
    start_s = int(time.time()) - 6 * 3600  # event time runs ~100x ahead: start in the past
    total_ticks = WARM_TICKS + int(seconds * ticks_per_s)
    faults: dict[int, tuple[int, str]] = {}  # confirm tick -> (series id, service)
    sent_at: dict[int, float] = {}
    next_service = 0
    ticks = []  # built before the clock starts: the producer must not compete with the service for CPU
    for tick in range(total_ticks):
        active = {}
        for confirm, (sid, _) in faults.items():
            if confirm - CONFIRM_TICK <= tick < confirm - CONFIRM_TICK + FAULT_TICKS:
                active[sid] = 3.0
        if tick >= WARM_TICKS and (tick - WARM_TICKS) % FAULT_EVERY == 0:
            sid = next_service * SERIES_PER_SERVICE
            faults[tick + CONFIRM_TICK] = (sid, f"svc{next_service:05d}")
            next_service += n_series // SERIES_PER_SERVICE // 50  # spread faults over services
            active[sid] = 3.0
        ticks.append(tick_messages(n_series, tick, start_s, active))
    began = time.perf_counter()
    try:
        for tick, msgs in enumerate(ticks):
            due = began + tick / ticks_per_s
            time.sleep(max(0.0, due - time.perf_counter()))
            sent_at[tick] = time.time()
            for m in msgs:
                producer.send(topic, m)
        producer.flush()
        sent_s = time.perf_counter() - began
        processed = _points(api)  # what the service had consumed when the producer finished
        deadline = time.time() + 20
        while time.time() < deadline and len(_firsts(slack)) < len(faults):
            time.sleep(0.2)
    finally:
        producer.close()
        proc.terminate()
        proc.wait(timeout=30)
        log.close()
        slack.stop()
    firsts = _firsts(slack)
    lat = [firsts[svc] - sent_at[confirm] for confirm, (_, svc) in faults.items() if svc in firsts]
    return {
        f"r{rate}_faults": len(faults),
        f"r{rate}_notified": len(lat),
        f"r{rate}_p50_s": round(float(np.percentile(lat, 50)), 3) if lat else float("nan"),
        f"r{rate}_p99_s": round(float(np.percentile(lat, 99)), 3) if lat else float("nan"),
        f"r{rate}_max_s": round(max(lat), 3) if lat else float("nan"),
        f"r{rate}_points_per_s_offered": round(total_ticks * n_series / sent_s),
        f"r{rate}_points_per_s_processed": round(processed / sent_s),
    }


def _points(api: str) -> float:
    with urllib.request.urlopen(f"{api}/metrics", timeout=10) as r:
        line = next(x for x in r.read().decode().splitlines() if x.startswith("aiops_points "))
    return float(line.split()[1])


def _firsts(slack: SlackServer) -> dict[str, float]:
    """Arrival time of the first Slack request naming each service."""
    out: dict[str, float] = {}
    for r in list(slack.requests):
        for service in set(re.findall(r"svc\d{5}", json.dumps(r.body))):
            out.setdefault(service, r.at)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rates", default="10000,100000")
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    figures: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="aiops-latency-") as tmp:
        broker = KafkaBroker(Path(tmp) / "kafka")
        broker.start()
        try:
            for rate in rates:
                figures |= run_rate(broker, rate, args.seconds, Path(tmp))
                threading.Event().wait(1.0)
        finally:
            broker.stop()
    report("latency", {"rates": rates, "seconds": args.seconds, "fault_every": FAULT_EVERY},
           "synthetic OTLP/protobuf gauges", digest(rates), figures)  # fmt: skip


if __name__ == "__main__":
    main()

"""Ingest throughput on one core: decode only, and decode + validate + derive + detect.

    python benchmarks/ingest.py [--services 30] [--minutes 60] [--kafka]

The feed is the built-in simulator's metrics, in memory and from a replay file, (one OTLP message per service per 10 s scrape, as
the Collector sends them), as OTLP/JSON and as OTLP/protobuf. ``--kafka`` also starts a real
broker (tests/kafka_broker.py), produces the feed and measures consume + process through
``KafkaSource``. Figures are points per second (raw metric points, a histogram point counting
once), printed last and appended to benchmarks/history.jsonl.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
import time
from pathlib import Path

from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest

sys.path.insert(0, str(Path(__file__).parent))
from _history import report  # noqa: E402

from aiops.ingest.deadletter import MemoryDeadLetter  # noqa: E402
from aiops.ingest.decode import decode  # noqa: E402
from aiops.ingest.records import Message  # noqa: E402
from aiops.ingest.replay import ReplaySource  # noqa: E402
from aiops.pipeline import Pipeline  # noqa: E402
from aiops.sim import Simulator, default_scenario  # noqa: E402


def _feed(services: int, minutes: float) -> list[bytes]:
    sim: Simulator = default_scenario(n_services=services, seed=1)
    return [m.payload for m in sim.run(minutes * 60) if m.kind == "metrics"]


def _messages(payloads: list[bytes], fmt: str) -> list[Message]:
    return [Message("metrics", fmt, p, "bench", i) for i, p in enumerate(payloads)]  # type: ignore[arg-type]


def _best(fn, repeat: int = 3) -> float:  # type: ignore[no-untyped-def]
    """Best wall time of ``repeat`` runs: the least disturbed by the other core's noise."""
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def _points(messages: list[Message]) -> int:
    return sum(len(d.metrics) + len(d.histograms) for d in map(decode, messages))


def _pipeline_run(messages: list[Message], batch: int = 500) -> Pipeline:
    p = Pipeline(MemoryDeadLetter(), lambda _: None)
    for i in range(0, len(messages), batch):
        p.process(messages[i : i + batch])
    return p


def _replay_file(payloads: list[bytes]) -> float:
    """Best time to read a replay file of these payloads and run it through the pipeline."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "metrics.jsonl"
        path.write_bytes(b"\n".join(payloads) + b"\n")

        def run() -> None:
            p = Pipeline(MemoryDeadLetter(), lambda _: None)
            for batch in ReplaySource([path], batch_size=500).batches():
                p.process(batch)

        return _best(run)


def _kafka(messages_json: list[Message], points: int) -> dict[str, float]:
    sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))
    from kafka import KafkaProducer
    from kafka_broker import KafkaBroker

    from aiops.ingest.kafka import KafkaSource

    with tempfile.TemporaryDirectory() as tmp, KafkaBroker(Path(tmp)) as broker:
        broker.create_topics(["bench_metrics"], partitions=1)
        t0 = time.perf_counter()
        with KafkaProducer(bootstrap_servers=broker.bootstrap, linger_ms=20, batch_size=1 << 20) as producer:
            for m in messages_json:
                producer.send("bench_metrics", m.payload)
            producer.flush()
        produce_s = time.perf_counter() - t0
        source = KafkaSource(broker.bootstrap, "bench", {"bench_metrics": "metrics"}, {"bench_metrics": "otlp_json"})
        source.open()
        pipeline = Pipeline(MemoryDeadLetter(), lambda _: None)
        seen, t0 = 0, time.perf_counter()
        deadline = t0 + 300
        while seen < len(messages_json) and time.perf_counter() < deadline:
            batch = source.poll(timeout_ms=500)
            if seen == 0 and batch:
                t0 = time.perf_counter()  # measure from the first record: group join is not ingest
            seen += len(batch)
            pipeline.process(batch)
        consume_s = time.perf_counter() - t0
        source.commit(source.positions)
        source.close()
    return {"kafka_produce_points_per_s": points / produce_s, "kafka_consume_detect_points_per_s": points / consume_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--services", type=int, default=30)
    ap.add_argument("--minutes", type=float, default=60.0)
    ap.add_argument("--kafka", action="store_true", help="also measure through a real broker (needs Java + Maven)")
    args = ap.parse_args()

    payloads = _feed(args.services, args.minutes)
    as_json = _messages(payloads, "otlp_json")
    as_proto = _messages(
        [json_format.Parse(p, ExportMetricsServiceRequest()).SerializeToString() for p in payloads], "otlp_proto"
    )
    points = _points(as_json)
    assert points == _points(as_proto), "JSON and protobuf decode to different point counts"
    figures: dict[str, float] = {"messages": len(payloads), "points": points}
    figures["decode_otlp_json_points_per_s"] = points / _best(lambda: _points(as_json))
    figures["decode_otlp_proto_points_per_s"] = points / _best(lambda: _points(as_proto))
    figures["decode_detect_otlp_json_points_per_s"] = points / _best(lambda: _pipeline_run(as_json))
    figures["decode_detect_otlp_proto_points_per_s"] = points / _best(lambda: _pipeline_run(as_proto))
    figures["replay_file_decode_detect_points_per_s"] = points / _replay_file(payloads)
    run = _pipeline_run(as_json)
    figures["series"] = len(run.series)
    figures["series_points"] = run.stats.series_points
    if args.kafka:
        figures |= _kafka(as_json, points)
    data_hash = hashlib.sha256(b"".join(payloads)).hexdigest()[:12]
    config = {"services": args.services, "minutes": args.minutes, "kafka": args.kafka, "cpus": os.cpu_count()}
    report("ingest", config, f"simulator default_scenario seed=1 services={args.services}", data_hash, figures)


if __name__ == "__main__":
    main()

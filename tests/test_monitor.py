"""Self-monitoring (aiops/monitor): rates, NaN/Inf, drift per source, model age, Kafka lag, /metrics."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from kafka import KafkaProducer
from prometheus_client.parser import text_string_to_metric_families

from aiops.api.metrics import ApiMetrics
from aiops.detect.bank import DetectorBank
from aiops.detect.models import save_bank, save_json_model
from aiops.ingest.deadletter import MemoryDeadLetter
from aiops.ingest.kafka import KafkaSource
from aiops.ingest.records import Message
from aiops.monitor import EngineMonitor, MonitorConfig
from aiops.monitor.drift import DriftTracker
from aiops.pipeline import Pipeline

T0 = 1_700_000_000  # event time of the first point, unix seconds
NOW_NS = (T0 + 10 * 86_400) * 10**9  # the validator's clock: everything fed is in its past


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def pipeline() -> Pipeline:
    return Pipeline(MemoryDeadLetter(), lambda inc: None, now_ns=lambda: NOW_NS)


def metrics_message(points: list[tuple[float, str, str, object]], offset: int = 0) -> Message:
    lines = [json.dumps({"ts": ts, "service": svc, "metric": name, "value": v}) for ts, svc, name, v in points]
    return Message("metrics", "native", "\n".join(lines).encode(), "kafka:otlp_metrics/0", offset)


def logs_message(ts: float, count: int) -> Message:
    lines = [json.dumps({"ts": ts + i * 0.01, "service": "web", "level": "INFO", "message": f"served {i}"})
             for i in range(count)]  # fmt: skip
    return Message("logs", "native", "\n".join(lines).encode(), "kafka:otlp_logs/0", 0)


def test_nonfinite_values_are_counted_by_value_through_a_real_pipeline():
    p = pipeline()
    monitor = EngineMonitor(p)
    values = [1.0, "NaN", "nan", "inf", "-Infinity", 2.0, "NaN"]
    p.process([metrics_message([(T0 + i, "api", "load", v) for i, v in enumerate(values)])])
    monitor.observe([])
    snap = monitor.snapshot()
    assert snap["nonfinite_values|value=nan"] == 3
    assert snap["nonfinite_values|value=inf"] == 1
    assert snap["nonfinite_values|value=-inf"] == 1
    assert p.stats.rejects == 5 and snap["detectors"] == 1


def test_rates_follow_a_sliding_window_and_decay_when_the_stream_stops():
    p, clock = pipeline(), Clock()
    monitor = EngineMonitor(p, config=MonitorConfig(rate_windows_s=(10.0, 60.0)), clock=clock)
    for step in range(30):  # 30 s: 4 messages of 5 points each per second
        batch = [metrics_message([(T0 + step, f"s{j}", f"m{k}", float(k)) for k in range(5)], step) for j in range(4)]
        p.process(batch)
        monitor.observe(batch)
        clock.t += 1.0
    snap = monitor.snapshot()
    assert snap["records_per_s|window=10s"] == pytest.approx(4.0, rel=0.15)
    assert snap["points_per_s|window=10s"] == pytest.approx(20.0, rel=0.15)
    assert snap["records_per_s|window=60s"] == pytest.approx(4.0, rel=0.15)  # over the 30 s there are
    assert snap["source_records_per_s|source=kafka:otlp_metrics"] == pytest.approx(4.0, rel=0.15)
    assert snap["source_records|source=kafka:otlp_metrics"] == 120
    assert snap["dead_letters_per_s|window=10s"] == 0
    clock.t += 30.0  # nothing more arrives
    snap = monitor.snapshot()
    assert snap["records_per_s|window=10s"] == 0
    assert 0 < snap["records_per_s|window=60s"] < 4.0


def test_vanished_and_new_series_flag_their_source_and_leave_a_stable_one_alone():
    p = pipeline()
    config = MonitorConfig(drift_interval_s=60.0, drift_window=3)
    monitor = EngineMonitor(p, config=config)
    rng = np.random.default_rng(1)
    healthy_seen, flagged = [], None
    for step in range(60):  # one point per series every 20 s; the drift interval is 60 s
        ts = T0 + 20 * step
        names = [f"old{i}" for i in range(40)] if step < 30 else [f"old{i}" for i in range(20)] + [f"new{i}" for i in range(20)]
        batch = [metrics_message([(ts, svc, "requests", 100 + rng.normal()) for svc in names], step), logs_message(ts, 50)]
        p.process(batch)
        monitor.observe(batch)
        drift = monitor.health()["input_drift"]
        if step < 30:
            healthy_seen.append(drift["ok"])
        elif not drift["ok"] and flagged is None:
            flagged = drift["alarms"]
        if step == 45:
            snap = monitor.snapshot()
            assert snap["drift_vanished_series|source=metrics"] == 20
    assert all(healthy_seen[12:]), "a steady feed is not drift (once past its first window)"
    assert flagged is not None and "metrics" in flagged and "logs" not in flagged
    snap = monitor.snapshot()
    assert snap["drift_active_series|source=logs"] >= 1 and snap["drift_shift|source=logs"] == 0


def test_a_tripled_source_raises_its_shift_score_while_a_stable_source_stays_low():
    bank, tracker = DetectorBank(), DriftTracker(interval_s=60.0, window=3)
    keys = [f"svc{i}/cpu.utilization" for i in range(50)] + [f"svc{i}/span.server.duration:p99" for i in range(50)]
    ids, rng = np.arange(100), np.random.default_rng(2)
    base = rng.uniform(5, 50, size=100)
    shifted_source = ids < 50
    scores = []
    for step in range(300):  # 10 s points, 6 per drift interval
        ts = np.full(100, (T0 + 10 * step) * 10**9)
        x = base * (1 + 0.05 * rng.normal(size=100))
        if step >= 240:
            x = np.where(shifted_source, 3 * x, x)
        bank.update(ids, ts, x)
        if tracker.due(int(ts[0])):
            tracker.tick(int(ts[0]), keys, *bank.recent())
            scores.append((tracker.sources["metrics"].shift, tracker.sources["spans"].shift))
    before, after = scores[:40], scores[42:]
    assert max(s for s, _ in before[5:]) < 0.05 and max(s for _, s in scores[5:]) < 0.05
    assert min(s for s, _ in after) > 0.9


def test_model_staleness_from_saved_versions(tmp_path):
    bank = DetectorBank()
    bank.update(np.arange(3), np.full(3, T0 * 10**9), np.ones(3))
    save_bank(tmp_path, "metrics", bank, ["a/x", "b/x", "c/x"])
    save_json_model(tmp_path, "forecast", {"fits": {}})
    save_json_model(tmp_path, "forecast", {"fits": {}})
    offset = [0.0]
    monitor = EngineMonitor(pipeline(), tmp_path, MonitorConfig(model_max_age_s=3600, models_refresh_s=0),
                            wall=lambda: time.time() + offset[0])  # fmt: skip
    snap = monitor.snapshot()
    assert snap["model_version|model=metrics"] == 1 and snap["model_version|model=forecast"] == 2
    assert snap["model_age_seconds|model=forecast"] < 60 and snap["model_stale|model=metrics"] == 0
    assert monitor.health()["models"]["ok"]
    offset[0] = 7200.0
    models = monitor.health()["models"]
    assert not models["ok"] and models["stale"] == ["forecast", "metrics"]
    save_json_model(tmp_path, "forecast", {"fits": {}})  # a fresh version, backdated by the same clock
    offset[0] = 3000.0
    assert monitor.snapshot()["model_version|model=forecast"] == 3
    assert monitor.health()["models"]["ok"]


@pytest.mark.kafka
def test_consumer_lag_per_partition_against_a_real_broker(kafka_broker, unique_topic_prefix):
    topic, n = f"{unique_topic_prefix}-metrics", 40
    kafka_broker.create_topics([topic], partitions=2)
    with KafkaProducer(bootstrap_servers=kafka_broker.bootstrap, acks="all") as producer:
        for part in (0, 1):
            for i in range(n):
                producer.send(topic, value=b"{}", partition=part)
        producer.flush(timeout=60)
    source = KafkaSource(kafka_broker.bootstrap, f"{unique_topic_prefix}-g", {topic: "metrics"}, {topic: "native"},
                         max_poll_records=25)  # fmt: skip
    source.open()
    try:
        consumed: dict[str, int] = {}
        deadline = time.monotonic() + 60
        while not consumed and time.monotonic() < deadline:
            for m in source.poll(timeout_ms=500):
                name = m.source.removeprefix("kafka:")
                consumed[name] = consumed.get(name, 0) + 1
        assert 0 < sum(consumed.values()) <= 25
        monitor = EngineMonitor(pipeline(), config=MonitorConfig(lag_refresh_s=0))
        monitor.observe_kafka(source)
        snap = monitor.snapshot()
        for part in (0, 1):
            assert snap[f"kafka_lag|partition={topic}/{part}"] == n - consumed.get(f"{topic}/{part}", 0)
        assert snap["kafka_lag_total"] == 2 * n - sum(consumed.values())
        lag = monitor.health()["kafka_lag"]
        assert lag["ok"] and lag["total"] == 2 * n - sum(consumed.values())
    finally:
        source.close()


def test_the_snapshot_renders_as_valid_prometheus_text(tmp_path):
    p = pipeline()
    save_json_model(tmp_path, "forecast", {"fits": {}})
    monitor = EngineMonitor(p, tmp_path)
    for step in range(3):
        batch = [metrics_message([(T0 + 60 * step, "api", "load", 1.0), (T0 + 60 * step, "api", "bad", "NaN")], step)]
        p.process(batch)
        monitor.observe(batch)
    api = ApiMetrics(monitor.snapshot)
    api.requests.labels("GET", "/incidents", "200").inc(3)
    api.requests.labels("GET", "/incidents", "404").inc()
    api.requests.labels("POST", "/feedback", "201").inc()
    api.auth_failures.labels("bad token").inc()
    families = {f.name: f for f in text_string_to_metric_families(api.render().decode())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("aiops_nonfinite_values", (("value", "nan"),))] == 3
    assert samples[("aiops_drift_active_series", (("source", "metrics"),))] == 1
    assert ("aiops_records_per_s", (("window", "10s"),)) in samples
    assert samples[("aiops_model_version", (("model", "forecast"),))] == 1
    assert samples[("aiops_process_rss_bytes", ())] > 0 and samples[("aiops_process_cpu_seconds", ())] > 0
    assert families["aiops_detectors"].type == "gauge"
    counts = api.counts()
    assert counts["api_reads|route=/incidents"] == 3 and "api_reads|route=/feedback" not in counts
    assert counts["api_auth_failures|reason=bad token"] == 1 and counts["rejected_parameters"] == 0

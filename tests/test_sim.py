"""The built-in simulator: determinism, valid OTLP/JSON, fault symptoms, truth and replay output."""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

import aiops.sim as sim_pkg
from aiops.sim import (
    DEFAULT_LEAD_IN_SECONDS,
    FaultSpec,
    SimMessage,
    Simulator,
    build_topology,
    default_scenario,
    write_replay,
)

START = 1_700_000_000_000_000_000
NS = 1_000_000_000
HEX32 = re.compile(r"^[0-9a-f]{32}$")
HEX16 = re.compile(r"^[0-9a-f]{16}$")
REQUEST_CLASSES = {
    "metrics": ExportMetricsServiceRequest,
    "logs": ExportLogsServiceRequest,
    "spans": ExportTraceServiceRequest,
}


def attrs(kvs: list[dict[str, Any]]) -> dict[str, Any]:
    """OTLP attribute list -> {key: python value} (intValue decoded from its string)."""
    out: dict[str, Any] = {}
    for kv in kvs:
        ((typ, val),) = kv["value"].items()
        out[kv["key"]] = int(val) if typ == "intValue" else val
    return out


@dataclass
class Run:
    """Decoded output of a simulator run, indexed for assertions."""

    messages: list[SimMessage] = field(default_factory=list)
    # service -> [(ts, {metric name: metric dict}, resource attrs)]
    metrics: dict[str, list[tuple[int, dict[str, Any], dict[str, Any]]]] = field(
        default_factory=lambda: defaultdict(list))
    logs: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    spans: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def latency(self, service: str) -> dict[int, float]:
        """Mean server latency (s) per window, from cumulative histogram deltas."""
        return {ts: s / c for ts, c, _, s in self._deltas(service) if c}

    def error_ratio(self, service: str) -> dict[int, float]:
        """Share of 500s per window, from the cumulative request counter."""
        return {ts: e / c for ts, c, e, _ in self._deltas(service) if c}

    def gauge(self, service: str, name: str) -> dict[int, float]:
        out = {}
        for ts, m, _ in self.metrics[service]:
            p = m[name]["gauge"]["dataPoints"][0]
            out[ts] = float(p["asDouble"]) if "asDouble" in p else float(p["asInt"])
        return out

    def _deltas(self, service: str) -> list[tuple[int, int, int, float]]:
        rows, prev = [], (0, 0, 0.0, None)
        for ts, m, _ in self.metrics[service]:
            h = m["http.server.request.duration"]["histogram"]["dataPoints"][0]
            counts = {attrs(p["attributes"])["http.response.status_code"]: int(p["asInt"])
                      for p in m["http.server.request.count"]["sum"]["dataPoints"]}
            cnt, total, err = int(h["count"]), float(h["sum"]), counts.get(500, 0)
            if prev[3] != h["startTimeUnixNano"]:
                prev = (0, 0, 0.0, h["startTimeUnixNano"])
            rows.append((ts, cnt - prev[0], err - prev[1], total - prev[2]))
            prev = (cnt, err, total, h["startTimeUnixNano"])
        return rows


def collect(sim: Simulator, seconds: float) -> Run:
    run = Run()
    for msg in sim.run(seconds):
        run.messages.append(msg)
        doc = json.loads(msg.payload)
        if msg.kind == "metrics":
            for rm in doc["resourceMetrics"]:
                res = attrs(rm["resource"]["attributes"])
                ms = {m["name"]: m for sm in rm["scopeMetrics"] for m in sm["metrics"]}
                run.metrics[res["service.name"]].append((msg.ts_unix_nano, ms, res))
        elif msg.kind == "logs":
            for rl in doc["resourceLogs"]:
                res = attrs(rl["resource"]["attributes"])
                for sl in rl["scopeLogs"]:
                    run.logs += [(res["service.name"], res, r) for r in sl["logRecords"]]
        else:
            for rs in doc["resourceSpans"]:
                name = attrs(rs["resource"]["attributes"])["service.name"]
                for ss in rs["scopeSpans"]:
                    run.spans += [(name, s) for s in ss["spans"]]
    return run


def mean_between(series: dict[int, float], lo_s: float, hi_s: float) -> float:
    vals = [v for ts, v in series.items() if START + lo_s * NS < ts <= START + hi_s * NS]
    assert vals, (lo_s, hi_s)
    return sum(vals) / len(vals)


# -- determinism and shape --------------------------------------------------------------------


def test_same_seed_and_config_give_identical_bytes() -> None:
    def make(seed: int) -> Simulator:
        return Simulator(seed=seed, start_unix_nano=START, benign_deploys_per_hour=30,
                         faults=[FaultSpec("cart", "bad_release", 30, 60),
                                 FaultSpec("payment", "crash", 50, 40)])

    a = [(m.kind, m.ts_unix_nano, m.key, m.payload) for m in make(7).run(150)]
    b = [(m.kind, m.ts_unix_nano, m.key, m.payload) for m in make(7).run(150)]
    c = [(m.kind, m.ts_unix_nano, m.key, m.payload) for m in make(8).run(150)]
    assert a == b
    assert a != c


def _hex_ids_to_base64(obj: Any) -> Any:
    """What an OTLP/JSON decoder does before protobuf's JSON parser (which expects base64)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ("traceId", "spanId", "parentSpanId"):
                assert (HEX32 if k == "traceId" else HEX16).match(v), (k, v)
                v = base64.b64encode(bytes.fromhex(v)).decode()
            out[k] = _hex_ids_to_base64(v)
        return out
    if isinstance(obj, list):
        return [_hex_ids_to_base64(v) for v in obj]
    return obj


def assert_valid_otlp(msg: SimMessage) -> Any:
    """Strict protobuf JSON parse (unknown fields rejected) of one message."""
    doc = json.loads(msg.payload)
    req = json_format.Parse(json.dumps(_hex_ids_to_base64(doc)), REQUEST_CLASSES[msg.kind]())
    assert req.ByteSize() > 0
    return req


def test_every_message_is_valid_otlp_json_with_collector_encoding() -> None:
    sim = Simulator(start_unix_nano=START, benign_deploys_per_hour=20, faults=[
        FaultSpec("catalog", "cpu", 20, 40), FaultSpec("postgres", "latency", 20, 40),
        FaultSpec("cart", "bad_release", 30, 60), FaultSpec("shipping", "errors", 40, 40),
        FaultSpec("recommendation", "memory_leak", 20, 60), FaultSpec("payment", "crash", 60, 30),
        FaultSpec("redis", "crash", 70, 20),
    ])
    kinds = set()
    metric_types = set()
    last_ts: dict[str, int] = {}
    for msg in sim.run(120):
        assert msg.ts_unix_nano >= last_ts.get(msg.kind, 0)
        last_ts[msg.kind] = msg.ts_unix_nano
        req = assert_valid_otlp(msg)
        kinds.add(msg.kind)
        raw = msg.payload.decode()
        # int64/fixed64 fields are strings in the protobuf JSON mapping.
        assert not re.search(r'"(timeUnixNano|startTimeUnixNano|count|asInt|intValue)":\d', raw)
        if msg.kind == "metrics":
            assert msg.key is not None
            for rm in req.resource_metrics:
                for m in rm.scope_metrics[0].metrics:
                    metric_types.add(m.WhichOneof("data"))
        if msg.kind == "spans":
            for rs in req.resource_spans:
                for s in rs.scope_spans[0].spans:
                    assert len(s.trace_id) == 16 and len(s.span_id) == 8
                    assert s.kind in (1, 2, 3)
                    assert s.end_time_unix_nano >= s.start_time_unix_nano
    assert kinds == {"metrics", "logs", "spans"}
    assert metric_types == {"gauge", "sum", "histogram", "summary"}


def test_metric_names_temporality_and_bounds() -> None:
    run = collect(Simulator(start_unix_nano=START), 30)
    assert set(run.metrics) == set(build_topology(8, 0).monitored)
    _, m, res = run.metrics["frontend"][-1]
    assert res["service.name"] == "frontend"
    assert re.match(r"^\d+\.\d+\.\d+$", res["service.version"])
    cpu = m["process.cpu.utilization"]["gauge"]["dataPoints"][0]["asDouble"]
    assert 0 <= cpu <= 1
    usage = int(m["process.memory.usage"]["gauge"]["dataPoints"][0]["asInt"])
    limit = int(m["process.memory.limit"]["gauge"]["dataPoints"][0]["asInt"])
    assert 0 < usage < limit
    count = m["http.server.request.count"]["sum"]
    assert count["aggregationTemporality"] == 2 and count["isMonotonic"] is True
    hist = m["http.server.request.duration"]["histogram"]
    assert hist["aggregationTemporality"] == 2
    p = hist["dataPoints"][0]
    assert p["explicitBounds"] == [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5,
                                   5, 7.5, 10]
    assert len(p["bucketCounts"]) == 15 and sum(map(int, p["bucketCounts"])) == int(p["count"])
    summary = m["rpc.client.duration"]["summary"]["dataPoints"]
    assert {attrs(d["attributes"])["peer.service"] for d in summary} >= {"catalog", "cart"}
    assert [q["quantile"] for q in summary[0]["quantileValues"]] == [0.5, 0.9, 0.99]
    # Cumulative: counts never decrease without a restart.
    counts = [int(x[1]["http.server.request.duration"]["histogram"]["dataPoints"][0]["count"])
              for x in run.metrics["frontend"]]
    assert counts == sorted(counts) and counts[0] > 0


def test_span_tree_links_and_attributes() -> None:
    run = collect(Simulator(start_unix_nano=START), 20)
    by_id = {s["spanId"]: (svc, s) for svc, s in run.spans}
    roots = [s for _, s in run.spans if "parentSpanId" not in s]
    assert 10 <= len(roots) <= 40  # 5-20 traces per step
    assert all(s["kind"] == 2 for s in roots)
    for svc, s in run.spans:
        if "parentSpanId" in s:
            psvc, parent = by_id[s["parentSpanId"]]
            assert parent["traceId"] == s["traceId"]
            assert int(parent["startTimeUnixNano"]) <= int(s["startTimeUnixNano"])
            assert int(s["endTimeUnixNano"]) <= int(parent["endTimeUnixNano"])
            if s["kind"] == 2:  # a callee's server span hangs off the caller's client span
                assert parent["kind"] == 3 and psvc != svc
                assert attrs(parent["attributes"])["peer.service"] == svc
            else:
                assert parent["kind"] == 2 and psvc == svc


def test_backends_appear_only_in_client_spans() -> None:
    run = collect(Simulator(start_unix_nano=START), 60)
    resources = ({svc for svc in run.metrics} | {svc for svc, _, _ in run.logs}
                 | {svc for svc, _ in run.spans})
    assert not resources & {"postgres", "redis"}
    pg = [(svc, attrs(s["attributes"])) for svc, s in run.spans
          if s["kind"] == 3 and attrs(s["attributes"]).get("db.system") == "postgresql"]
    rd = [(svc, attrs(s["attributes"])) for svc, s in run.spans
          if s["kind"] == 3 and attrs(s["attributes"]).get("db.system") == "redis"]
    assert pg and rd
    assert all(a["server.address"] == "postgres" and "peer.service" not in a
               and "db.statement" not in a for _, a in pg)
    assert all(a["server.address"] == "redis" and a["peer.service"] == "redis" for _, a in rd)
    assert {svc for svc, _ in pg} >= {"catalog", "payment"}


# -- faults ---------------------------------------------------------------------------------


def test_latency_fault_on_callee_raises_callers_latency() -> None:
    run = collect(Simulator(start_unix_nano=START,
                            faults=[FaultSpec("catalog", "latency", 120, 120, 0.2)]), 360)
    for svc in ("catalog", "recommendation", "frontend"):  # the callee and its callers
        before = mean_between(run.latency(svc), 30, 120)
        during = mean_between(run.latency(svc), 130, 240)
        after = mean_between(run.latency(svc), 260, 360)
        assert during > before + 0.1, svc
        assert after < before * 1.3, svc
    # Not a caller of catalog: unaffected.
    cart = run.latency("cart")
    assert mean_between(cart, 130, 240) < mean_between(cart, 30, 120) * 1.3


def test_backend_latency_shows_in_client_spans_and_callers() -> None:
    run = collect(Simulator(start_unix_nano=START,
                            faults=[FaultSpec("postgres", "latency", 120, 120, 0.3)]), 240)
    pg = [(int(s["startTimeUnixNano"]), int(s["endTimeUnixNano"]) - int(s["startTimeUnixNano"]))
          for _, s in run.spans if attrs(s.get("attributes", [])).get("db.system") == "postgresql"]
    assert max(d for t, d in pg if t < START + 120 * NS) < 0.1 * NS
    assert min(d for t, d in pg if t >= START + 130 * NS) > 0.2 * NS
    assert mean_between(run.latency("payment"), 130, 240) > 0.25


def test_crash_removes_service_telemetry_and_callers_fail() -> None:
    run = collect(Simulator(start_unix_nano=START,
                            faults=[FaultSpec("payment", "crash", 120, 100)]), 330)
    lo, hi = START + 120 * NS, START + 220 * NS
    ts = [t for t, _, _ in run.metrics["payment"]]
    assert not [t for t in ts if lo < t <= hi]
    assert [t for t in ts if t <= lo] and [t for t in ts if t > hi]
    assert not [s for svc, s in run.spans
                if svc == "payment" and lo <= int(s["startTimeUnixNano"]) < hi]
    assert not [r for svc, _, r in run.logs
                if svc == "payment" and lo <= int(r["timeUnixNano"]) < hi]
    client = [s for svc, s in run.spans if svc == "checkout" and s["kind"] == 3
              and attrs(s["attributes"]).get("peer.service") == "payment"
              and lo + 10 * NS <= int(s["startTimeUnixNano"]) < hi]
    assert client and all(s["status"]["code"] == 2 for s in client)
    assert mean_between(run.error_ratio("checkout"), 130, 220) > 0.5
    assert mean_between(run.error_ratio("checkout"), 20, 120) < 0.05
    assert mean_between(run.error_ratio("frontend"), 130, 220) > 0.05
    errors = [r["body"]["stringValue"] for svc, _, r in run.logs
              if svc == "checkout" and r["severityText"] == "ERROR"]
    assert any(re.search(r"payment at \d+\.\d+\.\d+\.\d+:\d+", e) for e in errors)
    # The restarted process starts its cumulative series anew.
    after = [m for t, m, _ in run.metrics["payment"] if t > hi][0]
    h = after["http.server.request.duration"]["histogram"]["dataPoints"][0]
    assert int(h["startTimeUnixNano"]) >= hi


def test_bad_release_deploys_before_errors_rise_then_rolls_back() -> None:
    sim = Simulator(start_unix_nano=START,
                    faults=[FaultSpec("cart", "bad_release", 125, 120, 0.3)])
    run = collect(sim, 330)
    deploys = [(res, r) for svc, res, r in run.logs if svc == "cart"
               and attrs(r.get("attributes", [])).get("event.name") == "deployment"]
    assert len(deploys) == 2
    (res1, rec1), (_, rec2) = deploys
    a1 = attrs(rec1["attributes"])
    old = run.metrics["cart"][0][2]["service.version"]
    assert a1["service.version"] != old and res1["service.version"] == a1["service.version"]
    assert int(rec1["timeUnixNano"]) == START + 125 * NS
    assert attrs(rec2["attributes"])["service.version"] == old
    assert int(rec2["timeUnixNano"]) == START + 245 * NS
    err = run.error_ratio("cart")
    first_bad = min(t for t, v in err.items() if v > 0.1)
    assert first_bad > int(rec1["timeUnixNano"])
    assert mean_between(err, 150, 240) > 0.2 and mean_between(err, 0, 120) < 0.02
    versions = {t: res["service.version"] for t, _, res in run.metrics["cart"]}
    assert versions[START + 200 * NS] == a1["service.version"] and versions[START + 330 * NS] == old
    assert mean_between(run.error_ratio("frontend"), 150, 240) > 0.05  # propagated up
    assert [d["fault"] for d in sim.deployments] == [True, True]


def test_memory_leak_grows_memory_to_near_limit() -> None:
    run = collect(Simulator(start_unix_nano=START,
                            faults=[FaultSpec("recommendation", "memory_leak", 100, 300, 0.95)]),
                  480)
    mem = run.gauge("recommendation", "process.memory.usage")
    limit = run.gauge("recommendation", "process.memory.limit")[START + 100 * NS]
    during = [mem[START + s * NS] for s in range(110, 401, 30)]
    assert all(b > a for a, b in zip(during, during[1:]))
    assert during[-1] > 0.9 * limit
    assert mem[START + 100 * NS] < 0.5 * limit and mem[START + 480 * NS] < 0.5 * limit
    warns = [r for svc, _, r in run.logs if svc == "recommendation"
             and r["severityText"] == "WARN" and "memory" in r["body"]["stringValue"]]
    assert warns


def test_cpu_fault_saturates_and_slows() -> None:
    run = collect(Simulator(start_unix_nano=START,
                            faults=[FaultSpec("checkout", "cpu", 100, 100, 0.6)]), 200)
    cpu = run.gauge("checkout", "process.cpu.utilization")
    assert mean_between(cpu, 110, 200) > mean_between(cpu, 0, 100) + 0.4
    lat = run.latency("checkout")
    assert mean_between(lat, 110, 200) > 1.3 * mean_between(lat, 0, 100)


def test_errors_fault_raises_errors_and_propagates() -> None:
    run = collect(Simulator(start_unix_nano=START,
                            faults=[FaultSpec("catalog", "errors", 100, 100, 0.5)]), 200)
    assert mean_between(run.error_ratio("catalog"), 110, 200) > 0.35
    assert mean_between(run.error_ratio("recommendation"), 110, 200) > 0.2
    assert mean_between(run.error_ratio("frontend"), 110, 200) > 0.2
    assert mean_between(run.error_ratio("cart"), 110, 200) < 0.05


def test_logs_have_severities_and_variable_parts() -> None:
    run = collect(Simulator(start_unix_nano=START,
                            faults=[FaultSpec("payment", "crash", 60, 60)]), 150)
    sev = {(r["severityText"], r["severityNumber"]) for _, _, r in run.logs}
    assert sev == {("INFO", 9), ("WARN", 13), ("ERROR", 17)}
    bodies = [r["body"]["stringValue"] for _, _, r in run.logs]
    assert any(re.search(r"\d+\.\d+\.\d+\.\d+:\d+", b) for b in bodies)
    assert any(re.search(r"request_id=[0-9a-f]{16}", b) for b in bodies)
    assert any(re.search(r"\d+(\.\d)?ms", b) for b in bodies)


def test_benign_deploys_are_changes_without_truth() -> None:
    sim = Simulator(start_unix_nano=START, benign_deploys_per_hour=60)
    run = collect(sim, 600)
    assert sim.truth == []
    assert sim.deployments and not any(d["fault"] for d in sim.deployments)
    logged = [r for _, _, r in run.logs
              if attrs(r.get("attributes", [])).get("event.name") == "deployment"]
    assert len(logged) == len(sim.deployments)
    assert Simulator(start_unix_nano=START).deployments == []


# -- truth, scenario, topology, replay ---------------------------------------------------------


def test_truth_records() -> None:
    faults = [FaultSpec("payment", "crash", 300, 60), FaultSpec("cart", "errors", 100, 50, 0.2)]
    sim = Simulator(start_unix_nano=START, faults=faults)
    assert sim.truth == [
        {"service": "cart", "fault": "errors", "onset_unix_nano": START + 100 * NS,
         "end_unix_nano": START + 150 * NS, "magnitude": 0.2},
        {"service": "payment", "fault": "crash", "onset_unix_nano": START + 300 * NS,
         "end_unix_nano": START + 360 * NS, "magnitude": 1.0},
    ]


def test_fault_spec_validation() -> None:
    with pytest.raises(ValueError):
        FaultSpec("cart", "meltdown", 0, 10)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        FaultSpec("cart", "errors", 0, 10, 1.5)
    with pytest.raises(ValueError):
        FaultSpec("cart", "errors", 0, 0)
    with pytest.raises(ValueError):
        Simulator(faults=[FaultSpec("nope", "crash", 0, 10)])
    with pytest.raises(ValueError):
        Simulator(faults=[FaultSpec("postgres", "memory_leak", 0, 10)])


def test_default_scenario_spacing() -> None:
    sim = default_scenario(START)
    truth = sim.truth
    assert {t["fault"] for t in truth} >= {"latency", "bad_release", "memory_leak", "crash", "errors"}
    assert truth[-1]["ramp_s"] > 0, "the last fault builds up slowly, for the forecaster"
    lead = int(DEFAULT_LEAD_IN_SECONDS) * NS
    assert lead + 180 * NS <= truth[0]["onset_unix_nano"] - START <= lead + 300 * NS
    assert default_scenario(START, lead_in_s=0).truth[0]["onset_unix_nano"] == truth[0]["onset_unix_nano"] - lead
    for prev, nxt in zip(truth, truth[1:]):
        assert nxt["onset_unix_nano"] - prev["end_unix_nano"] >= 300 * NS
    for n in (1, 3, 5, 12):
        small = default_scenario(START, n_services=n, seed=2)
        assert len(small.truth) == 5
        assert all(t["service"] in small.topology.services for t in small.truth)


def test_topology_is_a_deterministic_dag_rooted_at_frontend() -> None:
    for n in (1, 3, 8, 30):
        topo = build_topology(n, seed=5)
        assert len(topo.monitored) == n and topo.order[0] == "frontend"
        assert set(topo.backends) == {"postgres", "redis"}
        pos = {name: i for i, name in enumerate(topo.order)}
        assert all(pos[e.caller] < pos[e.callee] for e in topo.edges)
        assert all(topo.callers(name) for name in topo.order[1:])
        assert all(not topo.callees(b) for b in topo.backends)
    assert build_topology(30, 5).to_dict() == build_topology(30, 5).to_dict()
    assert build_topology(30, 5).to_dict() != build_topology(30, 6).to_dict()


def test_large_topology_runs_and_validates() -> None:
    sim = Simulator(n_services=30, seed=3, start_unix_nano=START)
    msgs = sim.step()
    assert sum(m.kind == "metrics" for m in msgs) == 30
    for m in msgs:
        assert_valid_otlp(m)


def test_write_replay_folder(tmp_path: Path) -> None:
    sim = Simulator(start_unix_nano=START, faults=[FaultSpec("cart", "bad_release", 30, 60),
                                                   FaultSpec("payment", "crash", 500, 60)])
    summary = write_replay(sim, tmp_path, 120)
    assert summary["end_unix_nano"] == START + 120 * NS
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert [t["service"] for t in truth] == ["cart"]  # the crash starts after the run
    for name, cls in (("metrics.jsonl", ExportMetricsServiceRequest),
                      ("logs.jsonl", ExportLogsServiceRequest),
                      ("traces.jsonl", ExportTraceServiceRequest)):
        lines = (tmp_path / name).read_bytes().splitlines()
        assert len(lines) == summary["messages"][name] > 0
        stamps = []
        for line in lines:
            doc = json.loads(line)
            json_format.Parse(json.dumps(_hex_ids_to_base64(doc)), cls())
            times = [int(t) for t in re.findall(rb'"(?:start)?[tT]imeUnixNano":"(\d+)"', line)]
            stamps.append(min(times))
        assert stamps == sorted(stamps), name
    # Same run, same bytes.
    other = tmp_path / "again"
    write_replay(Simulator(start_unix_nano=START, faults=sim.faults), other, 120)
    for name in ("metrics.jsonl", "logs.jsonl", "traces.jsonl", "truth.json"):
        assert (other / name).read_bytes() == (tmp_path / name).read_bytes()


def test_module_entry_point_writes_folder(tmp_path: Path) -> None:
    root = Path(sim_pkg.__file__).resolve().parents[2]
    proc = subprocess.run(
        [sys.executable, "-m", "aiops.sim", str(tmp_path / "out"), "--duration", "60",
         "--services", "10", "--seed", "3"],
        cwd=root, capture_output=True, text=True, timeout=120, check=True,
    )
    summary = json.loads(proc.stdout)
    assert summary["messages"]["metrics.jsonl"] == 6 * 10
    for name in ("metrics.jsonl", "logs.jsonl", "traces.jsonl", "truth.json"):
        assert (tmp_path / "out" / name).exists()


def test_step_is_fast() -> None:
    sim = default_scenario(START)
    for _ in range(5):
        sim.step()
    t0 = time.perf_counter()
    for _ in range(50):
        sim.step()
    per_step = (time.perf_counter() - t0) / 50
    assert per_step < 0.025, f"{per_step * 1000:.1f} ms per step"


def test_stdlib_json_fallback_gives_the_same_documents(monkeypatch: pytest.MonkeyPatch) -> None:
    from aiops.sim import _otlp

    with_orjson = [json.loads(m.payload) for m in Simulator(start_unix_nano=START).run(30)]
    monkeypatch.setattr(_otlp, "_orjson", None)
    stdlib = [json.loads(m.payload) for m in Simulator(start_unix_nano=START).run(30)]
    assert stdlib == with_orjson

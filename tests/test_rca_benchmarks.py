"""RCA benchmark harness: scoring helpers on hand-built incidents, the PetShop loader on a tiny
hand-made data set and on one real issue, and one real Nezha case through the harness."""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from conftest import require_shared_data

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _rca_eval as ev
import petshop_loader as pl

from aiops.correlate.contract import AnomalyRef, Incident, RootCause

S = 1_000_000_000  # ns per second


def inc(id: str, opened: int, updated: int | None = None, causes: list[str] = (), anomalies: list[tuple[str, int, float]] = (),
        status: str = "open") -> Incident:  # fmt: skip
    """An incident; times in seconds, anomalies as (service, first_seen_s, score)."""
    return Incident(
        id=id, opened_at_unix_nano=opened * S, updated_at_unix_nano=(updated if updated is not None else opened) * S,
        status=status, kind="detected", severity="warning",
        services=sorted({s for s, _, _ in anomalies}),
        root_causes=[RootCause(service=s, score=1.0 / (n + 1), reason="", indicators=[]) for n, s in enumerate(causes)],
        anomalies=[AnomalyRef(series=f"{s}/m{n}", service=s, first_seen_unix_nano=t * S, score=sc)
                   for n, (s, t, sc) in enumerate(anomalies)],
        changes=[], suggested_playbook=None,
    )  # fmt: skip


# --- scoring helpers ------------------------------------------------------------------------------
def test_latest_versions_keeps_newest_per_id_ordered_by_opening():
    stream = [
        inc("b", 200, 200, ["x"]),
        inc("a", 100, 100, ["x"]),
        inc("a", 100, 150, ["y", "x"]),
        inc("b", 200, 260, ["z"]),
        inc("a", 100, 150, ["y", "x"], status="resolved"),  # same event time, later in the stream: wins
        inc("b", 200, 230, ["w"]),  # an older version arriving late does not win
    ]
    latest = ev.latest_versions(stream)
    assert [i.id for i in latest] == ["a", "b"]
    assert latest[0].status == "resolved" and ev.ranking(latest[0]) == ["y", "x"]
    assert ev.ranking(latest[1]) == ["z"]
    assert ev.latest_versions([]) == []


def test_rankings_pipeline_and_naive():
    i = inc("a", 0, causes=["db", "api", "db"], anomalies=[("api", 10, 0.9), ("db", 20, 0.7), ("web", 5, 0.9), ("db", 30, 0.95)])
    assert ev.ranking(i) == ["db", "api"]  # duplicates dropped, order kept
    # naive: max score per service (db 0.95), ties on score by earlier onset (web 5 s before api 10 s)
    assert ev.naive_ranking(i) == ["db", "web", "api"]
    assert ev.ranking(None) == [] and ev.naive_ranking(None) == []


def test_rank_of_and_accuracy_at_k():
    rankings = [["a", "b", "c"], ["b", "a"], ["c", "d", "e", "a"], []]
    truths = ["a", "a", "a", "a"]
    assert [ev.rank_of(r, t) for r, t in zip(rankings, truths)] == [1, 2, 4, None]
    assert ev.as_at_k(rankings, truths, 1) == 0.25
    assert ev.as_at_k(rankings, truths, 3) == 0.5
    assert ev.as_at_k(rankings, truths, 5) == 0.75
    assert ev.ac_at_k(rankings, truths, 3) == 0.5  # one root cause per case: AC@k = AS@k
    # Avg@5 = mean(AC@1..AC@5) = (0.25 + 0.5 + 0.5 + 0.75 + 0.75) / 5
    assert ev.avg_at_k(rankings, truths, 5) == pytest.approx(0.55)


def test_ac_at_k_with_several_root_causes():
    # case 1: truth {a, b}; top-1 [a] → 1/1; top-2 [a, c] → 1/2; top-3 [a, c, b] → 2/2
    # case 2: truth {x};    ranking [y, x]  → top-1 0, top-2 1
    rankings, truths = [["a", "c", "b"], ["y", "x"]], [{"a", "b"}, "x"]
    assert ev.ac_at_k(rankings, truths, 1) == 0.5
    assert ev.ac_at_k(rankings, truths, 2) == 0.75
    assert ev.ac_at_k(rankings, truths, 3) == 1.0
    assert ev.as_at_k(rankings, truths, 1) == 0.5  # AS@k: any true cause in the top k
    assert ev.rank_of(["a", "c", "b"], {"b", "c"}) == 2


def test_accuracy_edge_cases():
    assert math.isnan(ev.ac_at_k([], [], 1)) and math.isnan(ev.as_at_k([], [], 3))
    with pytest.raises(ValueError):
        ev.ac_at_k([["a"]], [], 1)
    with pytest.raises(ValueError):
        ev.as_at_k([["a"]], ["a", "b"], 1)
    assert ev.ac_at_k([["a", "a", "b"]], ["b"], 2) == 1.0  # a repeated service takes one place
    assert math.isnan(ev.median([])) and ev.median([3, 1, 2]) == 2 and ev.median([4, 1, 2, 3]) == 2.5


def test_incident_selection_windows():
    incidents = [
        inc("early", 100, anomalies=[("a", 100, 1.0), ("b", 500, 1.0)]),  # opened before the window
        inc("first", 400, anomalies=[("c", 400, 0.6)]),
        inc("near", 460, anomalies=[("d", 470, 0.9), ("e", 600, 0.9)]),
        inc("late", 900, anomalies=[("f", 900, 0.9)]),
    ]
    assert ev.first_incident(incidents, 400 * S, 800 * S).id == "first"  # bounds are inclusive
    assert ev.nearest_incident(incidents, 480 * S, 400 * S, 800 * S).id == "near"  # 10 s away vs 80 s
    assert ev.nearest_incident(incidents, 400 * S, 400 * S, 800 * S).id == "first"
    assert ev.first_incident(incidents, 401 * S, 459 * S) is None
    assert ev.nearest_incident(incidents, 0, 1000 * S, 2000 * S) is None
    # equally near: more anomalies wins, then the earlier opening
    tie = [inc("one", 10, anomalies=[("a", 20, 1.0)]), inc("two", 15, anomalies=[("b", 20, 1.0), ("c", 40, 1.0)])]
    assert ev.nearest_incident(tie, 20 * S, 0, 100 * S).id == "two"
    assert [i.id for i in ev.opened_between(incidents, 0, 10**12)] == ["early", "first", "near", "late"]


def test_load_incidents_round_trip(tmp_path):
    stream = [inc("a", 1, 1, ["x"]), inc("a", 1, 2, ["y"])]
    path = tmp_path / "incidents.jsonl"
    path.write_text("".join(i.model_dump_json() + "\n" for i in stream))
    assert ev.ranking(ev.latest_versions(ev.load_incidents(path))[0]) == ["y"]


# --- PetShop loader on a hand-made scenario --------------------------------------------------------
def _write_metrics(path: Path, nodes: list[str], rows: list[tuple[float, list[str]]]) -> None:
    header = [["microservice"], ["metric"], ["statistic"], ["unix_timestamp"]]
    for n in nodes:
        for metric, stat in (("latency", "Average"), ("latency", "p99"), ("requests", "Sum"), ("availability", "Average")):
            header[0].append(n)
            header[1].append(metric)
            header[2].append(stat)
            header[3].append("")
    lines = [",".join(h) for h in header] + [",".join([f"{ts:.1f}", *cells]) for ts, cells in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def tiny_petshop(tmp_path: Path) -> Path:
    root = tmp_path / "petshop"
    scen = root / "low_traffic"
    scen.mkdir(parents=True)
    (scen / "graph.csv").write_text(",Site,Api,Db\nSite,0,1,0\nApi,0,0,1\nDb,0,0,0\n")
    day = 86_400
    issue_start = 1_681_855_320.0  # 2023-04-18 22:02 UTC
    # Baseline recorded months later, like the real data: 2023-08-21 21:00 .. 2023-08-23 10:00
    base0 = 1_692_651_600.0
    n_base = int((1.5 * day + 3600) // 300) + 1
    base_rows = [(base0 + 300 * i, ["0.05", "0.1", "100", "100.0", "0.02", "", "50", "NaN"]) for i in range(n_base)]
    _write_metrics(scen / "noissue" / "metrics.csv", ["Site", "Api"], base_rows)
    issue_rows = [(issue_start + 300 * i, ["0.05", "0.1", "100", "100.0", "0.9" if i >= 2 else "0.02", "2", "50", "100",
                                           "0.01", "0.01", "30", "100"]) for i in range(5)]  # fmt: skip
    _write_metrics(scen / "test" / "issue_0" / "metrics.csv", ["Site", "Api", "Db"], issue_rows)
    target = {"target": {"node": "Site", "metric": "latency", "agg": "Average", "timestamp": issue_start + 600},
              "root_cause": {"node": "Api", "metric": None},
              "metadata": {"reproducibility": {"command": "make Api slow"}}}  # fmt: skip
    (scen / "test" / "issue_0" / "target.json").write_text(json.dumps(target))
    return root


def test_loader_on_hand_made_case(tiny_petshop: Path, tmp_path: Path):
    out = tmp_path / "case"
    truth = pl.build(tiny_petshop, "low_traffic/test/issue_0", out)
    assert truth["root_cause"] == "Api" and truth["onset_unix_nano"] == int((1_681_855_320 + 600) * 1e9)
    assert truth["history_shift_s"] % 86_400 == 0 and truth["history_shift_s"] < 0
    assert truth["history_nodes_missing"] == ["Db"]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == truth["points"]
    ts = [r["ts"] for r in records]
    assert ts == sorted(ts)
    window = [r for r in records if r["ts"] >= 1_681_855_320]
    history = [r for r in records if r["ts"] < 1_681_855_320]
    assert len({r["ts"] for r in window}) == 5 and len({r["ts"] for r in history}) == truth["history_rows"]
    assert max(r["ts"] for r in history) > 1_681_855_320 - 300  # history ends right before the window
    assert all((r["ts"] - 1_692_651_600) % 300 == 0 for r in history)  # shifted by whole days: same grid
    # empty and NaN cells are skipped; names are <metric>.<stat>
    assert {r["metric"] for r in records} == {"latency.avg", "latency.p99", "requests.sum", "availability.avg"}
    api_hist = {(r["metric"]) for r in history if r["service"] == "Api"}
    assert api_hist == {"latency.avg", "requests.sum"}
    assert all(math.isfinite(r["value"]) for r in records)
    topo = json.loads((out / "topology.json").read_text())
    assert topo["edges"] == [["Site", "Api"], ["Api", "Db"]] and topo["nodes"] == ["Site", "Api", "Db"]
    assert json.loads((out / "truth.json").read_text()) == truth


def test_loader_refuses_cases_without_baseline(tiny_petshop: Path, tmp_path: Path):
    with pytest.raises(KeyError):
        pl.build(tiny_petshop, "low_traffic/test/issue_9", tmp_path)
    shutil.copytree(tiny_petshop / "low_traffic" / "test", tiny_petshop / "temporal_traffic1" / "test")
    with pytest.raises(ValueError, match="no normal baseline"):
        pl.build(tiny_petshop, "temporal_traffic1/test/issue_0", tmp_path)


def test_history_shift():
    # history ending 2023-08-23 10:00, issue at 2023-04-18 22:02: whole days, history end ≥ issue start
    end, start = 1_692_784_800.0, 1_681_855_320.0
    shift = pl.history_shift([end - 300, end], start)
    assert shift % 86_400 == 0 and start <= end + shift < start + 86_400


# --- real data ---------------------------------------------------------------------------------------
def test_loader_on_real_petshop_issue(tmp_path: Path):
    petshop = require_shared_data("rca", "petshop")
    truth = pl.build(petshop, "low_traffic/test/issue_1", tmp_path)
    assert truth["root_cause"] == "lambdastatusupdater_AWS::Lambda::Function"
    assert truth["target"]["metric"] == "latency" and truth["issue_rows"] == 5
    assert 25 * 12 <= truth["history_rows"] <= 49 * 12 + 1
    assert truth["window_start_unix_nano"] <= truth["onset_unix_nano"] <= truth["window_end_unix_nano"]
    topo = json.loads((tmp_path / "topology.json").read_text())
    assert len(topo["edges"]) == 44 and len(topo["nodes"]) == 42  # the README's sizes for low_traffic
    assert not any(callee == "PetSite" for _, callee in topo["edges"])
    assert truth["root_cause"] in topo["nodes"]
    # Through the real pipeline: every point accepted (no dead letters), in event-time order.
    run = ev.replay([tmp_path / "metrics.jsonl"], topology=tmp_path / "topology.json")
    assert run.rejects == 0, run.reject_example
    assert run.stats["points"] == truth["points"]


def test_nezha_case_through_harness():
    nezha = require_shared_data("rca", "nezha")
    import rca_nezha

    case = nezha / "ob" / "20220822-0518-currencyservice-cpu_contention"
    run = rca_nezha.replay_cases([case], use_topology=True, kwargs={})
    r = rca_nezha.score_case(case, run, "case")
    assert r["rejects"] == 0, r["reject_example"]
    assert r["root_cause"] == "currencyservice" and r["system"] == "ob"
    assert r["stats"]["spans"] > 0 and r["stats"]["points"] > 0
    # Whatever the ranking does, the result is consistent with the figures computed from it.
    figures = rca_nezha.figures_for([r], "x_")
    assert figures["x_cases"] == 1 and figures["x_as1"] == (1.0 if r["rank"] == 1 else 0.0)
    assert figures["x_detection_recall"] == (0.0 if r["chosen"] is None else 1.0)
    assert figures["x_b_as1"] == (1.0 if r["rank_b"] == 1 else 0.0)


def test_nezha_stream_delivers_overlapping_cases_once():
    nezha = require_shared_data("rca", "nezha")
    import rca_nezha

    cases = [nezha / "ob" / "20220822-0518-currencyservice-cpu_contention",
             nezha / "ob" / "20220822-0527-currencyservice-network_delay"]  # fmt: skip
    alone = [rca_nezha.replay_cases([c], use_topology=True, kwargs={}) for c in cases]
    both = rca_nezha.replay_cases(cases, use_topology=True, kwargs={})
    assert both.rejects == 0 and both.duplicates > 0
    # the overlap's scrapes are one recording: delivered once, nothing else lost
    assert both.stats["messages"] == sum(a.stats["messages"] for a in alone) - both.duplicates
    assert both.stats["spans"] == sum(a.stats["spans"] for a in alone)  # trace minutes never overlap
    assert rca_nezha.system_days(cases) == {("ob", "20220822"): cases}

"""The dependency graph from hand-written spans, ranking on hand-made propagation cases, and
graph-aware grouping."""

from __future__ import annotations

import json

import numpy as np

from aiops.correlate.changes import ChangeIndex
from aiops.correlate.incidents import IncidentManager
from aiops.detect.episodes import Activity, Anomaly
from aiops.ingest.records import ChangeEvent, Span
from aiops.rca.graph import DependencyGraph
from aiops.rca.rank import rank

S = 10**9
T = 1_700_000_000 * S
SERVER, CLIENT = 2, 3


def span(service, span_id, parent="", kind=SERVER, end=T, error=False, **attrs):
    return Span("ab" * 16, span_id, parent, service, "op", kind, end - S // 10, end, error, attrs)


def test_edges_from_client_peers_databases_and_cross_service_parents():
    g = DependencyGraph()
    g.observe([
        span("frontend", "a" * 16),
        span("frontend", "b" * 16, "a" * 16, CLIENT, **{"peer.service": "cart"}),
        span("cart", "c" * 16, "b" * 16),
        span("cart", "d" * 16, "c" * 16, CLIENT, **{"db.system": "postgresql", "server.address": "pg-14"}),
        span("cart", "e" * 16, "c" * 16, CLIENT, error=True, **{"db.system": "redis"}),
    ])  # fmt: skip
    assert sorted(g.g.edges) == [("cart", "pg-14"), ("cart", "redis"), ("frontend", "cart")]
    assert g.g["frontend"]["cart"]["calls"] == 2  # the client span and the child server span both say so
    assert g.g["cart"]["redis"]["errors"] == 1
    assert g.callers("cart") == ["frontend"] and sorted(g.callees("cart")) == ["pg-14", "redis"]
    assert g.connected("frontend", "pg-14") and not g.connected("frontend", "nowhere")


def test_a_child_seen_before_its_parent_waits_for_it():
    g = DependencyGraph()
    g.observe([span("payment", "c" * 16, "p" * 16)])  # parent not seen yet
    assert g.g.number_of_edges() == 0
    g.observe([span("checkout", "p" * 16)])
    assert list(g.g.edges) == [("checkout", "payment")]


def test_missing_parents_are_bounded_and_same_service_parents_make_no_edge():
    g = DependencyGraph(max_pending=10)
    g.observe([span("svc", f"{i:016x}", f"{i + 10**6:016x}") for i in range(100)])
    assert len(g._pending) == 10 and g.g.number_of_edges() == 0
    g.observe([span("svc", "1" * 16), span("svc", "2" * 16, "1" * 16)])
    assert g.g.number_of_edges() == 0


def test_edges_age_out_unless_pinned_by_a_topology_file(tmp_path):
    topo = tmp_path / "topology.json"
    topo.write_text(json.dumps({"edges": [["frontend", "search"]]}))
    g = DependencyGraph(ttl_s=60)
    g.load_static(topo)
    g.observe([span("frontend", "b" * 16, kind=CLIENT, end=T, **{"peer.service": "cart"})])
    assert g.prune(T + 30 * S) == []
    assert g.prune(T + 120 * S) == [("frontend", "cart")]
    assert list(g.g.edges) == [("frontend", "search")]
    restored = DependencyGraph()
    restored.load_state(json.loads(json.dumps(g.state())))
    assert list(restored.g.edges(data="pinned")) == [("frontend", "search", True)]


def chain() -> DependencyGraph:
    g = DependencyGraph()
    for caller, callee in (("frontend", "checkout"), ("checkout", "payment"), ("payment", "postgres")):
        g.g.add_edge(caller, callee, calls=1, errors=0, last_seen=T, pinned=True)
    return g


def anomaly(series, at, value=3.0, baseline=1.0, score=0.9, service=None, previous=float("nan")):
    return Anomaly(series, service or series.split("/")[0], at, score, 1, value, baseline, previous)


def test_the_deepest_service_that_went_first_is_the_root_cause():
    found = [
        anomaly("frontend/http.duration:p99", T + 20 * S),
        anomaly("checkout/http.duration:p99", T + 10 * S),
        anomaly("payment/http.duration:p99", T),
    ]
    ranked = rank(found, chain(), ChangeIndex(), lambda _: True)
    assert [c.service for c in ranked] == ["payment", "checkout", "frontend"]
    assert "first anomaly" in ranked[0].reason and "explains 2 anomalous services up to frontend" in ranked[0].reason
    assert "but its callee payment went first" in ranked[1].reason


def fanout() -> DependencyGraph:
    """frontend calls search, its load balancer ``lb`` and cart; search and cart call db; batch calls db."""
    g = DependencyGraph()
    for caller, callee in (("frontend", "search"), ("frontend", "lb"), ("frontend", "cart"), ("search", "db"),
                           ("cart", "db"), ("batch", "db")):  # fmt: skip
        g.g.add_edge(caller, callee, calls=1, errors=0, last_seen=T, pinned=True)
    return g


def test_the_service_that_explains_the_most_of_the_incident_wins_over_a_leaf_beside_it():
    # search and the frontend's view of it (lb) both went bad; search also explains cart's caller chain
    found = [
        anomaly("frontend/latency.avg", T), anomaly("lb/latency.avg", T, value=5.0, score=1.0),
        anomaly("db/latency.avg", T), anomaly("cart/latency.avg", T), anomaly("search/latency.avg", T),
    ]  # fmt: skip
    ranked = rank(found, fanout(), ChangeIndex(), lambda _: True)
    assert ranked[0].service == "db" and "explains 3 anomalous services up to frontend" in ranked[0].reason


def test_an_earlier_unrelated_anomaly_neither_dates_nor_explains_the_incident():
    # search's callee db went bad 10 min before search: search stayed healthy meanwhile, so db did
    # not cause it; search, which went bad with the frontend, did
    found = [anomaly("db/latency.avg", T - 600 * S), anomaly("search/latency.avg", T), anomaly("frontend/latency.avg", T)]
    ranked = rank(found, fanout(), ChangeIndex(), lambda _: True)
    assert ranked[0].service == "search" and "up to frontend" in ranked[0].reason


def test_request_rate_changes_on_a_callee_and_rising_availability_explain_nothing():
    found = [
        anomaly("search/latency.avg", T), anomaly("frontend/latency.avg", T),
        anomaly("db/requests.sum", T, value=9.0),  # search retries: more load on db, an effect
        anomaly("lb/availability.avg", T, value=100.0, baseline=50.0),  # recovering, not failing
    ]  # fmt: skip
    ranked = rank(found, fanout(), ChangeIndex(), lambda _: True)
    assert ranked[0].service == "search" and "lb" not in [c.service for c in ranked]


def test_a_callee_failing_requests_outranks_a_sibling_that_is_only_slower():
    found = [
        anomaly("frontend/availability.avg", T, value=90.0, baseline=100.0, score=1.0),
        anomaly("lb/latency.avg", T, value=5.0, score=1.0),
        anomaly("cart/availability.avg", T, value=90.0, baseline=100.0, score=0.8),
    ]
    for a in found:
        a.direction = -1 if "availability" in a.series else 1
    ranked = rank(found, fanout(), ChangeIndex(), lambda _: True)
    assert ranked[0].service == "cart" and ranked[1].service == "lb"


def test_a_backend_without_metrics_is_blamed_through_its_callers_client_spans():
    found = [
        anomaly("payment/http.duration:p99", T + 10 * S, value=2.0),
        anomaly("payment/span.client.duration:p99{peer=postgres}", T + 10 * S, value=5.8, service="postgres"),
    ]
    ranked = rank(found, chain(), ChangeIndex(), lambda s: s != "postgres")
    assert ranked[0].service == "postgres"
    assert ranked[0].reason.startswith("postgres: callers' client spans span.client.duration:p99 +480 %")
    assert "no own metrics" in ranked[0].reason
    assert ranked[0].indicators == ["payment/span.client.duration:p99{peer=postgres}"]


def test_a_callee_wobble_does_not_explain_a_callers_big_change():
    found = [anomaly("checkout/http.duration:p99", T, value=3.0), anomaly("payment/http.duration:p99", T, value=1.1)]
    assert rank(found, chain(), ChangeIndex(), lambda _: True)[0].service == "checkout"


def test_a_deploy_shortly_before_onset_wins_and_suggests_rollback():
    changes = ChangeIndex()
    changes.add([ChangeEvent(T - 120 * S, "checkout", "deployment", "2.0.1", {})])
    found = [anomaly("checkout/errors:rate", T), anomaly("frontend/errors:rate", T)]
    ranked = rank(found, chain(), changes, lambda _: True)
    assert ranked[0].service == "checkout" and ranked[0].deployed
    assert "deployed 2.0.1 2.0 min before onset" in ranked[0].reason
    manager = IncidentManager(changes, chain())
    (inc,) = manager.on_activity(Activity(found, np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0)), [])
    assert inc.suggested_playbook == "rollback"


def test_a_never_seen_log_template_alone_weighs_less_than_a_metric():
    found = [
        anomaly("frontend/log.new_template{severity=ERROR,template=ab,text=boom}", T - 30 * S, 1.0, 0.0),
        anomaly("checkout/http.duration:p99", T),
    ]
    ranked = rank(found, chain(), ChangeIndex(), lambda _: True)
    assert ranked[0].service == "checkout"
    assert ranked[1].reason.startswith("frontend: never-seen log template 'boom'")


def test_without_a_graph_ranking_falls_back_on_onset_and_strength():
    found = [anomaly("b/x", T + 60 * S, score=0.99), anomaly("a/x", T, score=0.6)]
    assert [c.service for c in rank(found, None, ChangeIndex(), lambda _: True)] == ["a", "b"]


def activity(*found):
    return Activity(list(found), np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0))


def test_simultaneous_anomalies_in_unconnected_services_are_separate_incidents():
    g = chain()
    g.g.add_edge("batch", "warehouse", calls=1, errors=0, last_seen=T, pinned=True)
    manager = IncidentManager(ChangeIndex(), g)
    first = manager.on_activity(activity(anomaly("payment/p99", T)), [])
    second = manager.on_activity(activity(anomaly("warehouse/p99", T + 5 * S)), [])
    third = manager.on_activity(activity(anomaly("checkout/p99", T + 10 * S)), [])
    assert first[0].id != second[0].id
    assert third[0].id == first[0].id and third[0].services == ["checkout", "payment"]


def test_evidence_that_may_not_open_joins_a_related_incident_or_nothing():
    manager = IncidentManager(ChangeIndex(), chain())
    template = anomaly("payment/log.new_template{template=ab,text=x}", T, 1.0, 0.0)
    assert manager.on_activity(activity(template), [], may_open=False) == []
    (inc,) = manager.on_activity(activity(anomaly("checkout/p99", T + 5 * S)), [])
    late = anomaly("payment/log.new_template{template=cd,text=y}", T + 10 * S, 1.0, 0.0)
    (joined,) = manager.on_activity(activity(late), [], may_open=False)
    assert joined.id == inc.id and "payment" in joined.services


def test_a_callee_whose_level_was_already_there_before_its_onset_does_not_explain_a_fresh_step():
    # frontend steps 1 -> 3 at T; its callee search reads +200 % against its long-term baseline
    # too, but it was already at 2.9 the point before (a level from another period): its step at
    # onset is 3 %, not comparable with the frontend's, so it explains nothing and the frontend,
    # which stepped, ranks first
    found = [anomaly("frontend/latency.avg", T, previous=1.0), anomaly("search/latency.avg", T, previous=2.9)]
    ranked = rank(found, fanout(), ChangeIndex(), lambda _: True)
    assert ranked[0].service == "frontend" and "explains" not in ranked[1].reason
    fresh = [anomaly("frontend/latency.avg", T, previous=1.0), anomaly("search/latency.avg", T, previous=1.0)]
    assert rank(fresh, fanout(), ChangeIndex(), lambda _: True)[0].service == "search"


def test_a_service_whose_own_cpu_went_up_outranks_a_sibling_that_is_only_slower():
    # search and cart both went bad with the frontend and both explain it; search's latency is the
    # stronger signal, but cart's own CPU rose: a resource fault acts there, search only slowed down
    found = [
        anomaly("search/http.duration:p99", T, score=1.0), anomaly("cart/process.cpu.utilization", T, value=2.0),
        anomaly("frontend/latency.avg", T),
    ]  # fmt: skip
    ranked = rank(found, fanout(), ChangeIndex(), lambda _: True)
    assert [c.service for c in ranked[:2]] == ["cart", "search"]
    # a callee's CPU seen by nobody else's series: a client-side view of it is not its own CPU
    viewed = [anomaly("frontend/process.cpu.utilization{peer.service=cart}", T, value=2.0, service="cart"),
              anomaly("search/http.duration:p99", T, score=1.0), anomaly("frontend/latency.avg", T)]  # fmt: skip
    assert rank(viewed, fanout(), ChangeIndex(), lambda _: True)[0].service == "search"

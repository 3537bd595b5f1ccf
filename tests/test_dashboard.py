"""The dashboard's pages over the real app: a live bad-release incident, hostile names, masked secrets,
and the SVG drawing on its own."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import networkx as nx
import pytest
from fastapi.testclient import TestClient
from shop_loop import TOKEN, WEBHOOK, ShopLoop

from aiops.api.app import ApiContext, create_app
from aiops.api.auth import TokenTable
from aiops.config import Settings
from aiops.correlate.contract import AnomalyRef, ChangeRef, Incident, RootCause
from aiops.dashboard import evidence
from aiops.dashboard.secrets import masked_settings
from aiops.dashboard.svg import chart_svg, graph_svg, layout
from aiops.dashboard.views import Change, Forecast
from aiops.learn.config import LearnConfig
from aiops.learn.learner import Learner
from aiops.store.sqlite import Store

EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ShopLoop, Any]]:
    """The simulated shop run until the bad release's rollback is proposed."""
    loop = ShopLoop(tmp_path_factory.mktemp("dash"))
    action = loop.run_until(loop.proposed, 800)
    try:
        yield loop, action
    finally:
        loop.close()


@pytest.fixture
def client(shop: tuple[ShopLoop, Any]) -> TestClient:
    return TestClient(shop[0].app)


def test_incidents_list_shows_status_kind_root_cause_and_remediation(shop, client: TestClient) -> None:
    _, action = shop
    html = client.get("/").text
    row = re.search(rf'<tr class="incident" data-id="{action.incident_id}" data-status="open">.*?</tr>', html)
    assert row, html
    for text in ("badge-detected", "cart <small>", "rollback", "badge-proposed", f'href="/ui/incidents/{action.incident_id}"'):
        assert text in row.group(0)
    statuses = re.findall(r'<tr class="incident" data-id="[^"]+" data-status="(\w+)"', html)
    assert statuses == sorted(statuses, key=lambda s: s != "open"), "open incidents first"
    assert re.findall(r'data-status="(\w+)"', client.get("/?show=open").text) == [s for s in statuses if s == "open"]
    assert client.get("/?show=everything").status_code == 422


def test_incident_page_draws_the_graph_charts_and_the_proposal(shop, client: TestClient) -> None:
    _, action = shop
    r = client.get(f"/ui/incidents/{action.incident_id}")
    assert r.status_code == 200
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
    html = r.text
    graph = html[html.index('<svg id="graph"'):]
    graph = graph[:graph.index("</svg>")]
    assert re.search(r'<g class="node anom rc1" data-service="cart">', graph)
    assert 'data-service="postgres"' in graph, "unmonitored backends seen in client spans are drawn"
    assert 'class="edge hot" data-edge="checkout→cart"' in graph
    charts = re.findall(r'<svg class="chart".*?</svg>', html)
    assert len(charts) == evidence.MAX_CHARTS
    assert "cart/http.server.request.count:error_ratio" in charts[0]
    assert all('class="line"' in c and 'class="span"' in c and 'class="marker"' in c for c in charts)
    assert f'data-decide="approve" data-approval="{action.id}"' in html
    assert f"<tr><th>version</th><td>{action.params['version']}</td></tr>" in html, "the rollback's parameters"
    assert f'data-targets="{action.incident_id},{action.id}"' in html
    assert TOKEN not in html


def test_unknown_incident_is_a_404_page(client: TestClient) -> None:
    r = client.get("/ui/incidents/<img src=x onerror=alert(1)>")
    assert r.status_code == 404 and "<img" not in r.text and "&lt;img src=x onerror=alert(1)&gt;" in r.text


def test_config_page_masks_secrets_and_lists_approvers(client: TestClient) -> None:
    html = client.get("/ui/config").text
    assert TOKEN not in html and WEBHOOK not in html
    assert "***" + TOKEN[-4:] in html and "***" + WEBHOOK[-4:] in html
    playbooks = html[html.index('id="playbooks"'):]
    assert "rollback" in playbooks and "approver" in playbooks
    assert "*/http.server.request.count:error_ratio" in html, "the default SLOs in force are shown"


def test_health_page_headlines_and_checks(tmp_path: Path) -> None:
    figures = {"points": 5, "bad_records|reason=json": 2, "bad_records|reason=nan": 3, "ingest_rate_per_s": 100.0,
               "consumer_lag_s": 1.5, "detector_series": 42, "model_age_s": 60}  # fmt: skip
    ctx = ApiContext(Store(tmp_path / "aiops.db"), TokenTable({}), snapshot=lambda: figures,
                     health=lambda: {"pipeline": {"ok": True}, "kafka": {"ok": False, "reason": "no broker"}})  # fmt: skip
    html = TestClient(create_app(ctx)).get("/ui/health").text
    assert "badge-degraded" in html and "no broker" in html
    cards = {k: v for v, k in re.findall(r'<div class="card"><b>([^<]+)</b>([^<]+)</div>', html)}
    assert cards == {"bad_records": "5", "ingest_rate_per_s": "100", "consumer_lag_s": "1.5", "detector_series": "42",
                     "model_age_s": "60"}  # fmt: skip
    assert "bad_records|reason=nan" in html, "every figure is listed"


def test_models_page_lists_versions_and_their_changes(shop, tmp_path: Path) -> None:
    loop, _ = shop
    assert "not running" in TestClient(loop.app).get("/ui/models").text
    models = tmp_path / "models"
    with loop.lock:
        loop.pipeline.save_versions(models)
    learner = Learner(loop.store, models, lambda fn: fn(loop.pipeline), LearnConfig())
    ctx = ApiContext(loop.store, TokenTable({}), learner=learner, views=loop.views)
    html = TestClient(create_app(ctx)).get("/ui/models").text
    assert "<h2>metrics</h2>" in html and "<h2>forecast</h2>" in html


def test_static_files_and_read_role(shop, tmp_path: Path) -> None:
    loop, _ = shop
    client = TestClient(loop.app)
    js = client.get("/ui/static/dashboard.js")
    assert js.status_code == 200 and "Authorization" in js.text
    assert client.get("/ui/static/dashboard.css").status_code == 200
    assert "/ui/incidents/{incident_id}" not in client.get("/openapi.json").text, "pages are not API contract"
    closed = TestClient(create_app(ApiContext(loop.store, TokenTable({TOKEN: "viewer"}), read_role="viewer")))
    assert closed.get("/").status_code == 401
    assert closed.get("/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


# --- hostile names -------------------------------------------------------------------------------


class FakeViews:
    """Views over fixed data: a graph and series with a service named like markup."""

    def series(self, key: str) -> tuple[list[int], list[float]]:
        return [i * 10**10 for i in range(1, 31)], [float(i % 7) for i in range(30)]

    def graph(self) -> nx.DiGraph:
        return nx.DiGraph([("frontend", EVIL), (EVIL, "db")])

    def forecast(self, key: str) -> Forecast | None:
        return Forecast([31 * 10**10, 32 * 10**10], [7.0, 8.0], [6.0, 6.5], [8.0, 9.5], "ETS(A,Ad,N)", 0.9)

    def changes(self, services: Iterable[str], start_ns: int, end_ns: int) -> list[Change]:
        return [Change(EVIL, '1.0"><img src=x onerror=alert(2)>', 5 * 10**10, "deployment")]

    def config(self) -> dict[str, Any]:
        return {"kafka_bootstrap": EVIL}

    def playbooks(self) -> list[dict[str, Any]]:
        return []


def test_hostile_names_are_escaped_everywhere(tmp_path: Path) -> None:
    store = Store(tmp_path / "aiops.db")
    series = f"{EVIL}/http.server.request.count:error_ratio"
    inc = Incident(id="inc-evil", opened_at_unix_nano=10**10, updated_at_unix_nano=2 * 10**10, status="open",
                   kind="detected", severity="critical", services=[EVIL],
                   root_causes=[RootCause(service=EVIL, score=1.0, reason=EVIL, indicators=[series])],
                   anomalies=[AnomalyRef(series=series, service=EVIL, first_seen_unix_nano=2 * 10**11, score=0.9)],
                   changes=[ChangeRef(service=EVIL, version=EVIL, at_unix_nano=10**10)], suggested_playbook=EVIL)  # fmt: skip
    store.commit([inc], [])
    client = TestClient(create_app(ApiContext(store, TokenTable({}), views=FakeViews())))
    for url in ("/", "/ui/incidents/inc-evil", "/ui/config"):
        html = client.get(url).text
        assert "<script>alert" not in html and "<img src=x" not in html, url
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html, url
    page = client.get("/ui/incidents/inc-evil").text
    assert 'class="node anom rc1" data-service="&lt;script&gt;alert(1)&lt;/script&gt;"' in page
    assert 'class="band"' in page and 'class="forecast"' in page
    store.close()


# --- drawing -------------------------------------------------------------------------------------


def test_graph_layout_is_deterministic_and_ranks_candidates() -> None:
    edges = [("frontend", "checkout"), ("checkout", "cart"), ("checkout", "payment"), ("cart", "redis")]
    assert layout(nx.DiGraph(edges)) == layout(nx.DiGraph(list(reversed(edges))))
    pos = layout(nx.DiGraph(edges))
    assert pos["frontend"][0] < pos["checkout"][0] < pos["cart"][0] < pos["redis"][0], "callers left of callees"
    assert set(layout(nx.DiGraph([("a", "b"), ("b", "a")]))) == {"a", "b"}, "cycles fall back to a spring layout"
    svg = graph_svg(nx.DiGraph(edges), ["cart", "checkout"], ["cart"], [("checkout", "cart")])
    assert '<g class="node anom rc1" data-service="cart">' in svg and '<g class="node rc2" data-service="checkout">' in svg
    assert svg.count('class="edge hot"') == 1 and svg.count('class="edge"') == 3
    assert "No dependency graph" in graph_svg(nx.DiGraph(), [], [], [])


def test_big_graphs_show_the_neighbourhood_and_missing_candidates() -> None:
    g = nx.DiGraph([(f"s{i}", f"s{i + 1}") for i in range(100)])
    svg = graph_svg(g, ["s50", "ghost"], [], [])
    assert sorted(re.findall(r'data-service="([^"]+)"', svg)) == ["ghost", "s49", "s50", "s51"]


def test_chart_marks_spans_band_changes_and_skips_non_finite_points() -> None:
    ts = [i * 10**10 for i in range(10)]
    band = Forecast([10 * 10**10, 11 * 10**10], [5.0, 6.0], [4.0, 4.5], [6.0, 7.5], "ETS", 0.9)
    svg = chart_svg("s", ts, [1, 2, float("nan"), 3, 4, 5, float("inf"), 6, 7, 8], spans=[(3 * 10**10, 5 * 10**10)],
                    band=band, markers=[(4 * 10**10, "cart 1.2"), (99 * 10**10, "out of range")], threshold=7.0)  # fmt: skip
    assert len(re.search(r'class="line" points="([^"]+)"', svg).group(1).split()) == 8
    assert svg.count('class="span"') == 1 and 'class="band"' in svg and "SLO 7" in svg
    assert "cart 1.2" in svg and "out of range" not in svg
    assert "no recent points" in chart_svg("empty", [], [])


def test_masking_by_name() -> None:
    s = Settings(api_tokens={"tok-0123456789abcdef": "approver:al"}, slack_signing_secret="shh",
                 notify={"bot_token": "xoxb-000000000000-secretTAIL", "channel": "C1"},
                 kafka_bootstrap="user:pass@broker:9092",
                 executor={"sim_control_url": "http://u:p@127.0.0.1:1"})  # fmt: skip
    m = masked_settings(s)
    assert m["api_tokens"] == {"***cdef": "approver:al"}
    assert m["slack_signing_secret"] == "***" and m["notify"]["bot_token"] == "***TAIL" and m["notify"]["channel"] == "C1"
    assert m["executor"]["sim_control_url"] == "http://***@127.0.0.1:1"
    assert m["slos"]["effective_rules"] and m["detection"]["effective_rules"]


def test_evidence_order_and_edges() -> None:
    record = {"forecast": {"series": "f/x"}, "root_causes": [{"service": "a", "indicators": ["a/1", "f/x"]}],
              "anomalies": [{"series": "b/2{peer=c}", "score": 0.5, "first_seen_unix_nano": 5},
                            {"series": "a/1", "score": 0.9, "first_seen_unix_nano": 3}],
              "services": ["a", "b"], "status": "resolved", "updated_at_unix_nano": 9}  # fmt: skip
    assert evidence.evidence_series(record) == ["f/x", "a/1", "b/2{peer=c}"]
    assert evidence.hot_edges(record) == {("b", "c"), ("a", "b"), ("b", "a")}
    assert evidence.spans(record, "a/1", 100) == [(3, 9)]


def test_the_demo_injects_faults_on_demand(tmp_path) -> None:
    from fastapi.testclient import TestClient

    from aiops.api.app import ApiContext, create_app
    from aiops.api.auth import TokenTable
    from aiops.sim import Simulator
    from aiops.store.sqlite import Store

    sim = Simulator(6, 0)
    store = Store(tmp_path / "a.db")
    client = TestClient(create_app(ApiContext(store, TokenTable({"ta": "approver:ann", "te": "expert:eve"}), faults=sim)))
    page = client.get("/").text
    assert 'form id="inject"' in page and '<option value="cart">' in page
    body = {"service": "cart", "kind": "bad_release", "duration_s": 300}
    assert client.post("/demo/faults", json=body, headers={"Authorization": "Bearer te"}).status_code == 403
    assert client.post("/demo/faults", json={**body, "service": "nope"}, headers={"Authorization": "Bearer ta"}).status_code == 404
    assert client.post("/demo/faults", json={**body, "duration_s": 5}, headers={"Authorization": "Bearer ta"}).status_code == 422
    r = client.post("/demo/faults", json=body, headers={"Authorization": "Bearer ta"})
    assert r.status_code == 201 and r.json()["fault"] == "bad_release" and r.json()["service"] == "cart"
    assert sim.truth[-1]["fault"] == "bad_release" and store.audit_log()[0]["action"] == "demo.fault"
    plain = TestClient(create_app(ApiContext(store, TokenTable({}))))
    assert 'form id="inject"' not in plain.get("/").text and plain.post("/demo/faults", json=body).status_code == 404

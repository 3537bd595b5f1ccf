"""Server-rendered SVG: the dependency graph of an incident and the time series of its evidence.

Drawn in Python so the dashboard needs no JavaScript library, no build step and no network: the
browser gets finished markup, and a test can read the same markup. Styling is by class
(``dashboard.css``); every name and label that came from telemetry is escaped.

The graph shows the incident's neighbourhood (its services, the root-cause candidates and their
direct callers and callees) when the whole graph is too big to read. Layout is deterministic:
call graphs are usually acyclic, so services are placed in columns by call depth (callers left,
callees right); a graph with cycles falls back to a spring layout with a fixed seed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from html import escape

import networkx as nx

from aiops.dashboard.views import Forecast

MAX_NODES = 30  # beyond this only the incident's neighbourhood is drawn
NODE_H = 26


def _n(v: float) -> str:
    return f"{v:.1f}"


def _label(v: float) -> str:
    return f"{v:.4g}"


def _hhmm(ns: int) -> str:
    return datetime.fromtimestamp(ns / 1e9, UTC).strftime("%H:%M")


# --- dependency graph ----------------------------------------------------------------------------


def neighbourhood(g: nx.DiGraph, focus: Iterable[str]) -> nx.DiGraph:
    """The part of ``g`` worth drawing: all of it when small, else ``focus`` and its direct neighbours.

    Focus services missing from ``g`` (no spans seen yet) are added as lone nodes so they still show.
    """
    focus = set(focus)
    keep = set(g.nodes) if len(g) <= MAX_NODES else {
        m for n in focus if n in g for m in (n, *g.predecessors(n), *g.successors(n))}  # fmt: skip
    sub = nx.DiGraph()
    sub.add_nodes_from(sorted(keep | focus))  # sorted: the layout must not depend on arrival order
    sub.add_edges_from(sorted((u, v, g[u][v]) for u, v in g.subgraph(keep).edges))
    return sub


def layout(g: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Positions in [0, 1]²: columns by call depth for a DAG, else a seeded spring layout."""
    if not len(g):
        return {}
    if nx.is_directed_acyclic_graph(g):
        columns = [sorted(layer) for layer in nx.topological_generations(g)]
        return {n: ((i + 0.5) / len(columns), (j + 0.5) / len(col)) for i, col in enumerate(columns)
                for j, n in enumerate(col)}  # fmt: skip
    pos = nx.spring_layout(g, seed=7)
    xs, ys = [p[0] for p in pos.values()], [p[1] for p in pos.values()]
    span_x, span_y = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    return {n: (0.05 + 0.9 * (x - min(xs)) / span_x, 0.05 + 0.9 * (y - min(ys)) / span_y) for n, (x, y) in pos.items()}


def _clip(x1: float, y1: float, x2: float, y2: float, hw: float, hh: float) -> tuple[float, float]:
    """Where the segment from a box centred at (x2, y2) towards (x1, y1) leaves the box."""
    dx, dy = x1 - x2, y1 - y2
    t = min(hw / abs(dx) if dx else math.inf, hh / abs(dy) if dy else math.inf, 1.0)
    return x2 + dx * t, y2 + dy * t


def graph_svg(g: nx.DiGraph, candidates: Sequence[str], anomalous: Iterable[str],
              hot_edges: Iterable[tuple[str, str]], width: int = 760, height: int = 380) -> str:  # fmt: skip
    """The graph with root-cause candidates ranked (``rc1``…), anomalous services and edges marked."""
    rank = {s: i + 1 for i, s in enumerate(candidates)}
    anomalous, hot = set(anomalous), set(hot_edges)
    sub = neighbourhood(g, [*rank, *anomalous])
    if not len(sub):
        return '<p class="muted">No dependency graph yet (no spans seen).</p>'
    pos = {n: (40 + x * (width - 80), 24 + y * (height - 48)) for n, (x, y) in layout(sub).items()}
    half = {n: (min(110.0, 7.0 * len(n) + 14) / 2, NODE_H / 2) for n in sub}
    out = [(f'<svg id="graph" class="graph" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="service dependency graph">'
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M0,0L10,5L0,10z"/></marker></defs>')]  # fmt: skip
    for u, v, e in sub.edges(data=True):
        (x1, y1), (x2, y2) = pos[u], pos[v]
        sx, sy = _clip(x2, y2, x1, y1, *half[u])
        ex, ey = _clip(x1, y1, x2, y2, *half[v])
        cls = "edge hot" if (u, v) in hot else "edge"
        tip = f"{u} → {v}: {e.get('calls', 0)} calls, {e.get('errors', 0)} errors"
        out.append(f'<line class="{cls}" data-edge="{escape(u)}→{escape(v)}" x1="{_n(sx)}" y1="{_n(sy)}" '
                   f'x2="{_n(ex)}" y2="{_n(ey)}" marker-end="url(#arrow)"><title>{escape(tip)}</title></line>')  # fmt: skip
    for n in sub:
        (x, y), (hw, hh) = pos[n], half[n]
        cls = ["node"] + (["anom"] if n in anomalous else []) + ([f"rc{min(rank[n], 3)}"] if n in rank else [])
        tip = n + (f" — root-cause candidate #{rank[n]}" if n in rank else "") + (" — anomalous" if n in anomalous else "")
        text = n if len(n) <= 15 else n[:14] + "…"
        out.append(f'<g class="{" ".join(cls)}" data-service="{escape(n)}"><title>{escape(tip)}</title>'
                   f'<rect x="{_n(x - hw)}" y="{_n(y - hh)}" width="{_n(2 * hw)}" height="{2 * hh}" rx="6"/>'
                   f'<text x="{_n(x)}" y="{_n(y + 4)}">{escape(text)}</text>')  # fmt: skip
        if n in rank:
            out.append(f'<text class="rank" x="{_n(x + hw)}" y="{_n(y - hh - 2)}">#{rank[n]}</text>')
        out.append("</g>")
    out.append("</svg>")
    return "".join(out)


# --- time series ---------------------------------------------------------------------------------


def chart_svg(title: str, ts: Sequence[int], values: Sequence[float], *, spans: Iterable[tuple[int, int]] = (),
              band: Forecast | None = None, markers: Iterable[tuple[int, str]] = (), threshold: float | None = None,
              width: int = 760, height: int = 170) -> str:  # fmt: skip
    """One series as a line, with anomaly spans shaded, a forecast band, change markers and its SLO line."""
    pts = [(t, v) for t, v in zip(ts, values, strict=True) if math.isfinite(v)]
    if not pts:
        return f'<p class="muted">{escape(title)}: no recent points.</p>'
    band_pts = list(zip(band.ts, band.lo, band.mean, band.hi, strict=True)) if band else []
    t0, t1 = pts[0][0], max(pts[-1][0], band_pts[-1][0] if band_pts else 0)
    ys = [v for _, v in pts] + [y for b in band_pts for y in (b[1], b[3]) if math.isfinite(y)]
    ys += [threshold] if threshold is not None else []
    lo, hi = min(ys), max(ys)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.1 or 1.0
    lo, hi = lo - pad, hi + pad
    left, right, top, bottom = 58, width - 10, 22, height - 20

    def x(t: int) -> float:
        return left + (right - left) * ((t - t0) / (t1 - t0) if t1 > t0 else 0.5)

    def y(v: float) -> float:
        return bottom - (bottom - top) * (v - lo) / (hi - lo)

    out = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(title)}">',
           f'<text class="title" x="{left}" y="14">{escape(title)}</text>',
           f'<rect class="plot" x="{left}" y="{top}" width="{right - left}" height="{bottom - top}"/>']  # fmt: skip
    for a, b in spans:
        a, b = max(a, t0), min(b, t1)
        if b >= a:
            out.append(f'<rect class="span" x="{_n(x(a))}" y="{top}" width="{_n(max(x(b) - x(a), 2.0))}" '
                       f'height="{bottom - top}"><title>anomalous from {_hhmm(a)} UTC</title></rect>')  # fmt: skip
    if band_pts:
        edge = [f"{_n(x(t))},{_n(y(h))}" for t, _, _, h in band_pts] + [f"{_n(x(t))},{_n(y(low))}" for t, low, _, _ in reversed(band_pts)]
        out.append(f'<polygon class="band" points="{" ".join(edge)}"><title>{escape(band.model if band else "")}: '
                   f'{band.interval if band else 0:.0%} interval</title></polygon>')  # fmt: skip
        out.append(f'<polyline class="forecast" points="{" ".join(f"{_n(x(t))},{_n(y(m))}" for t, _, m, _ in band_pts)}"/>')
    if threshold is not None:
        out.append(f'<line class="slo" x1="{left}" x2="{right}" y1="{_n(y(threshold))}" y2="{_n(y(threshold))}"/>'
                   f'<text class="slo" x="{right - 4}" y="{_n(y(threshold) - 3)}">SLO {_label(threshold)}</text>')  # fmt: skip
    shown = [(t, text) for t, text in markers if t0 <= t <= t1]
    for i, (t, text) in enumerate(shown):
        flip = x(t) > right - 120  # near the right edge the label goes left of its line
        out.append(f'<line class="marker" x1="{_n(x(t))}" x2="{_n(x(t))}" y1="{top}" y2="{bottom}"/>'
                   f'<text class="marker{" flip" if flip else ""}" x="{_n(x(t) - 3 if flip else x(t) + 3)}" '
                   f'y="{top + 10 + 11 * (i % 3)}">{escape(text)}</text>')  # labels staggered: changes come in bursts
    out.append(f'<polyline class="line" points="{" ".join(f"{_n(x(t))},{_n(y(v))}" for t, v in pts)}"/>')
    out.append(f'<text class="axis" x="{left - 4}" y="{top + 8}">{_label(hi)}</text>'
               f'<text class="axis" x="{left - 4}" y="{bottom}">{_label(lo)}</text>'
               f'<text class="axis start" x="{left}" y="{height - 5}">{_hhmm(t0)} UTC</text>'
               f'<text class="axis end" x="{right}" y="{height - 5}">{_hhmm(t1)} UTC</text></svg>')  # fmt: skip
    return "".join(out)

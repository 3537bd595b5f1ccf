"""HTML building blocks: the page frame and generic renderings of plain data, all escaped.

Pages are f-strings rather than templates: they are small, and one rule is easy to hold to
everywhere: every value goes through :func:`esc` (or a helper that calls it) on its way into
markup, because service names, series keys and log templates come from telemetry anyone can send.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from aiops import __version__

NAV = (("/", "Incidents"), ("/ui/models", "Models"), ("/ui/health", "Health"), ("/ui/config", "Configuration"))


def esc(value: Any) -> str:
    return escape(str(value), quote=True)


def when(unix_s: float | None) -> str:
    """A wall-clock or event time as UTC, or a dash."""
    if unix_s is None:
        return "—"
    return datetime.fromtimestamp(unix_s, UTC).strftime("%Y-%m-%d %H:%M:%S")


def when_ns(unix_nano: int | None) -> str:
    return when(None if unix_nano is None else unix_nano / 1e9)


def badge(text: str, kind: str = "") -> str:
    """A coloured label; ``kind`` picks the colour (``badge-open``, ``badge-critical``...)."""
    return f'<span class="badge badge-{esc(kind or text)}">{esc(text)}</span>'


def link(href: str, text: str, here: bool = False) -> str:
    current = ' class="here"' if here else ""
    return f'<a href="{esc(href)}"{current}>{esc(text)}</a>'


def page(title: str, body: str, here: str) -> str:
    """The frame every page shares. ``main#live`` is what the page script swaps on each refresh;
    the token form and notices sit outside it so a refresh never clears what someone is typing."""
    nav = "".join(link(href, text, href == here) for href, text in NAV)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)} · aiops</title>
<link rel="stylesheet" href="/ui/static/dashboard.css"><script src="/ui/static/dashboard.js" defer></script></head>
<body><header><strong class="brand">aiops</strong><nav>{nav}</nav>
<form id="token-form" autocomplete="off"><input id="token" type="password" placeholder="API token (to approve)"
 aria-label="API token"><button id="save-token" type="submit">Use token</button>
<button id="forget-token" type="button" hidden>Forget token</button><span id="token-state"></span></form>
<span id="live-state" class="muted"></span></header>
<div id="notice" role="status" aria-live="polite"></div>
<main id="live">{body}</main>
<footer class="muted">aiops {esc(__version__)} · times in UTC · JSON API at <a href="/docs">/docs</a></footer>
</body></html>"""


def table(rows: list[dict[str, Any]], columns: list[str] | None = None, cls: str = "") -> str:
    """Rows of plain data as a table; cell values rendered with :func:`value`."""
    if not rows:
        return '<p class="muted">None.</p>'
    columns = columns or list(dict.fromkeys(k for r in rows for k in r))
    head = "".join(f"<th>{esc(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{value(r.get(c))}</td>" for c in columns) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def value(v: Any) -> str:
    """Any JSON-like value as markup: mappings as key/value tables, lists of mappings as tables."""
    if v is None:
        return '<span class="muted">—</span>'
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return esc(f"{v:.4g}")
    if isinstance(v, dict):
        if not v:
            return '<span class="muted">{}</span>'
        rows = "".join(f"<tr><th>{esc(k)}</th><td>{value(x)}</td></tr>" for k, x in v.items())
        return f'<table class="kv">{rows}</table>'
    if isinstance(v, list):
        if v and all(isinstance(x, dict) for x in v):
            return table(v)
        return esc(", ".join(str(x) for x in v)) if v else '<span class="muted">none</span>'
    return esc(v)

// aiops dashboard: live refresh, the API token, Approve/Reject and the audit trail. No libraries.
// The page is re-fetched every REFRESH_MS and <main id="live"> swapped when the server's HTML changed.
// The token stays in this browser's localStorage and goes out only as a bearer header to this origin.
"use strict";
(() => {
  const KEY = "aiops.token";
  const REFRESH_MS = 2000;
  const $ = (id) => document.getElementById(id);
  const token = () => localStorage.getItem(KEY) || "";
  let lastHtml = null;
  let busy = false;
  let auditRows = null;

  function notice(text, ok) {
    const n = $("notice");
    n.textContent = text;
    n.className = ok ? "ok" : "error";
  }

  function showTokenState() {
    const has = Boolean(token());
    $("token").hidden = has;
    $("save-token").hidden = has;
    $("forget-token").hidden = !has;
    $("token-state").textContent = has ? "token in use" : "";
  }

  async function api(method, path, body) {
    const r = await fetch(path, {
      method,
      headers: { Authorization: "Bearer " + token(), "Content-Type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    const data = await r.json().catch(() => ({}));
    if (!r.ok) throw new Error(data.error || "HTTP " + r.status);
    return data;
  }

  function cell(tr, text) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }

  function renderAudit() {
    const box = $("audit");
    if (!box || auditRows === null) return;
    const table = document.createElement("table");
    table.id = "audit-table";
    table.innerHTML = "<thead><tr><th>at (UTC)</th><th>who</th><th>what</th><th>on</th><th>ok</th><th>details</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const row of auditRows) {
      const tr = document.createElement("tr");
      cell(tr, new Date(row.at * 1000).toISOString().replace("T", " ").slice(0, 19));
      cell(tr, row.who);
      cell(tr, row.action);
      cell(tr, row.target);
      cell(tr, row.ok ? "yes" : "no");
      cell(tr, JSON.stringify(row.detail).slice(0, 300));
      body.appendChild(tr);
    }
    table.appendChild(body);
    box.replaceChildren(table);
  }

  async function loadAudit() {
    const box = $("audit");
    if (!box || !token()) return;
    try {
      const targets = box.dataset.targets.split(",");
      const lists = await Promise.all(targets.map((t) => api("GET", "/audit?target=" + encodeURIComponent(t))));
      auditRows = lists.flat().sort((a, b) => a.seq - b.seq);
      renderAudit();
    } catch (e) {
      box.textContent = "Audit trail: " + e.message;
    }
  }

  async function refresh() {
    if (busy || document.hidden) return;
    busy = true;
    try {
      const r = await fetch(location.href, { headers: { Accept: "text/html" }, cache: "no-store" });
      if (!r.ok) throw new Error("HTTP " + r.status);
      const html = await r.text();
      if (html !== lastHtml) {
        const fresh = new DOMParser().parseFromString(html, "text/html").getElementById("live");
        if (fresh) $("live").replaceChildren(...fresh.childNodes);
        lastHtml = html;
        renderAudit();
      }
      await loadAudit();
      $("live-state").textContent = "live · " + new Date().toLocaleTimeString();
    } catch (e) {
      $("live-state").textContent = "offline, retrying (" + e.message + ")";
    } finally {
      busy = false;
    }
  }

  document.addEventListener("click", async (ev) => {
    const button = ev.target.closest("button[data-decide]");
    if (!button) return;
    if (!token()) {
      notice("Enter an API token with a role that may approve, then press the button again.", false);
      $("token").focus();
      return;
    }
    const decision = button.dataset.decide;
    button.disabled = true;
    try {
      const a = await api("POST", "/approvals/" + encodeURIComponent(button.dataset.approval), { decision });
      notice((decision === "approve" ? "Approved" : "Rejected") + ": " + (a.playbook || a.id) + " is now " + a.status + ".", true);
    } catch (e) {
      notice("Refused: " + e.message, false);
      button.disabled = false;
    }
    lastHtml = null;
    refresh();
  });

  document.addEventListener("submit", async (ev) => {
    const form = ev.target.closest("form#inject");
    if (!form) return;
    ev.preventDefault();
    if (!token()) {
      notice("Enter an approver's API token first.", false);
      return;
    }
    const f = new FormData(form);
    try {
      const t = await api("POST", "/demo/faults", {
        service: f.get("service"), kind: f.get("kind"), duration_s: Number(f.get("duration_s")),
      });
      notice("Injected: " + t.fault + " on " + t.service + ".", true);
    } catch (e) {
      notice("Refused: " + e.message, false);
    }
  });

  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const value = $("token").value.trim();
    $("token").value = "";
    if (value) localStorage.setItem(KEY, value);
    showTokenState();
    loadAudit();
  });

  $("forget-token").addEventListener("click", () => {
    localStorage.removeItem(KEY);
    auditRows = null;
    showTokenState();
    lastHtml = null;
    refresh();
  });

  showTokenState();
  loadAudit();
  setInterval(refresh, REFRESH_MS);
})();

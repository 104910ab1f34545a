/**
 * The status page the admin listener serves on `/`: one self-contained HTML document (no CDN,
 * no build step at run time; it is compiled into dist/ with the rest). Its script polls
 * GET /admin/status every 2 s and renders listeners, routes, pools and members, splits, the
 * cache, sidecars and the last reloads. Every value is set with textContent (never as HTML),
 * and the Content-Security-Policy allows only this page's own script (by hash) and style.
 */
import { createHash } from 'node:crypto'

/** How often the page asks for a new status. */
export const POLL_MS = 2000

const STYLE = `
:root { color-scheme: light dark; --fg: #1b1f24; --muted: #5b6570; --bg: #fff; --card: #f6f8fa; --line: #d8dee4;
  --ok: #1a7f37; --warn: #9a6700; --bad: #cf222e; --info: #0969da; }
@media (prefers-color-scheme: dark) { :root { --fg: #e6edf3; --muted: #8d96a0; --bg: #0d1117; --card: #161b22; --line: #30363d;
  --ok: #3fb950; --warn: #d29922; --bad: #f85149; --info: #58a6ff; } }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: baseline; padding: .8rem 1.2rem; border-bottom: 1px solid var(--line); position: sticky; top: 0; background: var(--bg); }
header h1 { font-size: 1.15rem; margin: 0; }
main { padding: .5rem 1.2rem 2rem; max-width: 1400px; }
section { margin-top: 1.2rem; }
h2 { font-size: 1rem; margin: 0 0 .4rem; }
h3 { font-size: .95rem; margin: .8rem 0 .3rem; }
table { border-collapse: collapse; width: 100%; background: var(--card); border: 1px solid var(--line); border-radius: 6px; overflow: hidden; }
th, td { text-align: left; padding: .3rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .02em; }
tr:last-child td { border-bottom: 0; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.muted { color: var(--muted); }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; font-weight: 600; border: 1px solid currentColor; }
.ok { color: var(--ok); } .warn { color: var(--warn); } .bad { color: var(--bad); } .info { color: var(--info); }
.bar { display: inline-block; height: .6rem; background: var(--info); border-radius: 2px; vertical-align: middle; margin-right: .4rem; }
.meta { display: flex; flex-wrap: wrap; gap: .3rem 1.2rem; margin-bottom: .3rem; }
ul.changes { margin: .2rem 0 0; padding-left: 1.1rem; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; font-size: .85em; }
#error { display: none; }
`

const SCRIPT = `
"use strict";
const POLL_MS = ${POLL_MS};
const $ = (id) => document.getElementById(id);
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) e.setAttribute(k, String(v));
  for (const c of children.flat()) if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
  return e;
}
const dash = "\\u2013";
const num = (x, digits) => x === null || x === undefined ? dash : Number(x).toLocaleString("en-US", { maximumFractionDigits: digits === undefined ? 2 : digits });
const pct = (x) => x === null || x === undefined ? dash : (x * 100).toFixed(1) + "%";
function bytes(n) {
  if (n === null || n === undefined) return dash;
  const u = ["B", "KiB", "MiB", "GiB", "TiB"]; let i = 0; let v = n;
  while (v >= 1024 && i < u.length - 1) { v /= 1024; i++; }
  return (i === 0 ? v : v.toFixed(1)) + " " + u[i];
}
const badge = (text, cls) => el("span", { class: "badge " + cls }, text);
function table(headers, rows, numeric) {
  const nums = new Set(numeric || []);
  return el("table", {},
    el("thead", {}, el("tr", {}, headers.map((h, i) => el("th", { class: nums.has(i) ? "num" : undefined }, h)))),
    el("tbody", {}, rows.length === 0
      ? el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none"))
      : rows.map((r) => el("tr", {}, r.map((c, i) => el("td", { class: nums.has(i) ? "num" : undefined }, c))))));
}
function memberHealth(m) {
  const parts = [];
  if (m.drained) parts.push(badge("drained", "info"));
  if (m.ejected_for_ms > 0) parts.push(badge("ejected " + Math.ceil(m.ejected_for_ms / 1000) + " s", "bad"));
  if (m.health_check === "down") parts.push(badge("down", "bad"));
  else if (m.ejected_for_ms <= 0 && m.healthy) parts.push(badge("healthy", "ok"));
  else if (!m.healthy && m.ejected_for_ms <= 0) parts.push(badge("unhealthy", "bad"));
  if (m.workers !== undefined && m.workers > 1 && m.healthy_workers !== m.workers) parts.push(el("span", { class: "muted" }, " healthy in " + m.healthy_workers + "/" + m.workers + " workers"));
  if (!m.available && !m.drained) parts.push(el("span", { class: "muted" }, " (not picked)"));
  return el("span", {}, parts);
}
function renderHeader(s) {
  $("mode").textContent = s.mode === "workers" ? "workers mode: " + s.workers + " worker" + (s.workers === 1 ? "" : "s") : "single process";
  $("ready").replaceChildren(s.ready ? badge("ready", "ok") : badge("not ready", "bad"));
  $("updated").textContent = "updated " + new Date(s.generated_at).toLocaleTimeString();
  $("window").textContent = s.window_s === null ? "rates: waiting for a second sample" : "rates over the last " + s.window_s + " s";
}
function renderListeners(s) {
  $("listeners").replaceChildren(table(["Name", "Address", "Protocol", "TLS", "HTTP/2"],
    s.listeners.map((l) => [l.name, el("code", {}, l.address), l.protocol + (l.pool !== undefined ? " to pool " + l.pool : "") + (l.redirect_https !== null ? " (redirects to https:" + l.redirect_https + ")" : ""), l.tls ? "yes" : "no", l.http2 === null ? "no" : l.http2])));
}
function renderRoutes(s) {
  $("routes").replaceChildren(table(["Route", "Host", "Path", "Methods", "Pool / split", "Cache"],
    s.routes.map((r) => [r.name, r.host === null ? el("span", { class: "muted" }, "any") : r.host, el("code", {}, r.path_prefix), r.methods === null ? el("span", { class: "muted" }, "any") : r.methods.join(", "),
      r.split !== null ? "split " + r.split : r.pool, r.cache ? badge("cached", "ok") : el("span", { class: "muted" }, "no")])));
}
function renderPools(s) {
  const out = [];
  for (const p of s.pools) {
    out.push(el("h3", {}, "Pool " + p.name));
    out.push(el("div", { class: "meta muted" },
      el("span", {}, "balancer " + p.balancer), el("span", {}, "in flight " + p.in_flight), el("span", {}, "queued " + p.queued),
      p.panic ? badge("panic: using every member", "bad") : null));
    out.push(table(["Member", "URL", "Health", "Weight", "In flight", "Req/s", "Errors/s", "p99 ms", "Requests", "Errors", "Ejections"],
      p.members.map((m) => [m.name, el("code", {}, m.url), memberHealth(m), num(m.weight), num(m.in_flight, 0), num(m.rps), num(m.errors_per_s),
        num(m.p99_ms === null ? null : m.p99_ms, 1), num(m.requests, 0), num(m.failures, 0), num(m.ejections, 0)]),
      [3, 4, 5, 6, 7, 8, 9, 10]));
  }
  $("pools").replaceChildren(...(out.length === 0 ? [el("p", { class: "muted" }, "no pools")] : out));
}
function renderSplits(s) {
  const out = [];
  for (const sp of s.splits) {
    out.push(el("h3", {}, "Split " + sp.name), el("div", { class: "meta muted" }, el("span", {}, "route " + sp.route), el("span", {}, "assignments/s " + num(sp.requests_per_s))));
    out.push(table(["Variant", "Pool", "Configured", "Live share", "Share since start", "Assigned"],
      sp.variants.map((v) => {
        const share = v.share !== null ? v.share : v.share_total;
        return [v.name, v.pool, pct(v.weight_share),
          el("span", {}, el("span", { class: "bar", "data-w": share === null ? 0 : share }), pct(v.share)),
          pct(v.share_total), num(v.assigned, 0)];
      }), [2, 4, 5]));
  }
  $("splits").replaceChildren(...(out.length === 0 ? [el("p", { class: "muted" }, "no splits")] : out));
  for (const b of document.querySelectorAll(".bar")) b.style.width = Math.round(Number(b.dataset.w) * 120) + "px";
}
function renderCache(s) {
  const c = s.cache;
  if (c === null || !c.enabled) { $("cache").replaceChildren(el("p", { class: "muted" }, "no route caches")); return; }
  const lookups = Object.entries(c.lookups).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([k, v]) => k + " " + num(v, 0)).join(", ");
  $("cache").replaceChildren(table(["Store", "Hit ratio (live)", "Hit ratio since start", "Entries", "Size", "Lookups"],
    [[c.store, pct(c.hit_ratio), pct(c.hit_ratio_total), num(c.entries, 0), bytes(c.bytes), lookups || dash]], [1, 2, 3, 4]));
}
function renderSidecars(s) {
  $("sidecars").replaceChildren(table(["Sidecar", "State", "PID", "Restarts", "Uptime s", "Last exit"],
    s.sidecars.map((x) => [x.name, badge(x.state, x.state === "running" ? "ok" : x.state === "stopped" ? "muted" : "warn"), x.pid === null ? dash : x.pid, num(x.restarts, 0), num(x.uptime_s, 1), x.last_exit === null ? dash : x.last_exit]),
    [3, 4]));
}
function renderReloads(s) {
  $("reloads").replaceChildren(table(["Time", "Result", "Changes"],
    s.reloads.map((r) => {
      const sum = r.summary.live + r.summary.rebuild + r.summary.restart;
      const head = sum === 0 ? "no changes" : sum + " change" + (sum === 1 ? "" : "s") + " (live " + r.summary.live + ", rebuild " + r.summary.rebuild + ", restart " + r.summary.restart + ")";
      const list = el("ul", { class: "changes" }, r.changes.map((c) => el("li", {}, el("code", {}, c.path), " ", badge(c.class, c.class === "restart" ? "warn" : "info"), " " + c.detail)));
      if (r.more_changes > 0) list.append(el("li", { class: "muted" }, "and " + r.more_changes + " more"));
      return [new Date(r.at).toLocaleString(), r.ok ? badge("applied", "ok") : badge("failed", "bad"),
        el("div", {}, head, r.error !== null ? el("div", { class: "bad" }, r.error) : null, r.changes.length > 0 ? list : null)];
    })));
}
async function poll() {
  try {
    const res = await fetch("admin/status", { cache: "no-store", headers: { accept: "application/json" } });
    if (!res.ok) throw new Error("GET /admin/status answered " + res.status);
    const s = await res.json();
    renderHeader(s); renderListeners(s); renderRoutes(s); renderPools(s); renderSplits(s); renderCache(s); renderSidecars(s); renderReloads(s);
    $("error").style.display = "none";
    document.body.dataset.loaded = "true";
  } catch (err) {
    $("error").style.display = "block";
    $("error").textContent = "Status not available: " + err.message + " (retrying)";
  }
  setTimeout(poll, POLL_MS);
}
poll();
`

const scriptHash = createHash('sha256').update(SCRIPT).digest('base64')
const styleHash = createHash('sha256').update(STYLE).digest('base64')

/** Only this page's own script and style; data comes from /admin/status on the same origin. */
export const STATUS_PAGE_CSP = `default-src 'none'; script-src 'sha256-${scriptHash}'; style-src 'sha256-${styleHash}'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'`

export const STATUS_PAGE_HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchyard status</title>
<style>${STYLE}</style>
</head>
<body>
<header>
<h1>Switchyard status</h1>
<span id="mode" class="muted">loading</span>
<span id="ready"></span>
<span id="updated" class="muted"></span>
<span id="window" class="muted"></span>
</header>
<main>
<p id="error" class="bad"></p>
<section><h2>Listeners</h2><div id="listeners"></div></section>
<section><h2>Routes</h2><div id="routes"></div></section>
<section><h2>Pools</h2><div id="pools"></div></section>
<section><h2>Splits</h2><div id="splits"></div></section>
<section><h2>Cache</h2><div id="cache"></div></section>
<section><h2>Sidecars</h2><div id="sidecars"></div></section>
<section><h2>Last reloads</h2><div id="reloads"></div></section>
</main>
<script>${SCRIPT}</script>
</body>
</html>
`

// The damselfly console: one page over the REST API (/api/v1). The token lives in this tab's
// sessionStorage and is sent only as "Authorization: Bearer"; API text is only ever set with
// textContent, never parsed as HTML.
"use strict";

const API = "/api/v1";
const REFRESH_MS = 2000;
const KEY = "damselfly-token";
let timer = null;

function token() { return sessionStorage.getItem(KEY) || ""; }

async function api(method, path, body) {
  const init = { method, headers: { Authorization: "Bearer " + token() } };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(API + path, init);
  if (response.status === 401) { logout("the token was refused (401)"); throw new Error("401"); }
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) { throw new Error(describe(response.status, data)); }
  return data;
}

function describe(status, data) {
  let detail = data && data.detail;
  if (Array.isArray(detail)) { detail = detail.map((d) => d.msg).join("; "); }
  return status + ": " + (detail || "request failed");
}

function showError(message) {
  const box = document.getElementById("error");
  box.textContent = message || "";
  box.hidden = !message;
}

function cell(row, value, className) {
  const td = document.createElement("td");
  td.textContent = value === null || value === undefined || value === "" ? "-" : String(value);
  if (className) { td.className = className; }
  row.appendChild(td);
  return td;
}

function button(row, label, action) {
  const td = document.createElement("td");
  const b = document.createElement("button");
  b.textContent = label;
  b.addEventListener("click", () => action().then(refresh).catch((e) => showError(e.message)));
  td.appendChild(b);
  row.appendChild(td);
}

function fill(id, rows, render) {
  const body = document.querySelector("#" + id + " tbody");
  body.replaceChildren();
  for (const item of rows) {
    const row = document.createElement("tr");
    row.dataset.id = item.id;
    render(row, item);
    body.appendChild(row);
  }
}

function size(bps) { return bps ? (bps / 1048576).toFixed(1) + " MiB/s" : "-"; }
function when(iso) { return iso ? iso.replace("T", " ").slice(0, 19) : "-"; }
function brief(values) { return values ? (values.pattern || values.scope || "") + (values.reason ? " (" + values.reason + ")" : "") : "∅"; }

// The rollout figures (GET /rollout): one small SVG line chart each, drawn with DOM calls.
const SVG = "http://www.w3.org/2000/svg";
const CHARTS = [
  { id: "cold-start", title: "Cold start (s)", lines: [["p50", "cold_start_p50"], ["p95", "cold_start_p95"]], unit: (v) => v.toFixed(2) + " s" },
  { id: "bytes", title: "Bytes per minute", lines: [["origin", "origin_bytes"], ["peers", "peer_bytes"]], unit: (v) => (v / 1048576).toFixed(1) + " MiB" },
  { id: "hit-rate", title: "Cache hit rate", lines: [["hit rate", "hit_rate"]], unit: (v) => (100 * v).toFixed(0) + " %" },
  { id: "failures", title: "Failed downloads", lines: [["failed", "failed_downloads"]], unit: (v) => String(v) },
];

function chart(spec, points) {
  const figure = document.createElement("figure");
  figure.dataset.chart = spec.id;
  const caption = document.createElement("figcaption");
  caption.textContent = spec.title;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 300 100");
  svg.setAttribute("preserveAspectRatio", "none");
  const values = spec.lines.flatMap(([, key]) => points.map((p) => p[key]).filter((v) => v !== null));
  const top = Math.max(1e-9, ...values);
  const legend = document.createElement("div");
  spec.lines.forEach(([label, key], n) => {
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("class", "line-" + n);
    const step = 300 / Math.max(1, points.length - 1);
    line.setAttribute("points", points.map((p, i) => p[key] === null ? null : (i * step).toFixed(1) + "," + (98 - 96 * p[key] / top).toFixed(1)).filter(Boolean).join(" "));
    svg.appendChild(line);
    const last = line.getAttribute("points").split(" ").filter(Boolean).pop();
    if (last) {  // a line of one point draws nothing: mark the latest value
      const dot = document.createElementNS(SVG, "circle");
      dot.setAttribute("class", "line-" + n);
      dot.setAttribute("cx", last.split(",")[0]);
      dot.setAttribute("cy", last.split(",")[1]);
      dot.setAttribute("r", "2.5");
      svg.appendChild(dot);
    }
    const latest = points.map((p) => p[key]).filter((v) => v !== null).pop();
    const item = document.createElement("span");
    item.className = "legend-" + n;
    item.dataset.latest = latest === undefined ? "" : String(latest);
    item.textContent = label + ": " + (latest === undefined ? "-" : spec.unit(latest)) + "  ";
    legend.appendChild(item);
  });
  figure.append(caption, svg, legend);
  return figure;
}

function drawCharts(points) {
  document.getElementById("charts").replaceChildren(...CHARTS.map((spec) => chart(spec, points)));
}

async function refresh() {
  const [members, rules, audit, limits, jobs, rollout] = await Promise.all([
    api("GET", "/members"), api("GET", "/blocklist"), api("GET", "/audit?limit=50"),
    api("GET", "/ratelimits"), api("GET", "/preheat?limit=50"), api("GET", "/rollout?minutes=60&step=60"),
  ]);
  drawCharts(rollout);
  fill("members", members, (r, m) => {
    [m.id, m.role, m.hostname, m.ip, m.port, m.idc].forEach((v) => cell(r, v));
    cell(r, m.alive ? "alive" : "dead", m.alive ? "alive" : "dead");
    cell(r, when(m.last_seen));
  });
  fill("rules", rules, (r, rule) => {
    [rule.id, rule.kind, rule.pattern, rule.reason, when(rule.until), rule.author].forEach((v) => cell(r, v));
    button(r, "Remove", () => api("DELETE", "/blocklist/" + rule.id));
  });
  fill("audit", audit, (r, e) => {
    [e.id, when(e.at), e.actor, e.action, e.entity + " " + e.entity_id].forEach((v) => cell(r, v));
    cell(r, brief(e.before) + " → " + brief(e.after));
    button(r, "Roll back", () => api("POST", "/audit/" + e.id + "/rollback"));
  });
  fill("limits", limits, (r, l) => {
    [l.scope, l.host, size(l.download_bps), size(l.upload_bps), size(l.back_to_source_bps),
     l.requests_per_second].forEach((v) => cell(r, v));
  });
  fill("jobs", jobs, (r, j) => {
    const done = j.files.reduce((sum, f) => sum + f.completed_length, 0);
    [j.id, j.kind, j.url].forEach((v) => cell(r, v));
    cell(r, j.state, j.state);
    [j.files.length, done, j.created_by, when(j.updated_at)].forEach((v) => cell(r, v));
  });
}

function guessKind(url) {
  if (url.startsWith("hf://") || url.startsWith("modelscope://")) { return "repo"; }
  return url.includes("://") ? "url" : "image";
}

async function addRule(event) {
  event.preventDefault();
  const until = document.getElementById("rule-until").value;
  await api("POST", "/blocklist", {
    kind: document.getElementById("rule-kind").value,
    pattern: document.getElementById("rule-pattern").value.trim(),
    reason: document.getElementById("rule-reason").value.trim(),
    until: until ? until + "T00:00:00Z" : null,
  });
  event.target.reset();
}

async function addJob(event) {
  event.preventDefault();
  const url = document.getElementById("job-url").value.trim();
  const include = document.getElementById("job-include").value.split(",").map((s) => s.trim()).filter(Boolean);
  await api("POST", "/preheat", { kind: guessKind(url), url, include });
  event.target.reset();
}

function submitting(handler) {
  return (event) => handler(event).then(() => { showError(""); return refresh(); })
    .catch((e) => showError(e.message));
}

async function login(event) {
  event.preventDefault();
  sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
  document.getElementById("token").value = "";
  await start();
}

function logout(message) {
  sessionStorage.removeItem(KEY);
  clearInterval(timer);
  document.getElementById("app").hidden = true;
  document.getElementById("logout").hidden = true;
  document.getElementById("login").hidden = false;
  document.getElementById("who").textContent = "";
  showError(message || "");
}

async function start() {
  if (!token()) { return; }
  let me;
  try { me = await api("GET", "/me"); await refresh(); } catch (e) { showError(e.message); return; }
  showError("");
  document.getElementById("login").hidden = true;
  document.getElementById("app").hidden = false;
  document.getElementById("logout").hidden = false;
  document.getElementById("who").textContent = "logged in as " + me.name + " (" + me.role + ")";
  clearInterval(timer);
  timer = setInterval(() => refresh().catch((e) => showError(e.message)), REFRESH_MS);
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("login-form").addEventListener("submit", (e) => login(e).catch((x) => showError(x.message)));
  document.getElementById("logout").addEventListener("click", () => logout(""));
  document.getElementById("rule-form").addEventListener("submit", submitting(addRule));
  document.getElementById("job-form").addEventListener("submit", submitting(addJob));
  start();
});

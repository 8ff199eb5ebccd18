// The line-side page: live view, rejects grid, model versions. No framework, no build step, nothing from a CDN.
"use strict";

const $ = (id) => document.getElementById(id);
let me = { may_operate: false, may_view: false };
let lastFrame = -1;
let lastRejectKey = null;
let current = "live";
let shownVersion = null;

function fmt(x, digits = 4) { return x === null || x === undefined ? "–" : Number(x).toPrecision(digits); }

function say(text) {
  const m = $("message");
  m.textContent = text || "";
  m.hidden = !text;
}

async function api(path, body) {
  const opts = body === undefined ? {} : { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
  const res = await fetch(path, { credentials: "same-origin", ...opts });
  const data = res.headers.get("Content-Type") === "application/json" ? await res.json() : null;
  if (!res.ok && !(data && "accepted" in data)) throw new Error((data && data.error) || res.statusText);
  return data;
}

function show(view) {
  current = view;
  for (const v of ["live", "rejects", "model"]) {
    $("view-" + v).hidden = v !== view;
    $("tab-" + v).classList.toggle("active", v === view);
  }
  if (view === "rejects") loadRejects();
  if (view === "model") loadVersions();
}

function plot(canvas, values, opts) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  if (!values.length) return;
  const hi = Math.max(...values, opts.mark || 0) * 1.1 || 1;
  ctx.strokeStyle = "#3b82c4"; ctx.fillStyle = "#3b82c4";
  if (opts.bars) {
    const bw = w / values.length;
    values.forEach((v, i) => ctx.fillRect(i * bw + 1, h - (v / hi) * (h - 4), bw - 2, (v / hi) * (h - 4)));
  } else {
    ctx.beginPath();
    values.forEach((v, i) => { const x = (i / Math.max(values.length - 1, 1)) * w, y = h - (v / hi) * (h - 4); i ? ctx.lineTo(x, y) : ctx.moveTo(x, y); });
    ctx.stroke();
    ctx.fillStyle = "#8a94a3"; ctx.fillText(`${fmt(values[values.length - 1], 3)} ms`, 4, 12);
  }
}

function histogram(canvas, hist, threshold) {
  plot(canvas, hist.counts || [], { bars: true });
  if (!hist.edges || !hist.edges.length) return;
  const ctx = canvas.getContext("2d");
  const lo = hist.edges[0], hi = hist.edges[hist.edges.length - 1];
  const x = ((threshold - lo) / (hi - lo)) * canvas.width;
  ctx.strokeStyle = "#d9433b"; ctx.lineWidth = 2;
  ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, canvas.height); ctx.stroke(); ctx.lineWidth = 1;
  ctx.fillStyle = "#d9433b"; ctx.fillText(`threshold ${fmt(threshold, 3)}`, Math.min(x + 4, canvas.width - 90), 12);
}

function render(s) {
  $("status").textContent = s.status.status;
  $("status").className = "status " + s.status.status;
  $("status-reason").textContent = s.status.reason || "";
  $("version").textContent = s.version;
  if (s.version !== shownVersion) { shownVersion = s.version; if (current === "model") loadVersions(); }
  $("count-ok").textContent = s.counts.OK;
  $("count-ng").textContent = s.counts.NG;
  $("count-nd").textContent = s.counts["NO-DECISION"];
  $("fps").textContent = s.counts.fps;
  const shift = s.shift || {};
  $("shift").hidden = !shift.since;
  if (shift.since) {
    const c = shift.counts;
    $("shift").textContent = `this shift, since ${new Date(shift.since * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ` +
      `OK ${c.OK} · NG ${c.NG} · NO-DECISION ${c["NO-DECISION"]}`;
  }
  $("reject-count").textContent = s.rejects;
  const l = s.latest || {};
  if (l.verdict) {
    $("verdict").textContent = l.verdict;
    $("verdict").className = "verdict " + l.verdict;
    $("live-caption").textContent = `frame ${l.id}` + (l.part ? ` · part ${l.part}` : "") + ` · score ${fmt(l.score)} / threshold ${fmt(l.threshold)} · v${l.version}`;
    const rows = [["fused", l.score], ...Object.entries(l.heads || {})];
    $("heads").tBodies[0].innerHTML = rows.map(([k, v]) => `<tr><th>${k}</th><td>${fmt(v)}</td></tr>`).join("");
    const select = $("head-filter");
    for (const k of Object.keys(l.heads || {})) {
      if (![...select.options].some((o) => o.value === k)) select.add(new Option(k, k));
    }
  }
  if (l.id !== undefined && l.id !== lastFrame && current === "live") {
    lastFrame = l.id;
    $("live-image").src = `/api/live.jpg?frame=${l.id}`;
  }
  plot($("latency"), s.latency_ms || [], {});
  histogram($("histogram"), s.histogram || {}, s.threshold);
  $("notes").innerHTML = (s.notes || []).slice(-6).reverse().map((n) => `<li>${n.kind}: ${escapeHtml(n.detail)}</li>`).join("");
  // the grid is not redrawn under the operator's hand: newer rejects wait behind a button
  const fresh = current === "rejects" && s.newest_reject && s.newest_reject !== lastRejectKey;
  $("new-rejects").hidden = !fresh;
}

function escapeHtml(t) { return String(t).replace(/[&<>"]/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" }[c])); }

async function loadRejects() {
  const head = $("head-filter").value;
  const data = await api("/api/rejects" + (head ? `?head=${encodeURIComponent(head)}` : ""));
  lastRejectKey = data.rejects.length ? data.rejects[0].key : null;
  $("reject-grid").innerHTML = data.rejects.map((r) => {
    const heads = Object.entries(r.heads || {}).map(([k, v]) => `${k} ${fmt(v, 3)}`).join(" · ");
    const when = r.time ? new Date(r.time * 1000).toLocaleTimeString() : "";
    const pic = r.image ? `<img src="/api/rejects/${r.key}.jpg" alt="reject ${r.id}">` : `<div class="noimg">no frame: ${escapeHtml(r.reason || "")}</div>`;
    const actions = r.image && me.may_operate ? `<div class="actions">
        <button class="review-good" data-key="${r.key}">Good (false reject)</button>
        <button class="review-defect" data-key="${r.key}">Defect (confirmed)</button></div>` : "";
    return `<div class="card ${r.review ? "reviewed-" + r.review : ""}" data-key="${r.key}">${pic}
      <div><b>${r.verdict}</b> frame ${r.id}${r.part ? " · part " + escapeHtml(r.part) : ""} · ${when}</div>
      <div>score ${fmt(r.score)} / ${fmt(r.threshold)} · v${r.version ?? "–"}</div><div>${heads}</div>
      <div class="review-label">${r.review ? "reviewed: " + r.review : ""}</div>${actions}</div>`;
  }).join("");
}

async function loadVersions() {
  const data = await api("/api/versions");
  $("current-version").textContent = data.current ?? "–";
  $("versions").tBodies[0].innerHTML = data.versions.map((v) =>
    `<tr><td>${v.version}${v.version === data.current ? " (current)" : ""}</td><td>${escapeHtml(v.made || "")}</td><td>${escapeHtml(v.by || "")}</td><td>${escapeHtml(v.why || "")}</td></tr>`).join("");
  $("audit").tBodies[0].innerHTML = data.audit.slice().reverse().map((a) => {
    const { time, who, action, ...rest } = a;
    const detail = action.startsWith("refit") ? `version ${rest.version ?? "–"} from ${rest.parent}; ${(rest.reasons || []).join("; ")}` : JSON.stringify(rest);
    return `<tr><td>${escapeHtml(time)}</td><td>${escapeHtml(who)}</td><td>${escapeHtml(action)}</td><td>${escapeHtml(detail)}</td></tr>`;
  }).join("");
}

async function review(key, label) {
  try {
    await api("/api/review", { key, label });
    say("");
    const card = document.querySelector(`.card[data-key="${key}"]`);
    card.classList.remove("reviewed-good", "reviewed-defect");
    card.classList.add("reviewed-" + label);
    card.querySelector(".review-label").textContent = "reviewed: " + label;
  } catch (e) { say(e.message); }
}

async function refit() {
  $("refit").disabled = true;
  $("refit-result").textContent = "refitting…";
  try {
    const r = await api("/api/refit", {});
    const lines = [r.summary, ...(r.models || []).map((m) => `${m.model} (${m.backend}): threshold ${fmt(m.old)} → ${fmt(m.new)}; confirmed good flagged ${m.goods_flagged_before} → ${m.goods_flagged_after}; confirmed defects caught ${m.defects_caught_after}/${m.defect_after.length}`),
      ...(r.heads || []).map((h) => `${h.file}: head statistics updated from ${h.frames} frames (${h.library})` + (h.local ? `, ${h.local.new_kept} of ${h.local.new_patches} new patches kept in the memory` : "")),
      ...(r.notes || [])];
    $("refit-result").textContent = lines.join("\n");
  } catch (e) { $("refit-result").textContent = e.message; }
  $("refit").disabled = !me.may_operate;
  loadVersions();
}

async function rollback() {
  try { const r = await api("/api/rollback", {}); $("refit-result").textContent = `rolled back to version ${r.version}`; } catch (e) { $("refit-result").textContent = e.message; }
  loadVersions();
}

async function whoami() {
  me = await api("/api/me");
  $("user").textContent = me.name ? `${me.name} (${me.role})` : "viewer";
  for (const b of document.querySelectorAll(".operator")) b.disabled = !me.may_operate;
  $("login-form").hidden = !!me.name;
}

let events = null;
function connect() {
  if (events) return;
  events = new EventSource("/api/events");
  events.onmessage = (e) => render(JSON.parse(e.data));
  events.onerror = () => { $("status-reason").textContent = "connection to the line lost; retrying…"; };
}

document.querySelectorAll(".tab").forEach((t) => t.addEventListener("click", () => show(t.dataset.view)));
$("head-filter").addEventListener("change", loadRejects);
$("new-rejects").addEventListener("click", loadRejects);
$("reject-grid").addEventListener("click", (e) => {
  const b = e.target.closest("button");
  if (b) review(b.dataset.key, b.classList.contains("review-good") ? "good" : "defect");
});
$("refit").addEventListener("click", refit);
$("rollback").addEventListener("click", rollback);
$("login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  try { await api("/api/login", { token: $("token").value }); $("token").value = ""; say(""); await whoami(); connect(); } catch (err) { say(err.message); }
});

whoami().then(() => { if (me.may_view) connect(); else say("log in with a token to see the line"); });

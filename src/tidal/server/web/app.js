// Tidal's web view: a query box (EQL, CorQL, SQL) with a histogram and a table, an
// entity's timeline on a time axis, a correlation's events with the gaps between
// them, and a live pane of correlations over the server's Server-Sent Events.
// Plain DOM and SVG: no build step, no library.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b",
                 "#e377c2", "#17becf", "#bcbd22", "#7f7f7f"];
const $ = (id) => document.getElementById(id);

// -- the server --------------------------------------------------------------------
function token() { return $("token").value.trim(); }

async function api(path, options = {}) {
  const headers = {"Accept": "application/json", ...(options.headers || {})};
  if (token()) headers["Authorization"] = "Bearer " + token();
  const got = await fetch(path, {...options, headers});
  const text = await got.text();
  let body = null;
  try { body = JSON.parse(text); } catch (e) { body = null; }
  if (!got.ok) {
    const message = body && body.error ? (body.error.message || body.error.reason) : text;
    throw new Error(`${got.status}: ${message}`);
  }
  return body;
}

function status(id, text, error = false) {
  const el = $(id);
  el.textContent = text;
  el.classList.toggle("error", error);
}

// RFC 3339 text (to the nanosecond) → milliseconds since the epoch
function ms(text) {
  if (typeof text !== "string") return NaN;
  return Date.parse(text.replace(/(\.\d{3})\d*/, "$1").replace(/(\d)$/, "$1Z"));
}

// -- drawing ---------------------------------------------------------------------------
function el(name, attrs = {}, text = null) {
  const node = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (text !== null) node.textContent = text;
  return node;
}

function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

function frame(svg) {
  clear(svg);
  svg.classList.add("drawn");
  const width = svg.clientWidth || 800, height = svg.clientHeight || 120;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  return {width, height, left: 40, right: width - 10, top: 10, bottom: height - 22};
}

function timeAxis(svg, box, t0, t1) {
  svg.appendChild(el("line", {class: "axis", x1: box.left, x2: box.right, y1: box.bottom,
                              y2: box.bottom}));
  const label = (t) => new Date(t).toISOString().replace(".000Z", "Z");
  svg.appendChild(el("text", {x: box.left, y: box.bottom + 15}, label(t0)));
  svg.appendChild(el("text", {x: box.right, y: box.bottom + 15, "text-anchor": "end"},
                     label(t1)));
  const span = Math.max(1, t1 - t0);
  return (t) => box.left + (box.right - box.left) * (t - t0) / span;
}

function drawHistogram(svg, times) {
  const ok = times.filter((t) => !isNaN(t));
  if (!ok.length) { clear(svg); svg.classList.remove("drawn"); return; }
  const box = frame(svg);
  const t0 = Math.min(...ok), t1 = Math.max(...ok);
  const bins = Math.max(1, Math.min(60, ok.length));
  const counts = new Array(bins).fill(0);
  const span = Math.max(1, t1 - t0 + 1);
  for (const t of ok) counts[Math.min(bins - 1, Math.floor((t - t0) * bins / span))] += 1;
  const peak = Math.max(...counts);
  const x = timeAxis(svg, box, t0, t1 + 1);
  const w = (box.right - box.left) / bins;
  counts.forEach((n, i) => {
    const h = (box.bottom - box.top) * n / peak;
    const bar = el("rect", {class: "bar", x: box.left + i * w + 1, width: Math.max(1, w - 2),
                            y: box.bottom - h, height: h});
    bar.appendChild(el("title", {}, `${n} events`));
    svg.appendChild(bar);
  });
  svg.appendChild(el("text", {x: 2, y: box.top + 8}, String(peak)));
  return x;
}

function colours(values) {
  const order = [...new Set(values)];
  return new Map(order.map((v, i) => [v, PALETTE[i % PALETTE.length]]));
}

function drawTimeline(svg, legend, events, field) {
  const times = events.map((e) => ms(e.timestamp));
  const box = frame(svg);
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const x = timeAxis(svg, box, t0, t1 + 1);
  const values = events.map((e) => String(pick(e, field) ?? "(none)"));
  const palette = colours(values);
  events.forEach((e, i) => {
    const dot = el("circle", {class: "event", cx: x(times[i]), r: 5, fill: palette.get(values[i]),
                              cy: box.top + (box.bottom - box.top) / 2 + ((i % 5) - 2) * 6});
    dot.appendChild(el("title", {}, `${e.timestamp} ${field}=${values[i]}`));
    svg.appendChild(dot);
  });
  legend.innerHTML = "";
  for (const [value, colour] of palette) {
    const item = document.createElement("span");
    item.innerHTML = `<i style="background:${colour}"></i>`;
    item.append(value);
    legend.appendChild(item);
  }
}

function gapText(msGap) {
  if (msGap < 1000) return `${msGap} ms`;
  if (msGap < 60000) return `${(msGap / 1000).toFixed(1)} s`;
  if (msGap < 3600000) return `${(msGap / 60000).toFixed(1)} min`;
  return `${(msGap / 3600000).toFixed(1)} h`;
}

function drawSequence(svg, correlation) {
  const events = correlation.events.filter((e) => e.timestamp);
  if (!events.length) return;
  const times = events.map((e) => ms(e.timestamp));
  const box = frame(svg);
  const t0 = Math.min(...times), t1 = Math.max(...times);
  const x = timeAxis(svg, box, t0, t1 + 1);
  const y = box.top + (box.bottom - box.top) / 2;
  svg.appendChild(el("line", {class: "axis", x1: x(t0), x2: x(t1), y1: y, y2: y}));
  events.forEach((e, i) => {
    const dot = el("circle", {class: "step", cx: x(times[i]), cy: y, r: 6,
                              fill: PALETTE[i % PALETTE.length]});
    dot.appendChild(el("title", {}, JSON.stringify(e)));
    svg.appendChild(dot);
    svg.appendChild(el("text", {x: x(times[i]), y: y - 12, "text-anchor": "middle"},
                       `#${i + 1}`));
    if (i > 0) {
      const mid = (x(times[i]) + x(times[i - 1])) / 2;
      svg.appendChild(el("text", {class: "gap", x: mid, y: y + 20, "text-anchor": "middle"},
                         "+" + gapText(times[i] - times[i - 1])));
    }
  });
}

function pick(row, path) {
  if (!path) return undefined;
  if (path in row) return row[path];
  return path.split(".").reduce((v, k) => (v && typeof v === "object" ? v[k] : undefined), row);
}

function table(columns, rows) {
  const out = document.createElement("table");
  const head = out.createTHead().insertRow();
  for (const c of columns) { const th = document.createElement("th"); th.textContent = c; head.appendChild(th); }
  const body = out.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const value of row) {
      tr.insertCell().textContent = value === null || value === undefined ? ""
        : typeof value === "object" ? JSON.stringify(value) : String(value);
    }
  }
  return out;
}

function eventTable(events) {
  const columns = [...new Set(events.flatMap((e) => Object.keys(e)))];
  return table(columns, events.map((e) => columns.map((c) => e[c])));
}

// -- the panes --------------------------------------------------------------------------
async function runQuery(event) {
  event.preventDefault();
  const body = {language: $("language").value, query: $("query").value,
                limit: Number($("limit").value) || 500};
  if ($("start").value.trim()) body.start = $("start").value.trim();
  if ($("end").value.trim()) body.end = $("end").value.trim();
  status("query-status", "running…");
  const results = $("results"), list = $("correlations");
  results.innerHTML = ""; list.innerHTML = "";
  clear($("sequence")); $("sequence").classList.remove("drawn");
  try {
    const started = performance.now();
    const got = await api("/v1/query", {method: "POST", body: JSON.stringify(body),
                                        headers: {"Content-Type": "application/json"}});
    const took = Math.round(performance.now() - started);
    if (got.columns) {  // SQL
      results.appendChild(table(got.columns.map((c) => c.name), got.rows));
      drawHistogram($("histogram"), []);
      status("query-status", `${got.rows.length} rows in ${took} ms`);
      return;
    }
    const correlations = got.correlations || [];
    const events = correlations.length ? correlations.flatMap((c) => c.events) : got.events;
    drawHistogram($("histogram"), events.map((e) => ms(e.timestamp)));
    correlations.forEach((c, i) => {
      const item = document.createElement("div");
      item.className = "corr";
      item.textContent = `#${c.id} ${JSON.stringify(c.key)} ${c.start} → ${c.end} ` +
                         `(${c.events.length} events, ${c.completeness})`;
      item.addEventListener("click", () => {
        for (const other of list.children) other.classList.remove("chosen");
        item.classList.add("chosen");
        drawSequence($("sequence"), c);
      });
      list.appendChild(item);
      if (i === 0) item.click();
    });
    results.appendChild(eventTable(events));
    status("query-status", correlations.length
      ? `${correlations.length} correlations (${events.length} events) in ${took} ms`
      : `${events.length} events in ${took} ms`);
  } catch (error) {
    drawHistogram($("histogram"), []);
    status("query-status", error.message, true);
  }
}

async function showTimeline(event) {
  event.preventDefault();
  const entity = $("entity").value.trim();
  if (!entity) return;
  status("timeline-status", "reading…");
  try {
    const limit = Number($("timeline-limit").value) || 1000;
    const got = await api(`/v1/entities/${encodeURIComponent(entity)}/timeline?limit=${limit}`);
    if (!got.events.length) {
      clear($("timeline")); $("timeline").classList.remove("drawn");
      status("timeline-status", `no events of ${entity}`);
      return;
    }
    drawTimeline($("timeline"), $("timeline-legend"), got.events, $("color-by").value.trim());
    status("timeline-status", `${got.events.length} events of ${entity}`);
  } catch (error) {
    status("timeline-status", error.message, true);
  }
}

let stream = null;

function startLive(event) {
  event.preventDefault();
  stopLive();
  const params = new URLSearchParams();
  if ($("live-rule").value) params.set("rule", $("live-rule").value);
  else { params.set("query", $("live-query").value); params.set("language", $("live-language").value); }
  if (token()) params.set("token", token());
  stream = new EventSource("/v1/correlations/stream?" + params.toString());
  $("live-start").disabled = true; $("live-stop").disabled = false;
  status("live-status", "connecting…");
  stream.onopen = () => status("live-status", "listening");
  stream.addEventListener("correlation", (message) => {
    const c = JSON.parse(message.data);
    const item = document.createElement("li");
    item.className = "correlation";
    item.textContent = `${new Date().toISOString()} ${c.rule ? c.rule + " " : ""}` +
                       `${JSON.stringify(c.key)} ${c.start} → ${c.end} (${c.events.length} events)`;
    $("live").prepend(item);
  });
  stream.addEventListener("error", (message) => {
    if (message.data) status("live-status", message.data, true);
    else if (stream && stream.readyState === EventSource.CLOSED) status("live-status", "closed", true);
  });
}

function stopLive() {
  if (stream) stream.close();
  stream = null;
  $("live-start").disabled = false; $("live-stop").disabled = true;
  status("live-status", "stopped");
}

async function loadRules() {
  try {
    const got = await api("/v1/rules");
    for (const rule of got.rules || []) {
      const option = document.createElement("option");
      option.value = option.textContent = rule.name;
      $("live-rule").appendChild(option);
    }
  } catch (error) { /* no query scope yet: the token box may fix it */ }
}

$("token").value = localStorage.getItem("tidal-token") || "";
$("token").addEventListener("change", () => { localStorage.setItem("tidal-token", token()); loadRules(); });
$("query-form").addEventListener("submit", runQuery);
$("timeline-form").addEventListener("submit", showTimeline);
$("live-form").addEventListener("submit", startLive);
$("live-stop").addEventListener("click", stopLive);
loadRules();

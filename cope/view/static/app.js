// cope view: runs -> run (problems) -> problem (stages, plans, executions).
// Data comes as scripts calling copeData(path, payload): the same in the live server and in
// an exported site opened from the file system.
"use strict";

const MODE = document.body.dataset.mode === "live" ? "live" : "export";
const REFRESH_MS = 5000;
const ROWS_SHOWN = 500;
const pending = {};

window.copeData = (path, payload) => {
  const resolve = pending[path];
  if (resolve) { delete pending[path]; resolve(payload); }
};

function load(path) {
  return new Promise((resolve, reject) => {
    pending[path] = resolve;
    const tag = document.createElement("script");
    tag.src = MODE === "live" ? `${path}?t=${Date.now()}` : path;
    tag.onload = () => tag.remove();
    tag.onerror = () => { tag.remove(); delete pending[path]; reject(new Error(`could not load ${path}`)); };
    document.head.appendChild(tag);
  });
}

// -- small DOM helpers: text always goes in as text, never as HTML -------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "className") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false)
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}
const SVG = "http://www.w3.org/2000/svg";
function s(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== null && v !== undefined) el.setAttribute(k, v);
  for (const c of children.flat()) if (c !== null && c !== undefined)
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  return el;
}

// append children, leaving out the absent (null, undefined, false) ones
function put(el, ...kids) {
  for (const k of kids.flat()) if (k !== null && k !== undefined && k !== false) el.append(k);
  return el;
}

const pct = (x) => (x === null || x === undefined ? "–" : `${(100 * x).toFixed(1)}%`);
const num = (x, d = 1) => (x === null || x === undefined ? "–" :
  Number(x).toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d }));
const perMillion = (usd) => (usd === null || usd === undefined ? "–" : num(usd * 1e6));
const verdict = (c) => (c === true ? h("span", { className: "right" }, "✓ right")
  : c === false ? h("span", { className: "wrong" }, "✗ wrong") : h("span", { className: "muted" }, "not judged"));

function notes(list) {
  return list && list.length ? h("ul", { className: "notes", "data-test": "notes" }, list.map((n) => h("li", {}, n))) : null;
}

// -- routing ---------------------------------------------------------------------------------
function route() {
  const [path, query] = (location.hash.slice(1) || "/").split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const params = new URLSearchParams(query || "");
  if (parts[0] === "run" && parts[2] === "p") return { view: "problem", run: parts[1], problem: parts[3], other: params.get("with") };
  if (parts[0] === "run") return { view: "run", run: parts[1] };
  return { view: "runs" };
}

const state = { runsSort: { key: "label", dir: "asc" }, runsFilter: "", finishedOnly: false, logCost: true, zoom: {},
                problemFilters: {}, last: "" };

async function show(refresh = false) {
  const r = route();
  const app = document.getElementById("app");
  try {
    let paths;
    if (r.view === "runs") paths = ["data/runs.js"];
    else if (r.view === "run") paths = [`data/run/${r.run}.js`];
    else paths = [`data/problem/${r.run}/${r.problem}.js`].concat(r.other ? [`data/problem/${r.other}/${r.problem}.js`] : []);
    const payloads = await Promise.all(paths.map(load));
    const fingerprint = JSON.stringify([r, payloads]);
    if (refresh && fingerprint === state.last) return; // nothing new was written
    state.last = fingerprint;
    const error = payloads.find((p) => p && p.error);
    const focused = document.activeElement && document.activeElement.id;
    app.replaceChildren(error ? h("p", { className: "error", "data-test": "error" }, error.error)
      : r.view === "runs" ? runsView(payloads[0])
      : r.view === "run" ? runView(payloads[0])
      : problemView(payloads[0], payloads[1]));
    if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
    crumbs(r, payloads[0]);
  } catch (err) {
    app.replaceChildren(h("p", { className: "error", "data-test": "error" }, String(err.message || err)));
  }
}

function crumbs(r, payload) {
  const nav = document.getElementById("crumbs");
  const items = [h("a", { href: "#/" }, "runs")];
  if (r.view !== "runs" && payload && !payload.error) {
    const label = r.view === "run" ? payload.summary.label : payload.label;
    items.push(" › ", h("a", { href: `#/run/${r.run}` }, label));
    if (r.view === "problem") items.push(" › ", `problem ${payload.id}`);
  }
  nav.replaceChildren(...items);
}

// -- runs ------------------------------------------------------------------------------------
const RUN_COLUMNS = [
  ["label", "run"], ["task", "task"], ["pair", "pair"], ["n", "n", "num"], ["accuracy", "accuracy [95% Wilson]", "num"],
  ["cost_usd_per_million", "USD per 1M problems", "num"], ["resolved", "resolved per stage"],
  ["truncated_samples", "truncated / failed samples", "num"], ["status", "status"],
];

function runsView(data) {
  const wrap = h("div", {});
  put(wrap, h("h1", {}, `Runs below ${data.root}`), notes(data.notes));
  if (!data.runs.length) return wrap;
  const plots = h("div", { className: "plots" });
  for (const g of data.groups) plots.append(paretoFigure(g));
  if (data.groups.length) put(wrap, h("h2", {}, "Accuracy against cost"),
    h("p", { className: "muted" }, "One point per run; click a point to open its run. The dashed line is the Pareto frontier of the runs on the most problems; free methods are horizontal lines."),
    plots);
  const filter = h("input", { type: "search", id: "runs-filter", placeholder: "filter: method, pair, task, path…", value: state.runsFilter,
    oninput: (e) => { state.runsFilter = e.target.value; fill(); } });
  const finished = h("input", { type: "checkbox", id: "runs-finished", checked: state.finishedOnly,
    onchange: (e) => { state.finishedOnly = e.target.checked; fill(); } });
  const count = h("span", { className: "muted", "data-test": "runs-count" });
  put(wrap, h("h2", {}, "Runs"), h("div", { className: "controls" }, filter, h("label", {}, finished, " finished only"), count));
  const head = h("tr", {}, RUN_COLUMNS.map(([key, title, cls]) => h("th", { className: cls, "data-key": key,
    "data-dir": state.runsSort.key === key ? state.runsSort.dir : null,
    onclick: () => { state.runsSort = { key, dir: state.runsSort.key === key && state.runsSort.dir === "asc" ? "desc" : "asc" }; fill(); } }, title)));
  const body = h("tbody", {});
  const table = h("table", { "data-test": "runs" }, h("thead", {}, head), body);
  put(wrap, table);
  function value(run, key) {
    if (key === "resolved") return Object.values(run.resolved_by_stage || {}).join(",");
    return run[key];
  }
  function fill() {
    const text = state.runsFilter.toLowerCase();
    let rows = data.runs.filter((run) => (!state.finishedOnly || run.finished) &&
      [run.label, run.method, run.pair, run.task, run.key, run.status].join(" ").toLowerCase().includes(text));
    const { key, dir } = state.runsSort;
    rows = rows.slice().sort((a, b) => {
      const x = value(a, key), y = value(b, key);
      const c = x === y ? 0 : x === null || x === undefined ? 1 : y === null || y === undefined ? -1 : x < y ? -1 : 1;
      return dir === "asc" ? c : -c;
    });
    for (const th of head.children) th.dataset.dir = th.dataset.key === key ? dir : "";
    count.textContent = `${rows.length} of ${data.runs.length} runs`;
    body.replaceChildren(...rows.map((run) => h("tr", { className: "row", "data-run": run.key, onclick: () => { location.hash = `#/run/${run.file}`; } },
      h("td", {}, h("a", { href: `#/run/${run.file}` }, run.label), h("div", { className: "muted" }, run.key)),
      h("td", {}, run.task), h("td", {}, run.pair),
      h("td", { className: "num" }, run.finished || run.n_selected === null ? run.n : `${run.n} of ${run.n_selected}`),
      h("td", { className: "num", "data-test": "accuracy" }, run.accuracy === null ? "–" :
        `${pct(run.accuracy)} [${pct(run.accuracy_ci[0])}, ${pct(run.accuracy_ci[1])}]`),
      h("td", { className: "num" }, num(run.cost_usd_per_million)),
      h("td", {}, Object.entries(run.resolved_by_stage || {}).map(([k, v]) => `${k}: ${v}`).join(", ")),
      h("td", { className: "num" }, `${run.truncated_samples ?? "–"} / ${run.failed_samples ?? "–"}`),
      h("td", {}, run.finished ? h("span", { className: "badge ok" }, "finished") : h("span", { className: "badge up" }, run.status),
        run.notes.length ? h("span", { className: "badge cut", title: run.notes.join("\n") }, `${run.notes.length} note(s)`) : null))));
  }
  fill();
  return wrap;
}

// -- the accuracy-cost plot ----------------------------------------------------------------
function markerPath(m, x, y, r) {
  const poly = (pts) => "M" + pts.map(([a, b]) => `${(x + a * r).toFixed(1)},${(y + b * r).toFixed(1)}`).join("L") + "Z";
  const ngon = (n, rot) => poly([...Array(n).keys()].map((i) => [Math.cos(rot + 2 * Math.PI * i / n), Math.sin(rot + 2 * Math.PI * i / n)]));
  switch (m) {
    case "s": return poly([[-.85, -.85], [.85, -.85], [.85, .85], [-.85, .85]]);
    case "^": return poly([[0, -1.1], [1, .7], [-1, .7]]);
    case "v": return poly([[0, 1.1], [1, -.7], [-1, -.7]]);
    case "<": return poly([[-1.1, 0], [.7, -1], [.7, 1]]);
    case ">": return poly([[1.1, 0], [-.7, -1], [-.7, 1]]);
    case "D": return poly([[0, -1.15], [.85, 0], [0, 1.15], [-.85, 0]]);
    case "P": return poly([[-.35, -1], [.35, -1], [.35, -.35], [1, -.35], [1, .35], [.35, .35], [.35, 1], [-.35, 1], [-.35, .35], [-1, .35], [-1, -.35], [-.35, -.35]]);
    case "X": return poly([[-.75, -1], [0, -.3], [.75, -1], [1, -.75], [.3, 0], [1, .75], [.75, 1], [0, .3], [-.75, 1], [-1, .75], [-.3, 0], [-1, -.75]]);
    case "h": return ngon(6, Math.PI / 6);
    case "p": return ngon(5, -Math.PI / 2);
    case "*": return poly([...Array(10).keys()].map((i) => { const a = -Math.PI / 2 + Math.PI * i / 5, q = i % 2 ? .45 : 1.15; return [q * Math.cos(a), q * Math.sin(a)]; }));
    default: return `M${x - r},${y}a${r},${r} 0 1,0 ${2 * r},0a${r},${r} 0 1,0 ${-2 * r},0`;
  }
}

function paretoFigure(group) {
  const id = `${group.task} / ${group.pair}`;
  const fig = h("figure", { className: "pareto", "data-test": "pareto", "data-group": id });
  const redraw = () => fig.replaceWith(paretoFigure(group));
  const zoom = state.zoom[id] || null;
  const toggle = h("label", { className: "muted" }, h("input", { type: "checkbox", checked: state.logCost,
    onchange: (e) => { state.logCost = e.target.checked; redraw(); } }), " log cost axis");
  const reset = zoom ? h("button", { type: "button", "data-test": "zoom-reset", onclick: () => { delete state.zoom[id]; redraw(); } }, "reset zoom") : null;
  put(fig, h("figcaption", {}, id, toggle, reset, h("span", { className: "muted" }, zoom ? "zoomed" : "drag a rectangle to zoom")),
    paretoSvg(group.points, state.logCost, zoom, (window) => { state.zoom[id] = window; redraw(); }));
  return fig;
}

function paretoSvg(points, logCost, zoom, onZoom) {
  const W = 700, H = 420, m = { l: 52, r: 18, t: 12, b: 42 };
  const fx = logCost ? Math.log10 : (v) => v, unfx = logCost ? (v) => 10 ** v : (v) => v;
  const allPriced = points.filter((p) => p.cost > 0);
  let x0, x1, lo, hi;
  if (zoom) {
    [x0, x1, lo, hi] = [fx(zoom.c0), fx(zoom.c1), zoom.a0, zoom.a1];
  } else {
    const accs = points.flatMap((p) => p.accuracy_ci || [p.accuracy]);
    lo = Math.min(...accs); hi = Math.max(...accs);
    const padY = Math.max(0.02, (hi - lo) * 0.08); lo = Math.max(0, lo - padY); hi = Math.min(1, hi + padY);
    const costs = allPriced.map((p) => p.cost);
    const c0 = costs.length ? Math.min(...costs) : 1, c1 = costs.length ? Math.max(...costs) : 10;
    x0 = fx(c0); x1 = fx(c1);
    const padX = Math.max((x1 - x0) * 0.08, logCost ? 0.05 : c1 * 0.05 || 1); x0 -= padX; x1 += padX;
    if (!logCost) x0 = Math.max(0, x0);
  }
  const inside = (p) => fx(p.cost) >= x0 && fx(p.cost) <= x1 && p.accuracy >= lo && p.accuracy <= hi;
  const priced = allPriced.filter(inside), free = points.filter((p) => !(p.cost > 0) && p.accuracy >= lo && p.accuracy <= hi);
  const X = (c) => m.l + (fx(c) - x0) / (x1 - x0) * (W - m.l - m.r);
  const Y = (a) => H - m.b - (a - lo) / (hi - lo) * (H - m.t - m.b);
  const cost = (px) => unfx(x0 + (px - m.l) / (W - m.l - m.r) * (x1 - x0));
  const acc = (py) => lo + (H - m.b - py) / (H - m.t - m.b) * (hi - lo);
  const svg = s("svg", { viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": "accuracy against cost" });
  svg.append(s("defs", {}, s("clipPath", { id: "plot-area" }, s("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b }))));
  const grid = s("g", { class: "grid" }), axis = s("g", { class: "axis" });
  const yStep = niceStep((hi - lo) * 100, 6);
  for (let v = Math.ceil(lo * 100 / yStep) * yStep; v <= hi * 100 + 1e-9; v += yStep) {
    grid.append(s("line", { x1: m.l, x2: W - m.r, y1: Y(v / 100), y2: Y(v / 100) }));
    axis.append(s("text", { x: m.l - 6, y: Y(v / 100) + 4, "text-anchor": "end" }, `${+v.toFixed(1)}%`));
  }
  for (const t of costTicks(x0, x1, logCost)) {
    grid.append(s("line", { x1: X(t), x2: X(t), y1: m.t, y2: H - m.b }));
    axis.append(s("text", { x: X(t), y: H - m.b + 15, "text-anchor": "middle" }, num(t, t < 10 ? 1 : 0)));
  }
  axis.append(s("line", { x1: m.l, x2: W - m.r, y1: H - m.b, y2: H - m.b }), s("line", { x1: m.l, x2: m.l, y1: m.t, y2: H - m.b }),
    s("text", { x: (m.l + W - m.r) / 2, y: H - 6, "text-anchor": "middle" }, `cost (USD per million problems${logCost ? ", log scale" : ""})`),
    s("text", { x: 12, y: (m.t + H - m.b) / 2, transform: `rotate(-90 12 ${(m.t + H - m.b) / 2})`, "text-anchor": "middle" }, "accuracy"));
  svg.append(grid, axis);
  const band = s("rect", { x: m.l, y: m.t, width: W - m.l - m.r, height: H - m.t - m.b, fill: "transparent", "data-test": "zoom-area" });
  svg.append(band);
  const taken = [];
  const place = (x, y, text) => { // the first side where the label overlaps no other label; none: hover shows it
    const w = 6.2 * text.length, hgt = 12;
    for (const [dx, dy, anchor] of [[9, 4, "start"], [-9, 4, "end"], [0, -10, "middle"], [0, 19, "middle"], [9, -9, "start"], [9, 16, "start"], [-9, -9, "end"], [-9, 16, "end"]]) {
      const left = anchor === "start" ? x + dx : anchor === "end" ? x + dx - w : x + dx - w / 2;
      const box = [left, y + dy - 10, left + w, y + dy - 10 + hgt];
      if (box[0] < m.l || box[2] > W - m.r || box[1] < m.t || box[3] > H - m.b) continue;
      if (!taken.some((b) => box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1])) { taken.push(box); return [x + dx, y + dy, anchor]; }
    }
    return null;
  };
  for (const p of free) { // a free method cannot sit on a log axis: a line at its accuracy
    const y = Y(p.accuracy);
    svg.append(s("a", { href: `#/run/${p.file}`, "data-label": p.label, "data-frontier": p.frontier ? "yes" : "no" },
      s("title", {}, `${p.label}: ${pct(p.accuracy)}, free (n=${p.n})`),
      s("line", { x1: m.l, x2: W - m.r, y1: y, y2: y, stroke: p.style.colour, "stroke-width": p.frontier ? 2.5 : 1.5, "stroke-dasharray": "2 3" }),
      s("text", { x: W - m.r - 4, y: y - 4, "text-anchor": "end", fill: p.style.colour }, `${p.label} (free)`)));
    taken.push([W - m.r - 6.2 * (p.label.length + 7), y - 14, W - m.r, y - 2]);
  }
  const front = allPriced.filter((p) => p.frontier).sort((a, b) => a.cost - b.cost);
  if (front.length > 1) svg.append(s("polyline", { class: "frontier", "clip-path": "url(#plot-area)", "data-test": "frontier", points: front.map((p) => `${X(p.cost)},${Y(p.accuracy)}`).join(" ") }));
  // frontier points first, so their labels get the best places
  for (const p of priced.slice().sort((a, b) => b.frontier - a.frontier)) {
    const x = X(p.cost), y = Y(p.accuracy);
    const g = s("a", { href: `#/run/${p.file}`, "data-label": p.label, "data-frontier": p.frontier ? "yes" : "no" },
      s("title", {}, `${p.label}: ${pct(p.accuracy)} at ${num(p.cost)} USD / 1M (n=${p.n})${p.frontier ? ", on the frontier" : ""}`));
    if (p.accuracy_ci) g.append(s("line", { x1: x, x2: x, y1: Y(Math.max(lo, p.accuracy_ci[0])), y2: Y(Math.min(hi, p.accuracy_ci[1])), stroke: p.style.colour, "stroke-opacity": 0.35, "stroke-width": 2 }));
    g.append(s("path", { class: "mark", d: markerPath(p.style.marker, x, y, p.frontier ? 7 : 5.5), fill: p.style.colour, stroke: p.frontier ? "#000" : "#fff", "stroke-width": p.frontier ? 1.5 : 0.8 }));
    const spot = place(x, y, p.label);
    if (spot) g.append(s("text", { x: spot[0], y: spot[1], "text-anchor": spot[2], fill: "#222", "font-weight": p.frontier ? 700 : 400 }, p.label));
    svg.append(g);
  }
  // drag a rectangle to zoom into it
  let start = null; const rect = s("rect", { fill: "rgba(11,92,173,.12)", stroke: "#0b5cad", visibility: "hidden" });
  svg.append(rect);
  const at = (e) => { const b = svg.getBoundingClientRect(); return [(e.clientX - b.left) * W / b.width, (e.clientY - b.top) * H / b.height]; };
  band.addEventListener("mousedown", (e) => { start = at(e); e.preventDefault(); });
  svg.addEventListener("mousemove", (e) => {
    if (!start) return; const [x, y] = at(e);
    rect.setAttribute("x", Math.min(x, start[0])); rect.setAttribute("y", Math.min(y, start[1]));
    rect.setAttribute("width", Math.abs(x - start[0])); rect.setAttribute("height", Math.abs(y - start[1])); rect.setAttribute("visibility", "visible");
  });
  svg.addEventListener("mouseup", (e) => {
    if (!start) return; const [x, y] = at(e), [sx, sy] = start; start = null; rect.setAttribute("visibility", "hidden");
    if (Math.abs(x - sx) < 8 || Math.abs(y - sy) < 8) return;
    onZoom({ c0: cost(Math.min(x, sx)), c1: cost(Math.max(x, sx)), a0: acc(Math.max(y, sy)), a1: acc(Math.min(y, sy)) });
  });
  return svg;
}

function niceStep(span, count) {
  const raw = span / count, mag = 10 ** Math.floor(Math.log10(raw || 1));
  return [1, 2, 2.5, 5, 10].map((f) => f * mag).find((v) => v >= raw) || mag * 10;
}
function costTicks(x0, x1, logCost) {
  if (!logCost) { const st = niceStep(x1 - x0, 6); const out = []; for (let v = Math.ceil(x0 / st) * st; v <= x1; v += st) out.push(v); return out; }
  if (x1 - x0 < 0.5) { // a narrow range: evenly spaced costs read better than decades
    const a = 10 ** x0, b = 10 ** x1, st = niceStep(b - a, 5), out = [];
    for (let v = Math.ceil(a / st) * st; v <= b; v += st) out.push(v);
    return out;
  }
  const out = [];
  for (let e = Math.floor(x0); e <= Math.ceil(x1); e++) for (const f of (x1 - x0 < 1.2 ? [1, 1.5, 2, 3, 5, 7] : [1, 2, 5])) {
    const v = f * 10 ** e; if (Math.log10(v) >= x0 && Math.log10(v) <= x1) out.push(v);
  }
  return out;
}

// -- one run: its problems -----------------------------------------------------------------
function runView(data) {
  const sm = data.summary, stageNames = data.stages.map((st) => st.name);
  const f = state.problemFilters[data.key] || (state.problemFilters[data.key] = { text: "", correct: "all", stage: "all", cstage: stageNames[0] || "", cmin: "", cmax: "", costmin: "", truncated: false, failed: false });
  const wrap = h("div", {});
  put(wrap, h("h1", {}, sm.label), h("div", { className: "facts" },
    h("span", {}, `${sm.task} · ${sm.pair} · seed ${sm.seed}`),
    h("span", { "data-test": "run-accuracy" }, sm.accuracy === null ? "accuracy: not judged" : `accuracy ${pct(sm.accuracy)} [${pct(sm.accuracy_ci[0])}, ${pct(sm.accuracy_ci[1])}] (${sm.n_correct} of ${sm.n})`),
    h("span", {}, `${num(sm.cost_usd_per_million)} USD per 1M problems`),
    h("span", {}, "resolved: " + Object.entries(sm.resolved_by_stage).map(([k, v]) => `${k} ${v}`).join(", ")),
    h("span", {}, sm.finished ? "finished" : `${sm.status}: ${sm.n} of ${sm.n_selected ?? "?"} problems`),
    h("span", { className: "muted" }, sm.run_dir)),
    notes(data.notes.concat(data.question_note ? [data.question_note] : [])),
    h("p", { className: "muted" }, "Stages: " + data.stages.map((st) => `${st.name} (${st.planner ? `${st.planner} plans ${st.plan}, ` : ""}${st.executor} executes${st.votes > 1 ? ` ×${st.votes}` : ""}${st.threshold !== null ? `, accept when consensus ${st.threshold_op === "ge" ? "≥" : ">"} ${st.threshold}` : ""})`).join(" → ")));
  const input = (id, attrs, key) => h("input", { id, ...attrs, value: attrs.type === "checkbox" ? null : f[key], checked: attrs.type === "checkbox" ? f[key] : null,
    oninput: (e) => { f[key] = attrs.type === "checkbox" ? e.target.checked : e.target.value; fill(); } });
  const select = (id, key, options) => h("select", { id, onchange: (e) => { f[key] = e.target.value; fill(); } },
    options.map(([v, t]) => h("option", { value: v, selected: f[key] === v }, t)));
  const count = h("span", { className: "muted", "data-test": "problems-count" });
  put(wrap, h("div", { className: "controls" },
    input("p-text", { type: "search", placeholder: "search question, id, answer…" }, "text"),
    h("label", {}, "verdict ", select("p-correct", "correct", [["all", "all"], ["right", "right"], ["wrong", "wrong"]])),
    h("label", {}, "resolved at ", select("p-stage", "stage", [["all", "any stage"], ...stageNames.map((n) => [n, n])])),
    h("label", {}, "consensus of ", select("p-cstage", "cstage", stageNames.map((n) => [n, n])), " from ", input("p-cmin", { type: "number", step: "0.05", min: 0, max: 1 }, "cmin"), " to ", input("p-cmax", { type: "number", step: "0.05", min: 0, max: 1 }, "cmax")),
    h("label", {}, "cost ≥ ", input("p-costmin", { type: "number", step: "any", min: 0 }, "costmin"), " USD/1M"),
    h("label", {}, input("p-truncated", { type: "checkbox" }, "truncated"), " truncated samples"),
    h("label", {}, input("p-failed", { type: "checkbox" }, "failed"), " failed samples"), count));
  const body = h("tbody", {});
  put(wrap, h("table", { "data-test": "problems" }, h("thead", {}, h("tr", {}, h("th", { className: "num" }, "#"), h("th", {}, "id"), h("th", {}, "question"),
    h("th", {}, "answer"), h("th", {}, "gold"), h("th", {}, "verdict"), h("th", {}, "resolved"),
    stageNames.map((n) => h("th", { className: "num" }, `${n} consensus`)), h("th", { className: "num" }, "USD/1M"), h("th", { className: "num" }, "trunc. / failed"))), body));
  function keep(p) {
    const text = f.text.toLowerCase();
    if (text && ![p.question || "", p.id, p.answer || "", p.gold || ""].join(" ").toLowerCase().includes(text)) return false;
    if (f.correct === "right" && p.correct !== true) return false;
    if (f.correct === "wrong" && p.correct !== false) return false;
    if (f.stage !== "all" && p.resolved_stage !== f.stage) return false;
    const c = p.consensus[f.cstage];
    if (f.cmin !== "" && !(c >= Number(f.cmin))) return false;
    if (f.cmax !== "" && !(c <= Number(f.cmax))) return false;
    if (f.costmin !== "" && !(p.cost_usd * 1e6 >= Number(f.costmin))) return false;
    if (f.truncated && !p.truncated) return false;
    if (f.failed && !p.failed) return false;
    return true;
  }
  const more = h("button", { type: "button", "data-test": "show-all", onclick: () => { f.all = true; fill(); } });
  function fill() {
    const rows = data.problems.filter(keep);
    count.textContent = `${rows.length} of ${data.problems.length} problems`;
    // a run of thousands of problems draws its first rows; the rest on request
    const shown = f.all ? rows : rows.slice(0, ROWS_SHOWN);
    more.textContent = `show all ${rows.length}`;
    more.hidden = shown.length === rows.length;
    body.replaceChildren(...shown.map((p) => h("tr", { className: "row", "data-problem": p.id, onclick: () => { location.hash = `#/run/${data.summary.file}/p/${p.file}`; } },
      h("td", { className: "num" }, p.index), h("td", {}, h("a", { href: `#/run/${data.summary.file}/p/${p.file}` }, p.id)),
      h("td", {}, p.question === null ? h("span", { className: "muted" }, "–") : p.question.length > 140 ? p.question.slice(0, 140) + "…" : p.question),
      h("td", {}, p.answer ?? "–"), h("td", {}, p.gold ?? "–"), h("td", {}, verdict(p.correct)), h("td", {}, p.resolved_stage ?? "–"),
      stageNames.map((n) => h("td", { className: "num" }, p.consensus[n] === undefined || p.consensus[n] === null ? "" : p.consensus[n].toFixed(3))),
      h("td", { className: "num" }, perMillion(p.cost_usd)), h("td", { className: "num" }, `${p.truncated ?? "–"} / ${p.failed ?? "–"}`))));
  }
  fill();
  put(wrap, more);
  return wrap;
}

// -- one problem ---------------------------------------------------------------------------
function problemView(data, other) {
  const r = route();
  const wrap = h("div", {});
  const chooser = h("select", { id: "compare", onchange: (e) => { location.hash = `#/run/${r.run}/p/${r.problem}` + (e.target.value ? `?with=${e.target.value}` : ""); } },
    h("option", { value: "" }, "— compare with another run —"),
    data.compare.map((c) => h("option", { value: c.file, selected: r.other === c.file }, c.label + (c.label === c.key ? "" : `  (${c.key})`))));
  put(wrap, h("h1", {}, `Problem ${data.id}`),
    data.question === null ? notes([data.question_note || "question text unavailable"]) : h("div", { className: "question", "data-test": "question" }, data.question),
    h("div", { className: "controls" }, chooser, other ? h("span", { className: "muted" }, "differences are marked ", h("span", { className: "legend-swatch diff" })) : null));
  const cols = h("div", { className: other && !other.error ? "columns two" : "columns" });
  put(cols, problemColumn(data, other && !other.error ? other : null));
  if (other) put(cols, other.error ? h("p", { className: "error" }, other.error) : problemColumn(other, data));
  put(wrap, cols);
  return wrap;
}

function problemColumn(p, against) {
  const differs = (get) => against !== null && against !== undefined && JSON.stringify(get(p)) !== JSON.stringify(get(against));
  const mark = (get, node) => { if (differs(get)) node.classList.add("diff"); return node; };
  const col = h("section", { "data-test": "problem", "data-run": p.key });
  put(col, h("h2", {}, p.label, p.key === p.label ? null : h("span", { className: "muted" }, `  ${p.key}`)),
    h("div", { className: "facts" },
      h("span", {}, "gold ", h("b", {}, p.gold ?? "–")),
      mark((q) => q.answer, h("span", { "data-test": "final-answer" }, "answer ", h("b", {}, p.answer ?? "none"))),
      mark((q) => q.correct, h("span", {}, verdict(p.correct))),
      mark((q) => q.resolved_stage, h("span", {}, `resolved at ${p.resolved_stage ?? "–"}`)),
      h("span", {}, `${perMillion(p.cost_usd)} USD per 1M`),
      p.truncated ? h("span", { className: "badge cut" }, `${p.truncated} truncated samples`) : null,
      p.failed ? h("span", { className: "badge cut" }, `${p.failed} failed samples`) : null));
  for (const st of p.stages) {
    const twin = against ? against.stages.find((x) => x.name === st.name) : null;
    const sd = (get, node) => { if (against && (!twin || JSON.stringify(get(st)) !== JSON.stringify(get(twin)))) node.classList.add("diff"); return node; };
    const op = st.threshold_op === "ge" ? "≥" : ">";
    const decision = st.threshold === null || st.threshold === undefined
      ? (p.resolved_stage === st.name ? "final stage: its answer stands" : "no threshold")
      : st.accepted ? `consensus ${fmt(st.consensus)} ${op} τ ${st.threshold}: accepted`
        : `consensus ${fmt(st.consensus)} not ${op} τ ${st.threshold}: escalated`;
    const card = h("div", { className: "stage", "data-test": "stage", "data-stage": st.name });
    put(card, h("div", { className: "head" }, h("b", {}, st.name),
      sd((x) => x.answer, h("span", { "data-test": "stage-answer" }, "answer ", h("b", {}, st.answer ?? "none"))),
      sd((x) => x.consensus, h("span", { "data-test": "stage-decision" }, decision)),
      h("span", { className: st.accepted ? "badge ok" : "badge up" }, st.accepted ? "accepted" : p.resolved_stage === st.name ? "resolved here" : "passed on"),
      h("span", { className: "muted" }, `${st.votes ?? "?"} votes, ${st.abstained ?? 0} abstained${st.tied > 1 ? `, ${st.tied}-way tie` : ""} · ${st.confidence ?? ""}`),
      h("span", {}, `${perMillion(st.cost_usd)} USD/1M`)));
    const body = h("div", { className: "body" });
    const plans = Object.entries(st.plans || {});
    if (plans.length) {
      put(body, h("div", { className: "muted" }, "plans"));
      for (const [key, plan] of plans) put(body, planNode(key, plan, st.passed_on.includes(key)));
    }
    for (const ex of st.executions) {
      const head = h("summary", {}, h("b", {}, `#${ex.index} `), `${ex.model} · answer `, h("b", { className: ex.supports ? "" : "muted" }, ex.answer ?? "none"),
        ex.supports ? h("span", { className: "badge ok" }, "backs the vote") : null,
        ex.plans.length ? h("span", { className: "muted" }, ` · read ${ex.plans.join(", ")}`) : null,
        h("span", { className: "muted" }, ` · ${ex.tokens ?? "?"} tokens${ex.cache_hit ? " · cached" : ""} · ${perMillion(ex.cost_usd)} USD/1M`),
        ex.truncated ? h("span", { className: "badge cut" }, "cut off at max tokens") : null,
        ex.finish_reason && !["stop", "length"].includes(ex.finish_reason) ? h("span", { className: "badge cut" }, ex.finish_reason) : null);
      put(body, h("details", { className: "exec", "data-test": "execution" }, head, h("pre", {}, ex.text ?? "")));
    }
    put(card, body);
    put(col, card);
  }
  if (p.other_samples.length) put(col, h("h2", {}, "Samples of stages the record does not list"),
    p.other_samples.map((x) => h("details", { className: "exec" }, h("summary", {}, `${x.role} #${x.index} · ${x.model}`), h("pre", {}, x.text ?? ""))));
  return col;
}

function planNode(key, plan, passedOn) {
  return h("div", { className: "plan", "data-test": "plan", "data-plan": key, "data-truncated": plan.truncated ? "yes" : "no" },
    h("div", { className: "muted" }, `${key} · ${plan.kind ?? "plan"} by ${plan.author ?? "?"}${plan.model ? ` (${plan.model})` : ""}`,
      plan.truncated ? h("span", { className: "badge cut" }, ` cut off at ${plan.tokens} tokens`) : null,
      passedOn ? h("span", { className: "badge" }, "passed on") : null),
    plan.text ?? h("span", { className: "muted" }, "(plan text not in samples.jsonl)"));
}
const fmt = (x) => (x === null || x === undefined ? "–" : Number(x).toFixed(3));

// -- start -------------------------------------------------------------------------------------
async function start() {
  document.getElementById("mode").textContent = MODE === "live"
    ? `live: re-reads the records every ${REFRESH_MS / 1000} s` : "exported site";
  window.addEventListener("hashchange", () => { state.last = ""; show(); });
  await show();
  if (MODE === "live") setInterval(() => {
    if (!document.querySelector("details[open]")) show(true); // never fold what the reader opened
  }, REFRESH_MS);
}
start();

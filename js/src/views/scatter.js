// The efficiency scatter: each model a point of two metrics, the Pareto frontier
// as a step line, optional lines to parents, click / shift-click / box selection.
import { html, svg, formatParams, truncate, wireMark } from "../shared/dom.js";
import { colourScale, scaleLegend, domainOptions, domainControl, numericExtent } from "../shared/colour.js";
import { formatMetric, metricTitle } from "../shared/format.js";
import { getSelected, select, markSelected } from "../shared/selection.js";
import { addStyles, viewStyles } from "../shared/styles.js";
import { tooltip as makeTooltip } from "../shared/tooltip.js";
import { listen, coalesce } from "../shared/listen.js";
import { unpack } from "../shared/wire.js";
import { linearTicks, logTicks } from "../shared/ticks.js";
import { paretoFront } from "../shared/pareto.js";

const HEIGHT = 420;
const M = { top: 16, right: 24, bottom: 48, left: 78 };

const CSS = `
.cnc-scatter.cnc-view, .cnc-diff.cnc-view { background: var(--jp-layout-color1, #fff);
  color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color2, #ddd); }
.cnc-scatter .cnc-toolbar { border-bottom-color: var(--jp-border-color2, #eee); }
.cnc-scatter .cnc-toolbar label { display: inline-flex; gap: 4px; align-items: center; white-space: nowrap; }
.cnc-scatter .cnc-toolbar select { max-width: 150px; }
.cnc-scatter svg.cnc-plot { display: block; width: 100%; user-select: none; touch-action: none; }
.cnc-scatter .cnc-axis line, .cnc-scatter .cnc-axis path { stroke: var(--jp-border-color1, #999); }
.cnc-scatter .cnc-grid line { stroke: var(--jp-border-color3, #eee); }
.cnc-scatter .cnc-axis text { fill: var(--jp-ui-font-color2, #555); font-size: 11px; }
.cnc-scatter .cnc-axis-title { fill: var(--jp-ui-font-color1, #222); font-size: 12px; font-weight: 600; }
.cnc-scatter .cnc-front { fill: none; stroke: #009e73; stroke-width: 2; stroke-dasharray: 6 3; }
.cnc-scatter .cnc-trajectory { stroke: var(--jp-ui-font-color3, #aaa); stroke-width: 1.2; fill: none;
  marker-end: none; }
.cnc-scatter .cnc-point { cursor: pointer; outline: none; }
.cnc-scatter .cnc-point .cnc-dot { stroke: var(--jp-ui-font-color1, #333); stroke-width: 0.8; }
.cnc-scatter .cnc-point[data-pareto="true"] .cnc-dot { stroke: #009e73; stroke-width: 2.5; }
.cnc-scatter .cnc-point .cnc-ring { fill: none; stroke: transparent; stroke-width: 3; pointer-events: none; }
.cnc-scatter .cnc-count-badge { pointer-events: none; }
.cnc-scatter .cnc-point.cnc-selected .cnc-ring { stroke: #ff7f0e; }
.cnc-scatter .cnc-point:focus-visible .cnc-ring { stroke: #1f77b4; stroke-dasharray: 3 2; }
.cnc-scatter .cnc-point[data-filtered="out"] { opacity: 0.22; }
.cnc-scatter .cnc-point[data-filtered="out"].cnc-selected { opacity: 0.6; }
.cnc-scatter .cnc-point-label { font-size: 11px; fill: var(--jp-ui-font-color1, #111); paint-order: stroke;
  stroke: var(--jp-layout-color1, #fff); stroke-width: 3px; stroke-linejoin: round; pointer-events: none; }
.cnc-scatter .cnc-count-badge rect { fill: var(--jp-layout-color1, #fff); stroke: var(--jp-ui-font-color1, #222); stroke-width: 1; }
.cnc-scatter .cnc-count-badge text { fill: var(--jp-ui-font-color1, #222); font-size: 10px; font-weight: 700; }
.cnc-scatter .cnc-brush { fill: rgba(31, 119, 180, 0.12); stroke: #1f77b4; stroke-dasharray: 4 2; }
.cnc-scatter .cnc-footer { display: flex; gap: 12px; padding: 4px 8px 6px; color: var(--jp-ui-font-color2, #666);
  flex-wrap: wrap; min-height: 18px; }
.cnc-scatter .cnc-footer .cnc-key { display: inline-flex; gap: 4px; align-items: center; }
.cnc-scatter .cnc-key-front { display: inline-block; width: 18px; border-top: 2px dashed #009e73; }
.cnc-scatter .cnc-empty-plot { fill: var(--jp-ui-font-color2, #666); font-size: 13px; }
.cnc-scatter .cnc-tooltip, .cnc-diff .cnc-tooltip { background: var(--jp-layout-color0, #fff);
  color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color1, #bbb); }
.cnc-scatter .cnc-tooltip .cnc-tip-sub { color: var(--jp-ui-font-color2, #555); }
`;

// Points closer than this (pixels) are one place on the plot: they spread on a small ring
// around it and a badge says how many models are there.
const SAME_PLACE = 2;
const MAX_SPREAD = 26;

// Groups of indices whose points land on the same pixel place, in `order`.
export function samePlace(indices, px, py, tolerance = SAME_PLACE) {
  const groups = new Map();
  for (const i of indices) {
    const key = `${Math.round(px(i) / tolerance)},${Math.round(py(i) / tolerance)}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(i);
  }
  return [...groups.values()];
}

function opLabel(m) {
  const shown = m.shown_params ? Object.fromEntries(
    Object.entries(m.params || {}).filter(([k]) => m.shown_params.includes(k))) : m.params;
  const params = formatParams(shown);
  return params ? `${m.operation || "?"}(${params})` : (m.operation || "?");
}

// root -> ... -> model, as operations.
function chain(byName, name) {
  const steps = [];
  const seen = new Set();
  let cur = byName.get(name);
  while (cur && cur.parent && byName.has(cur.parent) && !seen.has(cur.name)) {
    seen.add(cur.name);
    steps.unshift(opLabel(cur));
    cur = byName.get(cur.parent);
  }
  return { root: cur ? cur.name : name, steps };
}

function scale(lo, hi, a, b, log) {
  if (log) {
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    return (v) => a + ((Math.log10(v) - l0) / (l1 - l0 || 1)) * (b - a);
  }
  return (v) => a + ((v - lo) / (hi - lo || 1)) * (b - a);
}

function padded(extent, log) {
  let [lo, hi] = extent;
  if (log) {
    if (hi === lo) return [lo / 2, hi * 2];
    const f = (hi / lo) ** 0.06;
    return [lo / f, hi * f];
  }
  if (hi === lo) {
    const d = Math.abs(lo) * 0.05 || 1;
    return [lo - d, hi + d];
  }
  const d = (hi - lo) * 0.06;
  return [lo - d, hi + d];
}

function render({ model, el }) {
  const t0 = performance.now();
  const root = html("div", { class: "cnc-view cnc-scatter" });
  addStyles();
  viewStyles("scatter", CSS);
  el.append(root);

  const pick = (label, key, optional) => {
    const s = html("select", { "aria-label": label });
    s.addEventListener("change", () => {
      model.set(key, s.value);
      if (key === "x" || key === "y") model.set(`log_${key}`, defaultLog(s.value));
      model.save_changes();
    });
    return { el: html("label", { text: `${label} ` }, [s]), select: s, optional };
  };
  const pickers = { x: pick("x", "x"), y: pick("y", "y"), color: pick("colour", "color", true), size: pick("size", "size", true) };
  const logX = html("input", { type: "checkbox", "aria-label": "log scale on x" });
  const logY = html("input", { type: "checkbox", "aria-label": "log scale on y" });
  const traj = html("input", { type: "checkbox", "aria-label": "lines from each model to its parent" });
  const xDir = html("button", { type: "button", class: "cnc-dir", title: "Which x is better for the frontier" });
  const yDir = html("button", { type: "button", class: "cnc-dir", title: "Which y is better for the frontier" });
  const toolbar = html("div", { class: "cnc-toolbar" }, [
    html("span", { class: "cnc-title", text: "Efficiency" }),
    pickers.x.el, html("label", { text: "log" }, [logX]),
    pickers.y.el, html("label", { text: "log" }, [logY]),
    pickers.color.el, pickers.size.el,
    xDir, yDir, html("label", { text: "lines to parent" }, [traj]),
  ]);
  const plot = svg("svg", { class: "cnc-plot", role: "listbox", "aria-multiselectable": "true",
    "aria-label": "Models by two metrics", height: HEIGHT });
  plot.style.height = `${HEIGHT}px`;
  const footer = html("div", { class: "cnc-footer" });
  root.append(toolbar, plot, footer);
  const tip = makeTooltip(root);

  let current = null; // {models, metrics, values, byName, sx, sy, visible}

  for (const [box, key] of [[logX, "log_x"], [logY, "log_y"], [traj, "trajectories"]]) {
    box.addEventListener("change", () => { model.set(key, box.checked); model.save_changes(); });
  }
  for (const [button, key] of [[xDir, "x_better"], [yDir, "y_better"]]) {
    button.addEventListener("click", () => {
      model.set(key, model.get(key) === "lower" ? "higher" : "lower");
      model.save_changes();
    });
  }

  function column(metric) {
    if (!current) return [];
    const j = current.metrics.indexOf(metric);
    if (j < 0) return current.models.map(() => NaN);
    const w = current.metrics.length;
    return current.models.map((_, i) => current.values[i * w + j]);
  }

  const filteredOut = (i) => (model.get("filtered_out") || []).includes(current.models[i].name);
  const info = (metric) => (model.get("metric_info") || {})[metric] || {};
  const fmt = (v, metric) => formatMetric(v, metric, info(metric));

  function showTip(i, event) {
    const m = current.models[i];
    const { root: first, steps } = chain(current.byName, m.name);
    const w = current.metrics.length;
    const rows = current.metrics.map((metric, j) => [metric, fmt(current.values[i * w + j], metric),
      info(metric).description || ""]);
    const notes = [];
    if (current.front.has(i)) notes.push("on the Pareto frontier");
    const others = (current.places.get(i) || []).filter((k) => k !== i);
    if (others.length) {
      notes.push(`${others.length + 1} models at this point: ${others.map((k) => current.models[k].name).join(", ")} and this one`);
    }
    tip.show({ title: m.name, sub: steps.length ? [first, ...steps].join(" \u2192 ") : "", rows, notes }, event);
  }
  const hideTip = () => tip.hide();

  function emptyMessage(text) {
    plot.append(svg("text", { class: "cnc-empty-plot", x: 24, y: 40, text }));
  }

  function syncControls(metrics) {
    for (const [key, p] of Object.entries(pickers)) {
      const chosen = model.get(key);
      const opts = p.optional ? [html("option", { value: "", text: "none", selected: !chosen })] : [];
      for (const metric of metrics) opts.push(html("option", { value: metric, text: metric, selected: metric === chosen }));
      if (chosen && !metrics.includes(chosen)) opts.push(html("option", { value: chosen, text: `${chosen} (no values)`, selected: true }));
      p.select.replaceChildren(...opts);
      p.select.disabled = metrics.length === 0;
    }
    logX.checked = model.get("log_x");
    logY.checked = model.get("log_y");
    traj.checked = model.get("trajectories");
    xDir.textContent = `x: ${model.get("x_better")} is better`;
    yDir.textContent = `y: ${model.get("y_better")} is better`;
  }

  // What is drawn, derived from the synced state: plotted indices, scales, colour and size.
  function derive(width) {
    const { models } = current;
    const xm = model.get("x");
    const ym = model.get("y");
    const xs = column(xm);
    const ys = column(ym);
    let logx = model.get("log_x");
    let logy = model.get("log_y");
    const notes = [];
    if (logx && xs.some((v) => Number.isFinite(v) && v <= 0)) { logx = false; notes.push(`x has values \u2264 0: linear scale`); }
    if (logy && ys.some((v) => Number.isFinite(v) && v <= 0)) { logy = false; notes.push(`y has values \u2264 0: linear scale`); }
    const shown = models.map((_, i) => i).filter((i) => Number.isFinite(xs[i]) && Number.isFinite(ys[i]));
    const g = { width, xm, ym, xs, ys, logx, logy, notes, shown, missing: models.length - shown.length };
    if (!shown.length) return g;
    g.ex = padded(numericExtent(shown.map((i) => xs[i])), logx);
    g.ey = padded(numericExtent(shown.map((i) => ys[i])), logy);
    g.sx = scale(g.ex[0], g.ex[1], M.left, width - M.right, logx);
    g.sy = scale(g.ey[0], g.ey[1], HEIGHT - M.bottom, M.top, logy);
    g.cm = model.get("color");
    g.zm = model.get("size");
    g.cvals = g.cm ? column(g.cm) : null;
    g.domain = g.cm ? (model.get("color_domains") || {})[g.cm] || "data" : "data";
    g.cscale = g.cm ? colourScale(g.cvals, { domain: g.domain, info: info(g.cm) }) : null;
    const zvals = g.zm ? column(g.zm) : null;
    g.zext = g.zm ? numericExtent(zvals) : null;
    g.radius = (i) => {
      if (!g.zext || !Number.isFinite(zvals[i])) return 6;
      const f = g.zext[1] > g.zext[0] ? (zvals[i] - g.zext[0]) / (g.zext[1] - g.zext[0]) : 0.5;
      return 4 + 10 * Math.sqrt(f);
    };
    g.front = paretoFront(xs, ys, model.get("x_better"), model.get("y_better"));
    return g;
  }

  function draw() {
    const models = model.get("models") || [];
    const metrics = model.get("metrics") || [];
    const values = unpack(model.get("values")) || new Float64Array(0);
    const byName = new Map(models.map((m) => [m.name, m]));
    current = { models, metrics, values, byName, front: new Set(), places: new Map(), badgeBoxes: [] };
    syncControls(metrics);
    const width = Math.max(360, plot.clientWidth || root.clientWidth || 720);
    plot.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
    plot.replaceChildren();
    footer.replaceChildren();
    if (!models.length) {
      emptyMessage("No models yet: reg.add(name, model), then reg.evaluate()");
      return;
    }
    const g = derive(width);
    if (!g.shown.length) {
      emptyMessage(`No model has both ${g.xm} and ${g.ym} yet: call reg.evaluate(), or pick other metrics`);
      footer.append(html("span", { text: `${models.length} models, none with both metrics` }));
      return;
    }
    current.front = new Set(g.front);
    drawAxes(g);
    if (model.get("trajectories")) drawTrajectories(g);
    drawFrontier(g);
    const badges = spreadPlaces(g);
    plot.append(drawPoints(g), badges);
    Object.assign(current, { px: g.px, py: g.py, xs: g.xs, ys: g.ys, shown: g.shown });
    plot.append(svg("g", { class: "cnc-labels" }));
    drawLabels();
    drawFooter(g);
    markSelected(root, getSelected(model));
  }

  function drawAxes({ width, ex, ey, sx, sy, logx, logy, xm, ym }) {
    const grid = svg("g", { class: "cnc-grid" });
    const axes = svg("g", { class: "cnc-axis" });
    const xt = logx ? logTicks(ex[0], ex[1]) : linearTicks(ex[0], ex[1], Math.max(3, Math.floor(width / 110)));
    const yt = logy ? logTicks(ey[0], ey[1]) : linearTicks(ey[0], ey[1], 6);
    const x0 = HEIGHT - M.bottom;
    axes.append(svg("line", { x1: M.left, x2: width - M.right, y1: x0, y2: x0 }));
    axes.append(svg("line", { x1: M.left, x2: M.left, y1: M.top, y2: x0 }));
    let lastRight = -Infinity;
    for (const v of xt) {
      const px = sx(v);
      grid.append(svg("line", { x1: px, x2: px, y1: M.top, y2: x0 }));
      axes.append(svg("line", { x1: px, x2: px, y1: x0, y2: x0 + 4 }));
      const label = fmt(v, xm);
      const half = label.length * 3.2;
      if (px - half > lastRight + 6) { // skip tick labels that would collide
        axes.append(svg("text", { x: px, y: x0 + 16, "text-anchor": "middle", text: label }));
        lastRight = px + half;
      }
    }
    for (const v of yt) {
      const py = sy(v);
      grid.append(svg("line", { x1: M.left, x2: width - M.right, y1: py, y2: py }));
      axes.append(svg("line", { x1: M.left - 4, x2: M.left, y1: py, y2: py }));
      axes.append(svg("text", { x: M.left - 7, y: py + 4, "text-anchor": "end", text: fmt(v, ym) }));
    }
    axes.append(svg("text", { class: "cnc-axis-title", x: (M.left + width - M.right) / 2, y: HEIGHT - 8,
      "text-anchor": "middle", text: `${metricTitle(xm, info(xm))}${logx ? ", log scale" : ""} \u2192 ${model.get("x_better")} is better` }));
    axes.append(svg("text", { class: "cnc-axis-title", x: -(M.top + x0) / 2, y: 16, transform: "rotate(-90)",
      "text-anchor": "middle", text: `${metricTitle(ym, info(ym))}${logy ? ", log scale" : ""} \u2192 ${model.get("y_better")} is better` }));
    plot.append(grid, axes);
  }

  // Each model to its parent.
  function drawTrajectories({ shown, sx, sy, xs, ys }) {
    const { models } = current;
    const shownSet = new Set(shown);
    const index = new Map(models.map((m, i) => [m.name, i]));
    const lines = svg("g", { class: "cnc-trajectories" });
    for (const i of shown) {
      const p = index.get(models[i].parent);
      if (p === undefined || !shownSet.has(p)) continue;
      lines.append(svg("line", { class: "cnc-trajectory", "data-edge": `${models[i].parent}->${models[i].name}`,
        x1: sx(xs[p]), y1: sy(ys[p]), x2: sx(xs[i]), y2: sy(ys[i]) }));
    }
    plot.append(lines);
  }

  // The Pareto frontier as a step line through the corners (worse x, worse y).
  function drawFrontier({ front, sx, sy, xs, ys }) {
    if (!front.length) return;
    const worse = (a, b, better) => (better === "lower" ? Math.max(a, b) : Math.min(a, b));
    let d = `M${sx(xs[front[0]])},${sy(ys[front[0]])}`;
    for (let k = 1; k < front.length; k += 1) {
      const a = front[k - 1];
      const b = front[k];
      const cx = worse(xs[a], xs[b], model.get("x_better"));
      const cy = worse(ys[a], ys[b], model.get("y_better"));
      d += ` L${sx(cx)},${sy(cy)} L${sx(xs[b])},${sy(ys[b])}`;
    }
    plot.append(svg("path", { class: "cnc-front", d }));
  }

  // Models at one place spread on a small ring around it (each stays clickable) with a badge
  // that counts them; the tooltip names the others. Sets g.px / g.py, returns the badges.
  function spreadPlaces(g) {
    const { shown, sx, sy, xs, ys, radius } = g;
    const offset = new Map();
    const badges = svg("g", { class: "cnc-badges" });
    for (const group of samePlace(shown, (i) => sx(xs[i]), (i) => sy(ys[i]))) {
      if (group.length < 2) continue;
      const cx = sx(xs[group[0]]);
      const cy = sy(ys[group[0]]);
      // A ring wide enough that neighbours do not cover each other's centres (up to a limit).
      const widest = Math.max(...group.map(radius));
      const spread = Math.min(MAX_SPREAD, (widest + 1.5) / Math.sin(Math.PI / Math.max(2, group.length)));
      group.forEach((i, k) => {
        const angle = (2 * Math.PI * k) / group.length - Math.PI / 2;
        offset.set(i, [spread * Math.cos(angle), spread * Math.sin(angle)]);
        current.places.set(i, group);
      });
      const names = group.map((i) => current.models[i].name);
      const digits = String(group.length).length;
      const [bx, by] = [cx + spread * 0.75 + 10, cy - spread * 0.75 - 10];
      // Names are placed around it later, never over it.
      current.badgeBoxes.push([bx - 4, by - 11, bx + 8 + 7 * digits, by + 7]);
      badges.append(svg("g", { class: "cnc-count-badge", "data-count": group.length,
        "data-models": names.join("\n"), transform: `translate(${bx},${by})`,
        "aria-label": `${group.length} models at this point: ${names.join(", ")}` }, [
        svg("title", { text: `${group.length} models at this point: ${names.join(", ")}` }),
        svg("rect", { x: -2, y: -9, width: 8 + 7 * digits, height: 14, rx: 7 }),
        svg("text", { x: 2 + 3.5 * digits, y: 2, "text-anchor": "middle", text: `${group.length}` }),
      ]));
    }
    g.px = (i) => sx(xs[i]) + (offset.get(i) || [0, 0])[0];
    g.py = (i) => sy(ys[i]) + (offset.get(i) || [0, 0])[1];
    return badges;
  }

  function drawPoints({ shown, radius, xs, ys, xm, ym, cm, cscale, cvals, px, py }) {
    const marks = svg("g", { class: "cnc-points" });
    // Larger points first so small ones stay clickable on top.
    for (const i of [...shown].sort((a, b) => radius(b) - radius(a))) {
      const m = current.models[i];
      const r = radius(i);
      const out = filteredOut(i);
      const onFront = current.front.has(i);
      const label = `${m.name}: ${xm} ${fmt(xs[i], xm)}, ${ym} ${fmt(ys[i], ym)}`
        + (onFront ? ", on the Pareto frontier" : "") + (out ? ", outside the filters" : "");
      const mark = svg("g", {
        class: "cnc-point", "data-model": m.name, role: "option", tabindex: 0, "aria-selected": "false",
        "aria-label": label, "data-pareto": onFront ? "true" : null, "data-filtered": out ? "out" : null,
        "data-place": current.places.has(i) ? current.places.get(i).length : null,
        transform: `translate(${px(i)},${py(i)})`,
      }, [
        svg("circle", { class: "cnc-ring", r: r + 4 }),
        svg("circle", { class: "cnc-dot", r, fill: cm ? cscale(cvals[i]) : "#0072b2" }),
      ]);
      mark.addEventListener("pointerdown", (event) => event.stopPropagation());
      wireMark(mark, { onSelect: (additive) => select(model, m.name, additive),
        tip: (event) => showTip(i, event), hideTip });
      marks.append(mark);
    }
    return marks;
  }

  function drawFooter({ cm, cscale, cvals, domain, zm, zext, shown, missing, xm, ym, notes }) {
    const keys = [html("span", { class: "cnc-key" }, [html("span", { class: "cnc-key-front" }), "Pareto frontier"])];
    if (cm) {
      keys.push(scaleLegend(cm, cscale, (v) => fmt(v, cm)));
      keys.push(domainControl(domainOptions(cvals, cm, info(cm)), domain, (next) => {
        model.set("color_domains", { ...(model.get("color_domains") || {}), [cm]: next });
        model.save_changes();
      }));
    }
    if (zm && zext) keys.push(html("span", { text: `size: ${zm} ${fmt(zext[0], zm)} to ${fmt(zext[1], zm)}` }));
    footer.append(...keys);
    footer.append(html("span", { text: `${shown.length} of ${current.models.length} models` + (missing ? ` (${missing} without ${xm} or ${ym} not shown)` : "") }));
    for (const n of notes) footer.append(html("span", { text: n }));
    footer.append(html("span", { text: "click, shift-click or drag a box to select; Esc clears" }));
  }

  // Names beside the frontier and the selected models, skipping any that would overlap.
  function drawLabels() {
    const layer = plot.querySelector(".cnc-labels");
    if (!layer || !current || !current.shown) return;
    layer.replaceChildren();
    const selected = getSelected(model);
    // Priority: selected, then the frontier, then (when there are few models) the rest.
    const rank = (i) => (selected.has(current.models[i].name) ? 0 : current.front.has(i) ? 1 : 2);
    const wanted = current.shown.filter((i) => rank(i) < 2 || current.shown.length <= 15)
      .sort((a, b) => rank(a) - rank(b));
    const boxes = [...(current.badgeBoxes || [])];
    const width = plot.viewBox.baseVal ? plot.viewBox.baseVal.width : 720;
    for (const i of wanted.slice(0, 40)) {
      const text = truncate(current.models[i].name, 28);
      const w = text.length * 6.2;
      let x = current.px(i) + 9;
      const y = current.py(i) - 8;
      let anchor = "start";
      if (x + w > width - 4) { x -= 18; anchor = "end"; }
      const box = anchor === "start" ? [x, y - 11, x + w, y + 2] : [x - w, y - 11, x, y + 2];
      if (boxes.some((b) => box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1])) continue;
      boxes.push(box);
      layer.append(svg("text", { class: "cnc-point-label", x, y, "text-anchor": anchor, text }));
    }
  }

  // Box selection: drag on the background.
  let brush = null;
  plot.addEventListener("pointerdown", (event) => {
    if (!current || !current.shown) return;
    const r = plot.getBoundingClientRect();
    const k = plot.viewBox.baseVal.width / r.width;
    brush = { x0: (event.clientX - r.left) * k, y0: (event.clientY - r.top) * k, k, r, additive: event.shiftKey,
      rect: svg("rect", { class: "cnc-brush", width: 0, height: 0 }) };
    plot.append(brush.rect);
    plot.setPointerCapture(event.pointerId);
  });
  plot.addEventListener("pointermove", (event) => {
    if (!brush) return;
    const x = (event.clientX - brush.r.left) * brush.k;
    const y = (event.clientY - brush.r.top) * brush.k;
    brush.x1 = x;
    brush.y1 = y;
    brush.rect.setAttribute("x", Math.min(x, brush.x0));
    brush.rect.setAttribute("y", Math.min(y, brush.y0));
    brush.rect.setAttribute("width", Math.abs(x - brush.x0));
    brush.rect.setAttribute("height", Math.abs(y - brush.y0));
  });
  const endBrush = () => {
    if (!brush) return;
    const b = brush;
    brush = null;
    b.rect.remove();
    if (b.x1 === undefined || (Math.abs(b.x1 - b.x0) < 3 && Math.abs(b.y1 - b.y0) < 3)) {
      if (!b.additive) { model.set("selected", []); model.save_changes(); }
      return;
    }
    const [xa, xb] = [Math.min(b.x0, b.x1), Math.max(b.x0, b.x1)];
    const [ya, yb] = [Math.min(b.y0, b.y1), Math.max(b.y0, b.y1)];
    const inside = current.shown.filter((i) => {
      const px = current.px(i);
      const py = current.py(i);
      return px >= xa && px <= xb && py >= ya && py <= yb;
    }).map((i) => current.models[i].name);
    const next = b.additive ? [...new Set([...getSelected(model), ...inside])] : inside;
    model.set("selected", next);
    model.save_changes();
  };
  plot.addEventListener("pointerup", endBrush);
  plot.addEventListener("pointercancel", endBrush);
  root.addEventListener("keydown", (event) => {
    if (event.key === "Escape") { model.set("selected", []); model.save_changes(); }
  });

  // Python sets several traits at once: draw once after all their change events.
  const redraw = coalesce(draw);
  const onSelected = () => { markSelected(root, getSelected(model)); drawLabels(); };
  const unlisten = listen(model, {
    "change:models change:metrics change:values change:x change:y change:color change:size change:log_x change:log_y change:x_better change:y_better change:trajectories change:metric_info change:color_domains change:filtered_out": redraw,
    "change:selected": onSelected,
  });
  let lastWidth = 0;
  const resize = new ResizeObserver(() => {
    const w = plot.clientWidth;
    if (w && Math.abs(w - lastWidth) > 2) { lastWidth = w; draw(); }
  });
  resize.observe(plot);
  draw();
  root.dataset.renderMs = String(performance.now() - t0);
  return () => {
    unlisten();
    redraw.cancel();
    resize.disconnect();
  };
}

function defaultLog(metric) {
  const name = String(metric).toLowerCase();
  return /bytes|size|latency|macs|params|memory/.test(name) && !name.includes("sparsity");
}

export default { render };

// The efficiency scatter: each model a point of two metrics, the Pareto frontier
// as a step line, optional lines to parents, click / shift-click / box selection.
// Its parts live in js/src/scatter/: geometry (geometry.js), axes and footer (axes.js), marks
// and labels (marks.js), box selection (brush.js), CSS (css.js).
import { html, svg, formatParams } from "../shared/dom.js";
import { colourScale, numericExtent } from "../shared/colour.js";
import { formatMetric } from "../shared/format.js";
import { getSelected, markSelected } from "../shared/selection.js";
import { addStyles, viewStyles } from "../shared/styles.js";
import { tooltip as makeTooltip } from "../shared/tooltip.js";
import { listen, coalesce } from "../shared/listen.js";
import { unpack } from "../shared/wire.js";
import { paretoFront } from "../shared/pareto.js";
import { SCATTER_CSS } from "../scatter/css.js";
import { HEIGHT, M, scale, padded, defaultLog } from "../scatter/geometry.js";
import { drawAxes, drawFooter } from "../scatter/axes.js";
import { drawTrajectories, drawFrontier, spreadPlaces, drawPoints, drawLabels } from "../scatter/marks.js";
import { wireBrush } from "../scatter/brush.js";

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

// The toolbar's pickers and toggles, each setting its trait.
function layout(root, model) {
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
  for (const [box, key] of [[logX, "log_x"], [logY, "log_y"], [traj, "trajectories"]]) {
    box.addEventListener("change", () => { model.set(key, box.checked); model.save_changes(); });
  }
  for (const [button, key] of [[xDir, "x_better"], [yDir, "y_better"]]) {
    button.addEventListener("click", () => {
      model.set(key, model.get(key) === "lower" ? "higher" : "lower");
      model.save_changes();
    });
  }
  return { pickers, logX, logY, traj, xDir, yDir, plot, footer };
}

function syncControls(view, metrics) {
  const { model } = view;
  const { pickers, logX, logY, traj, xDir, yDir } = view.dom;
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

function column(current, metric) {
  if (!current) return [];
  const j = current.metrics.indexOf(metric);
  if (j < 0) return current.models.map(() => NaN);
  const w = current.metrics.length;
  return current.models.map((_, i) => current.values[i * w + j]);
}

// What is drawn, derived from the synced state: plotted indices, scales, colour and size.
function derive(view, width) {
  const { model, current, info } = view;
  const { models } = current;
  const xm = model.get("x");
  const ym = model.get("y");
  const xs = column(current, xm);
  const ys = column(current, ym);
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
  g.cvals = g.cm ? column(current, g.cm) : null;
  g.domain = g.cm ? (model.get("color_domains") || {})[g.cm] || "data" : "data";
  g.cscale = g.cm ? colourScale(g.cvals, { domain: g.domain, info: info(g.cm) }) : null;
  const zvals = g.zm ? column(current, g.zm) : null;
  g.zext = g.zm ? numericExtent(zvals) : null;
  g.radius = (i) => {
    if (!g.zext || !Number.isFinite(zvals[i])) return 6;
    const f = g.zext[1] > g.zext[0] ? (zvals[i] - g.zext[0]) / (g.zext[1] - g.zext[0]) : 0.5;
    return 4 + 10 * Math.sqrt(f);
  };
  g.front = paretoFront(xs, ys, model.get("x_better"), model.get("y_better"));
  return g;
}

function draw(view) {
  const { model, root, plot, footer } = view;
  const models = model.get("models") || [];
  const metrics = model.get("metrics") || [];
  const values = unpack(model.get("values")) || new Float64Array(0);
  const byName = new Map(models.map((m) => [m.name, m]));
  view.current = { models, metrics, values, byName, front: new Set(), places: new Map(), badgeBoxes: [] };
  syncControls(view, metrics);
  const width = Math.max(360, plot.clientWidth || root.clientWidth || 720);
  plot.setAttribute("viewBox", `0 0 ${width} ${HEIGHT}`);
  plot.replaceChildren();
  footer.replaceChildren();
  const emptyMessage = (text) => plot.append(svg("text", { class: "cnc-empty-plot", x: 24, y: 40, text }));
  if (!models.length) {
    emptyMessage("No models yet: reg.add(name, model), then reg.evaluate()");
    return;
  }
  const g = derive(view, width);
  if (!g.shown.length) {
    emptyMessage(`No model has both ${g.xm} and ${g.ym} yet: call reg.evaluate(), or pick other metrics`);
    footer.append(html("span", { text: `${models.length} models, none with both metrics` }));
    return;
  }
  view.current.front = new Set(g.front);
  drawAxes(view, g);
  if (model.get("trajectories")) drawTrajectories(view, g);
  drawFrontier(view, g);
  const badges = spreadPlaces(view, g);
  plot.append(drawPoints(view, g), badges);
  Object.assign(view.current, { px: g.px, py: g.py, xs: g.xs, ys: g.ys, shown: g.shown });
  plot.append(svg("g", { class: "cnc-labels" }));
  drawLabels(view);
  drawFooter(view, g);
  markSelected(root, getSelected(model));
}

// The view's state in the browser and what its parts share: formatting, the tooltip.
function viewState(model, root, dom) {
  const tip = makeTooltip(root);
  const view = { model, root, dom, plot: dom.plot, footer: dom.footer, current: null }; // current: {models, metrics, values, byName, ...}
  view.info = (metric) => (model.get("metric_info") || {})[metric] || {};
  view.fmt = (v, metric) => formatMetric(v, metric, view.info(metric));
  view.showTip = (i, event) => {
    const { current } = view;
    const m = current.models[i];
    const { root: first, steps } = chain(current.byName, m.name);
    const w = current.metrics.length;
    const rows = current.metrics.map((metric, j) => [metric, view.fmt(current.values[i * w + j], metric),
      view.info(metric).description || ""]);
    const notes = [];
    if (current.front.has(i)) notes.push("on the Pareto frontier");
    const others = (current.places.get(i) || []).filter((k) => k !== i);
    if (others.length) {
      notes.push(`${others.length + 1} models at this point: ${others.map((k) => current.models[k].name).join(", ")} and this one`);
    }
    tip.show({ title: m.name, sub: steps.length ? [first, ...steps].join(" \u2192 ") : "", rows, notes }, event);
  };
  view.hideTip = () => tip.hide();
  return view;
}

function render({ model, el }) {
  const t0 = performance.now();
  const root = html("div", { class: "cnc-view cnc-scatter" });
  addStyles();
  viewStyles("scatter", SCATTER_CSS);
  el.append(root);
  const dom = layout(root, model);
  const view = viewState(model, root, dom);
  wireBrush(view);
  // Python sets several traits at once: draw once after all their change events.
  const redraw = coalesce(() => draw(view));
  const onSelected = () => { markSelected(root, getSelected(model)); drawLabels(view); };
  const unlisten = listen(model, {
    "change:models change:metrics change:values change:x change:y change:color change:size change:log_x change:log_y change:x_better change:y_better change:trajectories change:metric_info change:color_domains change:filtered_out": redraw,
    "change:selected": onSelected,
  });
  let lastWidth = 0;
  const resize = new ResizeObserver(() => {
    const w = dom.plot.clientWidth;
    if (w && Math.abs(w - lastWidth) > 2) { lastWidth = w; draw(view); }
  });
  resize.observe(dom.plot);
  draw(view);
  root.dataset.renderMs = String(performance.now() - t0);
  return () => {
    unlisten();
    redraw.cancel();
    resize.disconnect();
  };
}

export default { render };

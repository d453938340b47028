// Filter panel: a histogram per numeric metric; brushing a range writes reg.filters.
import { html, svg } from "../shared/dom.js";
import { formatMetric } from "../shared/format.js";
import { isOut } from "../shared/filter.js";
import { addStyles } from "../shared/styles.js";
import { listen } from "../shared/listen.js";

const W = 260;
const H = 56;
const PAD_X = 6;
const BINS = 20;

// A brushed end rounded outwards to a step of about a 500th of the axis: "0.7025", not
// "0.702499999", and a model sitting exactly on the edge stays inside.
function round(value, span, direction) {
  const step = 10 ** Math.floor(Math.log10(span / 500));
  const digits = Math.max(0, -Math.floor(Math.log10(step)));
  return Number((direction(value / step) * step).toFixed(digits));
}

function finite(values) {
  return values.filter((v) => typeof v === "number" && Number.isFinite(v));
}

function render({ model, el }) {
  const root = html("div", { class: "cnc-view cnc-filter-panel" });
  addStyles();
  el.append(root);
  const title = html("span", { class: "cnc-title", text: "Filters" });
  const count = html("span", { class: "cnc-filter-count", role: "status" });
  const clear = html("button", { type: "button", text: "Clear", title: "Remove every filter" });
  const list = html("div", { class: "cnc-filter-list" });
  root.append(html("div", { class: "cnc-toolbar" }, [title, count, clear]), list);

  function setFilters(next) {
    model.set("filters", next);
    model.save_changes();
  }

  function setRange(metric, range) {
    const next = { ...(model.get("filters") || {}) };
    if (range) next[metric] = range;
    else delete next[metric];
    setFilters(next);
  }

  // One metric's histogram, brush and inputs; a sentence when every model has the same value
  // (nothing to narrow down); null when no model has it.
  function metricFilter(metric, values, info, filters, metrics) {
    const fmt = (v) => formatMetric(v, metric, info);
    const vals = finite(values);
    if (!vals.length) return null;
    if (vals.length === values.length && vals.every((v) => v === vals[0]) && !filters[metric]) {
      // Nothing to narrow down: one line instead of a histogram with one bar.
      return `${metric} ${fmt(vals[0])}`;
    }
    let lo = Math.min(...vals);
    let hi = Math.max(...vals);
    if (hi === lo) { lo -= 0.5 * Math.abs(lo || 1) * 0.01; hi += 0.5 * Math.abs(hi || 1) * 0.01; }
    const x = (v) => PAD_X + ((v - lo) / (hi - lo)) * (W - 2 * PAD_X);
    const inv = (px) => lo + ((px - PAD_X) / (W - 2 * PAD_X)) * (hi - lo);
    const bin = (v) => Math.min(BINS - 1, Math.max(0, Math.floor(((v - lo) / (hi - lo)) * BINS)));
    const all = new Array(BINS).fill(0);
    const inside = new Array(BINS).fill(0);
    // "Inside" by every *other* filter, so a brushed metric still shows its whole shape.
    const others = Object.fromEntries(Object.entries(filters).filter(([m]) => m !== metric));
    values.forEach((v, i) => {
      if (typeof v !== "number" || !Number.isFinite(v)) return;
      all[bin(v)] += 1;
      const row = Object.fromEntries(Object.entries(metrics).map(([m, vs]) => [m, vs[i]]));
      if (!isOut(others, row)) inside[bin(v)] += 1;
    });
    const peak = Math.max(...all, 1);
    const bw = (W - 2 * PAD_X) / BINS;
    const chart = svg("svg", { width: W, height: H + 4, class: "cnc-hist", role: "img",
      "aria-label": `${metric} histogram, ${fmt(Math.min(...vals))} to ${fmt(Math.max(...vals))}; drag to filter` });
    for (let b = 0; b < BINS; b += 1) {
      const hAll = (all[b] / peak) * H;
      const hIn = (inside[b] / peak) * H;
      if (all[b]) chart.append(svg("rect", { class: "cnc-bar-all", x: PAD_X + b * bw + 0.5, y: H - hAll, width: bw - 1, height: hAll }));
      if (inside[b]) chart.append(svg("rect", { class: "cnc-bar-in", x: PAD_X + b * bw + 0.5, y: H - hIn, width: bw - 1, height: hIn }));
    }
    const range = filters[metric];
    const brush = svg("rect", { class: "cnc-brush", y: 0, height: H, visibility: "hidden" });
    if (range) {
      const a = x(range[0] ?? lo);
      const b = x(range[1] ?? hi);
      brush.setAttribute("x", Math.max(0, Math.min(a, b)));
      brush.setAttribute("width", Math.max(1, Math.abs(b - a)));
      brush.setAttribute("visibility", "visible");
    }
    chart.append(brush);
    let drag = null;
    const localX = (event) => Math.max(PAD_X, Math.min(W - PAD_X, event.clientX - chart.getBoundingClientRect().left));
    chart.addEventListener("pointerdown", (event) => {
      drag = { x0: localX(event) };
      chart.setPointerCapture(event.pointerId);
    });
    chart.addEventListener("pointermove", (event) => {
      if (!drag) return;
      const x1 = localX(event);
      brush.setAttribute("x", Math.min(drag.x0, x1));
      brush.setAttribute("width", Math.abs(x1 - drag.x0));
      brush.setAttribute("visibility", "visible");
    });
    chart.addEventListener("pointerup", (event) => {
      if (!drag) return;
      const x1 = localX(event);
      const [a, b] = [Math.min(drag.x0, x1), Math.max(drag.x0, x1)];
      drag = null;
      if (b - a < 3) setRange(metric, null); // a click clears this metric's filter
      else setRange(metric, [round(inv(a), hi - lo, Math.floor), round(inv(b), hi - lo, Math.ceil)]);
    });
    const low = html("input", { type: "number", step: "any", "aria-label": `${metric} lowest`, placeholder: "min",
      value: range && range[0] !== null ? String(range[0]) : "" });
    const high = html("input", { type: "number", step: "any", "aria-label": `${metric} highest`, placeholder: "max",
      value: range && range[1] !== null ? String(range[1]) : "" });
    const typed = () => {
      const a = low.value === "" ? null : Number(low.value);
      const b = high.value === "" ? null : Number(high.value);
      setRange(metric, a === null && b === null ? null : [a, b]);
    };
    for (const input of [low, high]) {
      input.addEventListener("change", typed);
      input.addEventListener("keydown", (event) => { if (event.key === "Enter") typed(); });
    }
    const summary = range
      ? `${fmt(range[0] ?? Math.min(...vals))} \u2013 ${fmt(range[1] ?? Math.max(...vals))}`
      : `${fmt(Math.min(...vals))} \u2013 ${fmt(Math.max(...vals))}`;
    const missing = values.length - vals.length;
    return html("div", { class: range ? "cnc-filter cnc-active" : "cnc-filter", "data-metric": metric }, [
      html("div", { class: "cnc-filter-head" }, [
        html("span", { class: "cnc-legend-title", text: metric }),
        html("span", { class: "cnc-filter-range", text: summary }),
        missing ? html("span", { class: "cnc-note", text: `${missing} n/a` }) : null,
      ]),
      chart,
      html("div", { class: "cnc-filter-inputs" }, [low, html("span", { text: "to" }), high]),
    ]);
  }

  function draw() {
    const table = model.get("table") || {};
    const names = table.names || [];
    const metrics = table.metrics || {};
    const infos = table.info || {};
    const filters = model.get("filters") || {};
    const out = new Set(model.get("filtered_out") || []);
    count.textContent = names.length ? `${names.length - out.size} of ${names.length} models inside` : "";
    clear.disabled = Object.keys(filters).length === 0;
    list.replaceChildren();
    if (!names.length || !Object.keys(metrics).length) {
      list.append(html("div", { class: "cnc-empty", text: "No metrics yet: reg.evaluate() measures the models" }));
      return;
    }
    const constant = [];
    for (const [metric, values] of Object.entries(metrics)) {
      const shown = metricFilter(metric, values, infos[metric] || {}, filters, metrics);
      if (typeof shown === "string") constant.push(shown);
      else if (shown) list.append(shown);
    }
    if (constant.length) {
      list.append(html("div", { class: "cnc-note cnc-constant", text: `the same for every model: ${constant.join(", ")}` }));
    }
  }

  clear.addEventListener("click", () => setFilters({}));
  const unlisten = listen(model, { "change:table change:filters change:filtered_out": draw });
  draw();
  return unlisten;
}

export default { render };

// The provenance graph's encodings: the metric pickers (colour, size, columns), the Pareto
// frontier's models (the same rule as the scatter and reg.pareto) with its key, the colour
// scale with its legend and domain control, and the radius by size metric with its legend.
//
// `view` (views/provenance.js) holds model, info(metric), fmt(metric) and the toolbar's
// dom.colourSelect, dom.sizeSelect, dom.columnsSelect, dom.domainBox, dom.legendBox,
// dom.sizeLegend, dom.frontKey.
import { html } from "../shared/dom.js";
import { colourScale, scaleLegend, domainOptions, domainControl } from "../shared/colour.js";
import { paretoFront } from "../shared/pareto.js";
import { RADIUS } from "./marks.js";

const MAX_RADIUS = 16;

// The metrics with a finite number for some model, sorted.
export function metricNames(nodes) {
  const names = new Set();
  for (const n of nodes) {
    for (const [k, v] of Object.entries(n.metrics || {})) {
      if (typeof v === "number" && Number.isFinite(v)) names.add(k);
    }
  }
  return [...names].sort();
}

function options(selectEl, names, current, none) {
  const opts = none ? [html("option", { value: "", text: "none", selected: !current })] : [];
  selectEl.replaceChildren(...opts, ...names.map((m) => html("option", { value: m, text: m, selected: m === current })));
}

// The pickers from the synced state; returns the metric that colours and the one that sizes.
export function syncControls(view, nodes) {
  const { model } = view;
  const { colourSelect, sizeSelect, columnsSelect } = view.dom;
  const metrics = metricNames(nodes);
  let colourBy = model.get("color_by");
  if (!metrics.includes(colourBy)) colourBy = metrics[0] || "";
  options(colourSelect, metrics, colourBy, false);
  colourSelect.disabled = metrics.length === 0;
  const sizeBy = metrics.includes(model.get("size_by")) ? model.get("size_by") : "";
  options(sizeSelect, metrics, sizeBy, true);
  columnsSelect.value = model.get("columns") || "depth";
  return { colourBy, sizeBy };
}

// The Pareto frontier of two metrics, the same rule as the scatter and reg.pareto.
export function frontier(view, nodes) {
  const pareto = view.model.get("pareto") || {};
  const onFront = new Set();
  if (pareto.x && pareto.y) {
    const num = (v) => (typeof v === "number" ? v : NaN);
    const xs = nodes.map((n) => num((n.metrics || {})[pareto.x]));
    const ys = nodes.map((n) => num((n.metrics || {})[pareto.y]));
    for (const i of paretoFront(xs, ys, pareto.x_better || "lower", pareto.y_better || "higher")) onFront.add(nodes[i].name);
  }
  const { frontKey } = view.dom;
  frontKey.replaceChildren();
  if (onFront.size) {
    frontKey.append(html("span", { class: "cnc-key-front" }),
      html("span", { text: `Pareto frontier of ${pareto.x} and ${pareto.y}` }));
  }
  return onFront;
}

// Colour scale and radius of the marks, with their legends.
export function encodings(view, nodes, colourBy, sizeBy) {
  const { model, info, fmt } = view;
  const { domainBox, legendBox, sizeLegend } = view.dom;
  const values = nodes.map((n) => (n.metrics || {})[colourBy]);
  const domain = (model.get("color_domains") || {})[colourBy] || "data";
  const scale = colourScale(values, { domain, info: info(colourBy) });
  domainBox.replaceChildren(domainControl(domainOptions(values, colourBy, info(colourBy)), domain, (next) => {
    model.set("color_domains", { ...(model.get("color_domains") || {}), [colourBy]: next });
    model.save_changes();
  }));
  legendBox.replaceChildren(scaleLegend(colourBy || "metric", scale, fmt(colourBy)));
  // Area proportional to the value (from zero), so twice the size looks twice as big.
  const sizeValues = sizeBy ? nodes.map((n) => (n.metrics || {})[sizeBy]).filter((v) => Number.isFinite(v) && v >= 0) : [];
  const sizeMax = sizeValues.length ? Math.max(...sizeValues) : 0;
  const radiusOf = (node) => {
    if (!sizeBy || !(sizeMax > 0)) return RADIUS;
    const v = (node.metrics || {})[sizeBy];
    if (!Number.isFinite(v) || v < 0) return RADIUS;
    return Math.max(2.5, MAX_RADIUS * Math.sqrt(v / sizeMax));
  };
  sizeLegend.replaceChildren();
  if (sizeBy) {
    sizeLegend.append(html("span", { class: "cnc-legend-title", text: `size: ${sizeBy}` }),
      html("span", { text: sizeMax > 0 ? `area \u221d value; largest ${fmt(sizeBy)(sizeMax)}` : "no values" }));
  }
  return { scale, radiusOf };
}

// The provenance graph: which model was made from which, by what operation.
// Its parts live in js/src/provenance/: pickers, frontier and legends (encodings.js), edges
// and nodes (marks.js), pan, zoom and box selection (viewport.js), keyboard (keyboard.js);
// the layout of the forest is shared/tree.js.
import { html, svg } from "../shared/dom.js";
import { formatMetric, formatNumber, metricKind } from "../shared/format.js";
import { markFiltered } from "../shared/filter.js";
import { getSelected, markSelected } from "../shared/selection.js";
import { addStyles } from "../shared/styles.js";
import { tooltip as makeTooltip } from "../shared/tooltip.js";
import { listen } from "../shared/listen.js";
import { buildForest, layout, layoutByOperation } from "../shared/tree.js";
import { wheelZoom } from "../shared/zoom.js";
import { syncControls, frontier, encodings } from "../provenance/encodings.js";
import { drawEdge, drawNode, edgeLabel } from "../provenance/marks.js";
import { PAD, applyView, zoomAt, fitView, wireDrag } from "../provenance/viewport.js";
import { rovingFocus, wireKeyboard } from "../provenance/keyboard.js";

const COL = 250;
const ROW = 46;

// The view's elements.
function elements(root) {
  const title = html("span", { class: "cnc-title", text: "Provenance" });
  const colourSelect = html("select", { "aria-label": "Colour models by metric" });
  const domainBox = html("span");
  const sizeSelect = html("select", { "aria-label": "Size models by metric" });
  const columnsSelect = html("select", { "aria-label": "Columns" }, [
    html("option", { value: "depth", text: "by depth" }),
    html("option", { value: "operation", text: "by operation" }),
  ]);
  const legendBox = html("span", { class: "cnc-legend-box" });
  const sizeLegend = html("span", { class: "cnc-size-legend" });
  const frontKey = html("span", { class: "cnc-front-key" });
  const boxButton = html("button", { type: "button", text: "\u25a2 Select", title: "Drag a box to select the models inside (or Shift+drag)", "aria-pressed": "false" });
  const zoomIn = html("button", { type: "button", text: "+", title: "Zoom in", "aria-label": "Zoom in" });
  const zoomOut = html("button", { type: "button", text: "\u2212", title: "Zoom out", "aria-label": "Zoom out" });
  const fit = html("button", { type: "button", text: "Fit", title: "Fit the whole forest" });
  const toolbar = html("div", { class: "cnc-toolbar" }, [
    title,
    html("label", { text: "colour " }, [colourSelect]), domainBox,
    html("label", { text: "size " }, [sizeSelect]),
    html("label", { text: "columns " }, [columnsSelect]),
    boxButton, zoomOut, zoomIn, fit,
  ]);
  const legendRow = html("div", { class: "cnc-toolbar cnc-legend-row" }, [legendBox, sizeLegend, frontKey]);
  const canvas = svg("svg", { role: "listbox", "aria-multiselectable": "true", "aria-label": "Models by provenance" });
  const viewport = svg("g", { class: "cnc-viewport" });
  const brush = svg("rect", { class: "cnc-brush", visibility: "hidden" });
  canvas.append(viewport, brush);
  root.append(toolbar, legendRow, canvas);
  return { colourSelect, domainBox, sizeSelect, columnsSelect, legendBox, sizeLegend, frontKey,
    boxButton, zoomIn, zoomOut, fit, canvas, viewport, brush };
}

// The view's state in the browser and what its parts share: formatting, the tooltip.
function viewState(model, root, dom) {
  const tip = makeTooltip(root);
  const view = {
    model, root, dom,
    collapsed: new Set(),
    cam: { x: PAD, y: PAD, k: 1 },
    fitted: false,
    placed: new Map(), // name -> {x, y} in layout coordinates, for boxes and arrow keys
    boxMode: false,
    extent: null,
    focusName: null,
  };
  view.info = (metric) => (model.get("metric_info") || {})[metric] || {};
  view.fmt = (metric) => (v) => formatMetric(v, metric, view.info(metric));
  view.showTip = (node, event) => {
    const { info } = view;
    // Fractions print as percentages; the tooltip also gives the exact value.
    const exact = (k, v) => (metricKind(k, info(k)) === "fraction" && typeof v === "number"
      ? ` (${formatNumber(v)})` : "");
    const rows = Object.entries(node.metrics || {}).map(([k, v]) => [k, formatMetric(v, k, info(k)) + exact(k, v)]);
    const notes = rows.length ? [] : ["not evaluated yet"];
    if ((model.get("filtered_out") || []).includes(node.name)) notes.push("outside the current filters");
    tip.show({ title: node.name, sub: node.parent ? `from ${node.parent}: ${edgeLabel(node)}` : "", rows, notes }, event);
  };
  view.hideTip = () => tip.hide();
  view.draw = () => draw(view);
  return view;
}

function draw(view) {
  const { model, root, dom } = view;
  const nodes = model.get("nodes") || [];
  const { colourBy, sizeBy } = syncControls(view, nodes);
  const onFront = frontier(view, nodes);
  const { scale, radiusOf } = encodings(view, nodes, colourBy, sizeBy);
  dom.viewport.replaceChildren();
  view.placed = new Map();
  if (!nodes.length) {
    dom.viewport.append(svg("text", { x: 0, y: 20, text: "No models yet: reg.add(name, model)" }));
    dom.canvas.setAttribute("height", 120);
    return;
  }
  const forest = buildForest(nodes);
  for (const name of [...view.collapsed]) if (!forest.byName.has(name)) view.collapsed.delete(name);
  const byOperation = (model.get("columns") || "depth") === "operation";
  const { positions, rows, depth, columns } = byOperation ? layoutByOperation(forest, view.collapsed) : layout(forest, view.collapsed);
  view.extent = { w: depth * COL + 160, h: rows * ROW };
  const height = Math.min(580, Math.max(260, view.extent.h + 2 * PAD));
  dom.canvas.setAttribute("height", height);
  dom.canvas.style.height = `${height}px`;
  const at = (name) => {
    const p = positions.get(name);
    return { x: p.depth * COL, y: p.row * ROW };
  };
  const g = { forest, positions, at, radiusOf, byOperation, colourBy, scale, onFront,
    edges: svg("g", { class: "cnc-edges" }), labels: svg("g", { class: "cnc-edge-labels" }),
    marks: svg("g", { class: "cnc-nodes" }) };
  dom.viewport.append(g.edges, g.labels, g.marks);
  if (columns) {
    columns.forEach((c, i) => dom.viewport.append(svg("text", {
      class: "cnc-column-label", x: i * COL, y: -26, "text-anchor": "middle", "data-column": c, text: c,
    })));
  }
  for (const node of nodes) {
    if (!positions.has(node.name)) continue;
    if (node.parent !== null && node.parent !== undefined && positions.has(node.parent)) drawEdge(g, node);
    drawNode(view, g, node);
  }
  markSelected(root, getSelected(model));
  markFiltered(root, model.get("filtered_out"));
  rovingFocus(view);
  if (!view.fitted && dom.canvas.clientWidth) {
    fitView(view);
    view.fitted = true;
  } else {
    applyView(view);
  }
}

// The toolbar's buttons and pickers.
function wireToolbar(view) {
  const { model, dom } = view;
  const centre = () => [dom.canvas.clientWidth / 2, dom.canvas.clientHeight / 2];
  dom.zoomIn.addEventListener("click", () => zoomAt(view, 1.25, ...centre()));
  dom.zoomOut.addEventListener("click", () => zoomAt(view, 0.8, ...centre()));
  dom.fit.addEventListener("click", () => fitView(view));
  dom.boxButton.addEventListener("click", () => {
    view.boxMode = !view.boxMode;
    dom.boxButton.setAttribute("aria-pressed", view.boxMode ? "true" : "false");
  });
  const setTrait = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };
  dom.colourSelect.addEventListener("change", () => setTrait("color_by", dom.colourSelect.value));
  dom.sizeSelect.addEventListener("change", () => setTrait("size_by", dom.sizeSelect.value));
  dom.columnsSelect.addEventListener("change", () => {
    setTrait("columns", dom.columnsSelect.value);
    view.fitted = false;
  });
}

function render({ model, el }) {
  const root = html("div", { class: "cnc-view cnc-provenance" });
  addStyles();
  el.append(root);
  const dom = elements(root);
  const view = viewState(model, root, dom);
  wireKeyboard(view);
  wireDrag(view);
  const zoom = wheelZoom(dom.canvas, { onZoom: (factor, cx, cy) => zoomAt(view, factor, cx, cy), hintParent: root, label: "the graph" });
  wireToolbar(view);
  const refit = () => {
    draw(view);
    fitView(view);
  };
  const unlisten = listen(model, {
    "change:nodes change:color_by change:color_domains change:size_by change:metric_info change:pareto": view.draw,
    "change:columns": refit,
    "change:selected": () => markSelected(root, getSelected(model)),
    "change:filtered_out": () => markFiltered(root, model.get("filtered_out")),
  });
  draw(view);
  // The element may be laid out only after render returns (JupyterLab output areas).
  requestAnimationFrame(() => {
    if (!view.fitted) {
      fitView(view);
      view.fitted = true;
    }
  });
  return () => {
    unlisten();
    zoom.destroy();
  };
}

export default { render };

// The provenance graph: which model was made from which, by what operation.
import { html, svg, formatParams, truncate, wireMark } from "../shared/dom.js";
import { colourScale, scaleLegend, domainOptions, domainControl, MISSING } from "../shared/colour.js";
import { formatMetric, formatNumber, metricKind } from "../shared/format.js";
import { markFiltered } from "../shared/filter.js";
import { paretoFront } from "../shared/pareto.js";
import { getSelected, select, markSelected } from "../shared/selection.js";
import { addStyles } from "../shared/styles.js";
import { tooltip as makeTooltip } from "../shared/tooltip.js";
import { listen } from "../shared/listen.js";
import { buildForest, layout, layoutByOperation, countDescendants } from "../shared/tree.js";
import { wheelZoom } from "../shared/zoom.js";

const COL = 250;
const ROW = 46;
const RADIUS = 9;
const MAX_RADIUS = 16;
const PAD = 40;

function metricNames(nodes) {
  const names = new Set();
  for (const n of nodes) {
    for (const [k, v] of Object.entries(n.metrics || {})) {
      if (typeof v === "number" && Number.isFinite(v)) names.add(k);
    }
  }
  return [...names].sort();
}

function edgeLabel(node) {
  const shown = node.shown_params ? Object.fromEntries(
    Object.entries(node.params || {}).filter(([k]) => node.shown_params.includes(k))) : node.params;
  const params = formatParams(shown);
  const op = node.operation || "";
  return params ? `${op} (${params})` : op;
}

function render({ model, el }) {
  const root = html("div", { class: "cnc-view cnc-provenance" });
  addStyles();
  el.append(root);

  const collapsed = new Set();
  const view = { x: PAD, y: PAD, k: 1 };
  let fitted = false;
  let placed = new Map(); // name -> {x, y} in layout coordinates, for boxes and arrow keys
  let boxMode = false;

  const info = (metric) => (model.get("metric_info") || {})[metric] || {};
  const fmt = (metric) => (v) => formatMetric(v, metric, info(metric));

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
  const tip = makeTooltip(root);

  function applyView() {
    viewport.setAttribute("transform", `translate(${view.x},${view.y}) scale(${view.k})`);
    // Semantic zoom: far out, edge labels are unreadable clutter; their text stays in titles.
    root.classList.toggle("cnc-zoomed-out", view.k < 0.6);
  }

  function zoomAt(factor, cx, cy) {
    const k = Math.min(4, Math.max(0.1, view.k * factor));
    view.x = cx - ((cx - view.x) * k) / view.k;
    view.y = cy - ((cy - view.y) * k) / view.k;
    view.k = k;
    applyView();
  }

  let extent = null;
  function fitView() {
    if (!extent) return;
    const width = canvas.clientWidth || 800;
    const height = canvas.clientHeight || 400;
    const k = Math.min(1.5, Math.max(0.35, Math.min((width - 2 * PAD) / Math.max(1, extent.w),
      (height - 2 * PAD) / Math.max(1, extent.h))));
    view.k = k;
    view.x = PAD;
    view.y = Math.max(PAD, (height - extent.h * k) / 2);
    applyView();
  }

  function showTip(node, event) {
    // Fractions print as percentages; the tooltip also gives the exact value.
    const exact = (k, v) => (metricKind(k, info(k)) === "fraction" && typeof v === "number"
      ? ` (${formatNumber(v)})` : "");
    const rows = Object.entries(node.metrics || {}).map(([k, v]) => [k, formatMetric(v, k, info(k)) + exact(k, v)]);
    const notes = rows.length ? [] : ["not evaluated yet"];
    if ((model.get("filtered_out") || []).includes(node.name)) notes.push("outside the current filters");
    tip.show({ title: node.name, sub: node.parent ? `from ${node.parent}: ${edgeLabel(node)}` : "", rows, notes }, event);
  }

  const hideTip = () => tip.hide();

  function options(selectEl, names, current, none) {
    const opts = none ? [html("option", { value: "", text: "none", selected: !current })] : [];
    selectEl.replaceChildren(...opts, ...names.map((m) => html("option", { value: m, text: m, selected: m === current })));
  }

  // The pickers from the synced state; returns the metric that colours and the one that sizes.
  function syncControls(nodes) {
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
  function frontier(nodes) {
    const pareto = model.get("pareto") || {};
    const onFront = new Set();
    if (pareto.x && pareto.y) {
      const num = (v) => (typeof v === "number" ? v : NaN);
      const xs = nodes.map((n) => num((n.metrics || {})[pareto.x]));
      const ys = nodes.map((n) => num((n.metrics || {})[pareto.y]));
      for (const i of paretoFront(xs, ys, pareto.x_better || "lower", pareto.y_better || "higher")) onFront.add(nodes[i].name);
    }
    frontKey.replaceChildren();
    if (onFront.size) {
      frontKey.append(html("span", { class: "cnc-key-front" }),
        html("span", { text: `Pareto frontier of ${pareto.x} and ${pareto.y}` }));
    }
    return onFront;
  }

  // Colour scale and radius of the marks, with their legends.
  function encodings(nodes, colourBy, sizeBy) {
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

  function draw() {
    const nodes = model.get("nodes") || [];
    const { colourBy, sizeBy } = syncControls(nodes);
    const onFront = frontier(nodes);
    const { scale, radiusOf } = encodings(nodes, colourBy, sizeBy);
    viewport.replaceChildren();
    placed = new Map();
    if (!nodes.length) {
      viewport.append(svg("text", { x: 0, y: 20, text: "No models yet: reg.add(name, model)" }));
      canvas.setAttribute("height", 120);
      return;
    }
    const forest = buildForest(nodes);
    for (const name of [...collapsed]) if (!forest.byName.has(name)) collapsed.delete(name);
    const byOperation = (model.get("columns") || "depth") === "operation";
    const { positions, rows, depth, columns } = byOperation ? layoutByOperation(forest, collapsed) : layout(forest, collapsed);
    extent = { w: depth * COL + 160, h: rows * ROW };
    const height = Math.min(580, Math.max(260, extent.h + 2 * PAD));
    canvas.setAttribute("height", height);
    canvas.style.height = `${height}px`;
    const at = (name) => {
      const p = positions.get(name);
      return { x: p.depth * COL, y: p.row * ROW };
    };
    const g = { forest, positions, at, radiusOf, byOperation, colourBy, scale, onFront,
      edges: svg("g", { class: "cnc-edges" }), labels: svg("g", { class: "cnc-edge-labels" }),
      marks: svg("g", { class: "cnc-nodes" }) };
    viewport.append(g.edges, g.labels, g.marks);
    if (columns) {
      columns.forEach((c, i) => viewport.append(svg("text", {
        class: "cnc-column-label", x: i * COL, y: -26, "text-anchor": "middle", "data-column": c, text: c,
      })));
    }
    for (const node of nodes) {
      if (!positions.has(node.name)) continue;
      if (node.parent !== null && node.parent !== undefined && positions.has(node.parent)) drawEdge(g, node);
      drawNode(g, node);
    }
    markSelected(root, getSelected(model));
    markFiltered(root, model.get("filtered_out"));
    rovingFocus();
    if (!fitted && canvas.clientWidth) {
      fitView();
      fitted = true;
    } else {
      applyView();
    }
  }

  function drawEdge({ at, radiusOf, forest, byOperation, edges, labels }, node) {
    const a = at(node.parent);
    const b = at(node.name);
    const ra = radiusOf(forest.byName.get(node.parent));
    const rb = radiusOf(node);
    const dir = b.x >= a.x ? 1 : -1;
    const mid = (a.x + b.x) / 2;
    edges.append(svg("path", {
      class: "cnc-edge",
      "data-edge": `${node.parent}->${node.name}`,
      d: a.x === b.x
        ? `M${a.x},${a.y + ra} C${a.x - 40},${a.y} ${b.x - 40},${b.y} ${b.x - rb},${b.y}`
        : `M${a.x + dir * ra},${a.y} C${mid},${a.y} ${mid},${b.y} ${b.x - dir * rb},${b.y}`,
    }));
    if (!byOperation) {
      const full = edgeLabel(node);
      labels.append(svg("g", {}, [
        svg("title", { text: full }),
        svg("text", {
          class: "cnc-edge-label", x: b.x - rb - 6, y: b.y - 6, "text-anchor": "end",
          text: truncate(full, 34),
        }),
      ]));
    }
  }

  function drawNode({ at, radiusOf, forest, byOperation, colourBy, scale, onFront, marks }, node) {
    const p = at(node.name);
    placed.set(node.name, p);
    const value = (node.metrics || {})[colourBy];
    const r = radiusOf(node);
    const missing = !(typeof value === "number" && Number.isFinite(value));
    const shownParams = node.shown_params
      ? Object.fromEntries(Object.entries(node.params || {}).filter(([k]) => node.shown_params.includes(k)))
      : node.params;
    const labelText = byOperation && formatParams(shownParams) ? `${node.name} (${formatParams(shownParams)})` : node.name;
    const front = onFront.has(node.name);
    const mark = svg("g", {
      class: "cnc-node",
      "data-model": node.name,
      "data-pareto": front ? "true" : null,
      role: "option",
      tabindex: -1,
      "aria-selected": "false",
      "aria-label": `${node.name}${colourBy ? `, ${colourBy} ${fmt(colourBy)(value)}` : ""}${node.operation ? `, ${edgeLabel(node)}` : ""}${front ? ", on the Pareto frontier" : ""}`,
      transform: `translate(${p.x},${p.y})`,
    }, [
      svg("circle", { class: "cnc-ring", r: r + 4 }),
      front ? svg("circle", { class: "cnc-pareto", r: r + 2 }) : null,
      svg("circle", { class: missing ? "cnc-dot cnc-missing" : "cnc-dot", r, fill: missing ? MISSING : scale(value) }),
      svg("text", { class: "cnc-node-label", y: Math.max(r, RADIUS) + 14, "text-anchor": "middle", text: truncate(labelText, 30) }),
    ]);
    mark.addEventListener("click", (event) => {
      event.stopPropagation();
      select(model, node.name, event.shiftKey || event.metaKey || event.ctrlKey);
    });
    // Enter and the arrows are the roving focus's (below); the tooltip is the shared wiring.
    wireMark(mark, { tip: (event) => showTip(node, event), hideTip });
    marks.append(mark);
    drawToggle(marks, forest, byOperation, node, p, r);
  }

  // The collapse / expand button beside a model with children (depth layout only).
  function drawToggle(marks, forest, byOperation, node, p, r) {
    const kids = forest.children.get(node.name);
    if (!kids.length || byOperation) return;
    const isCollapsed = collapsed.has(node.name);
    const hidden = isCollapsed ? countDescendants(forest, node.name) : 0;
    const toggle = svg("g", {
      class: "cnc-collapse", transform: `translate(${p.x + r + 3},${p.y + 3})`,
      role: "button", tabindex: 0,
      "aria-label": isCollapsed ? `Expand ${node.name} (${hidden} hidden)` : `Collapse ${node.name}`,
    }, [
      svg("rect", { width: isCollapsed ? 26 : 12, height: 12, rx: 2 }),
      svg("text", { x: 3, y: 9.5, text: isCollapsed ? `+${hidden}` : "\u2212" }),
    ]);
    const flip = (event) => {
      event.stopPropagation();
      if (isCollapsed) collapsed.delete(node.name);
      else collapsed.add(node.name);
      draw();
    };
    toggle.addEventListener("click", flip);
    toggle.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") flip(event);
    });
    marks.append(toggle);
  }

  // One mark is in the tab order (roving tabindex); arrows move between models.
  let focusName = null;
  function rovingFocus() {
    const marks = [...root.querySelectorAll(".cnc-node")];
    if (!marks.length) return;
    if (!focusName || !placed.has(focusName)) {
      const sel = [...getSelected(model)].find((n) => placed.has(n));
      focusName = sel || marks[0].getAttribute("data-model");
    }
    for (const m of marks) m.setAttribute("tabindex", m.getAttribute("data-model") === focusName ? "0" : "-1");
  }

  function markOf(name) {
    return [...root.querySelectorAll(".cnc-node")].find((m) => m.getAttribute("data-model") === name);
  }

  function nearest(from, key) {
    const p = placed.get(from);
    const dir = { ArrowRight: [1, 0], ArrowLeft: [-1, 0], ArrowDown: [0, 1], ArrowUp: [0, -1] }[key];
    let best = null;
    let bestScore = Infinity;
    for (const [name, q] of placed) {
      if (name === from) continue;
      const dx = q.x - p.x;
      const dy = q.y - p.y;
      const along = dx * dir[0] + dy * dir[1];
      if (along <= 0) continue;
      const across = Math.abs(dx * dir[1]) + Math.abs(dy * dir[0]);
      const score = along + 3 * across;
      if (score < bestScore) { bestScore = score; best = name; }
    }
    return best;
  }

  function keepVisible(name) {
    const p = placed.get(name);
    const sx = view.x + p.x * view.k;
    const sy = view.y + p.y * view.k;
    const w = canvas.clientWidth;
    const h = canvas.clientHeight;
    if (sx < PAD || sx > w - PAD || sy < PAD || sy > h - PAD) {
      view.x += w / 2 - sx;
      view.y += h / 2 - sy;
      applyView();
    }
  }

  root.addEventListener("keydown", (event) => {
    const mark = event.target.closest && event.target.closest(".cnc-node");
    if (event.key === "Escape") {
      model.set("selected", []);
      model.save_changes();
      return;
    }
    if (!mark) return;
    const name = mark.getAttribute("data-model");
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      select(model, name, event.shiftKey || event.metaKey || event.ctrlKey);
    } else if (event.key.startsWith("Arrow")) {
      event.preventDefault();
      const next = nearest(name, event.key);
      if (next) {
        focusName = next;
        rovingFocus();
        keepVisible(next);
        markOf(next).focus();
      }
    }
  });
  root.addEventListener("focusin", (event) => {
    const mark = event.target.closest && event.target.closest(".cnc-node");
    if (mark) {
      focusName = mark.getAttribute("data-model");
      rovingFocus();
    }
  });

  // Drag the background to pan; Shift+drag (or the Select toggle) draws a box that selects.
  let drag = null;
  const local = (event) => {
    const box = canvas.getBoundingClientRect();
    return { x: event.clientX - box.left, y: event.clientY - box.top };
  };
  canvas.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".cnc-node, .cnc-collapse")) return;
    const at = local(event);
    if (boxMode || event.shiftKey) {
      drag = { box: true, x0: at.x, y0: at.y, additive: event.shiftKey && boxMode };
      canvas.classList.add("cnc-boxing");
    } else {
      drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y };
      canvas.classList.add("cnc-panning");
    }
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    if (drag.box) {
      const at = local(event);
      brush.setAttribute("x", Math.min(at.x, drag.x0));
      brush.setAttribute("y", Math.min(at.y, drag.y0));
      brush.setAttribute("width", Math.abs(at.x - drag.x0));
      brush.setAttribute("height", Math.abs(at.y - drag.y0));
      brush.setAttribute("visibility", "visible");
      return;
    }
    view.x = drag.vx + event.clientX - drag.x;
    view.y = drag.vy + event.clientY - drag.y;
    applyView();
  });
  const endDrag = (event) => {
    if (drag && drag.box && event.type === "pointerup") {
      const at = local(event);
      const [x0, x1] = [Math.min(at.x, drag.x0), Math.max(at.x, drag.x0)];
      const [y0, y1] = [Math.min(at.y, drag.y0), Math.max(at.y, drag.y0)];
      const inside = [];
      for (const [name, p] of placed) {
        const sx = view.x + p.x * view.k;
        const sy = view.y + p.y * view.k;
        if (sx >= x0 && sx <= x1 && sy >= y0 && sy <= y1) inside.push(name);
      }
      if (x1 - x0 > 3 || y1 - y0 > 3) {
        const next = drag.additive ? [...new Set([...getSelected(model), ...inside])] : inside;
        model.set("selected", next);
        model.save_changes();
      }
    }
    drag = null;
    brush.setAttribute("visibility", "hidden");
    canvas.classList.remove("cnc-panning", "cnc-boxing");
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  const zoom = wheelZoom(canvas, { onZoom: zoomAt, hintParent: root, label: "the graph" });
  const centre = () => [canvas.clientWidth / 2, canvas.clientHeight / 2];
  zoomIn.addEventListener("click", () => zoomAt(1.25, ...centre()));
  zoomOut.addEventListener("click", () => zoomAt(0.8, ...centre()));
  fit.addEventListener("click", fitView);
  boxButton.addEventListener("click", () => {
    boxMode = !boxMode;
    boxButton.setAttribute("aria-pressed", boxMode ? "true" : "false");
  });
  const setTrait = (name, value) => {
    model.set(name, value);
    model.save_changes();
  };
  colourSelect.addEventListener("change", () => setTrait("color_by", colourSelect.value));
  sizeSelect.addEventListener("change", () => setTrait("size_by", sizeSelect.value));
  columnsSelect.addEventListener("change", () => {
    setTrait("columns", columnsSelect.value);
    fitted = false;
  });

  const redraw = () => draw();
  const refit = () => {
    draw();
    fitView();
  };
  const unlisten = listen(model, {
    "change:nodes change:color_by change:color_domains change:size_by change:metric_info change:pareto": redraw,
    "change:columns": refit,
    "change:selected": () => markSelected(root, getSelected(model)),
    "change:filtered_out": () => markFiltered(root, model.get("filtered_out")),
  });
  draw();
  // The element may be laid out only after render returns (JupyterLab output areas).
  requestAnimationFrame(() => {
    if (!fitted) {
      fitView();
      fitted = true;
    }
  });
  return () => {
    unlisten();
    zoom.destroy();
  };
}

export default { render };

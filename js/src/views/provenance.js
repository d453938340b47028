// The provenance graph: which model was made from which, by what operation.
import { html, svg, formatValue, formatParams } from "../shared/dom.js";
import { colourFor, numericExtent, legend } from "../shared/colour.js";
import { getSelected, select, markSelected } from "../shared/selection.js";
import { addStyles } from "../shared/styles.js";
import { buildForest, layout, countDescendants } from "../shared/tree.js";

const COL = 250;
const ROW = 46;
const RADIUS = 9;
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

function truncate(text, max) {
  return text.length > max ? text.slice(0, max - 1) + "\u2026" : text;
}

function render({ model, el }) {
  const root = html("div", { class: "cnc-view cnc-provenance" });
  addStyles(root);
  el.append(root);

  const collapsed = new Set();
  const view = { x: PAD, y: PAD, k: 1 };
  let fitted = false;

  const title = html("span", { class: "cnc-title", text: "Provenance" });
  const colourSelect = html("select", { "aria-label": "Colour models by metric" });
  const legendBox = html("span");
  const zoomIn = html("button", { type: "button", text: "+", title: "Zoom in", "aria-label": "Zoom in" });
  const zoomOut = html("button", { type: "button", text: "\u2212", title: "Zoom out", "aria-label": "Zoom out" });
  const fit = html("button", { type: "button", text: "Fit", title: "Fit the whole forest" });
  const toolbar = html("div", { class: "cnc-toolbar" }, [
    title, html("label", { text: "colour " }, [colourSelect]), legendBox, zoomOut, zoomIn, fit,
  ]);
  const canvas = svg("svg", { role: "listbox", "aria-multiselectable": "true", "aria-label": "Models by provenance" });
  const viewport = svg("g", { class: "cnc-viewport" });
  canvas.append(viewport);
  const tooltip = html("div", { class: "cnc-tooltip", role: "tooltip" });
  tooltip.style.display = "none";
  root.append(toolbar, canvas, tooltip);

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
    tooltip.replaceChildren();
    tooltip.append(html("div", { class: "cnc-tip-title", text: node.name }));
    if (node.parent) {
      tooltip.append(html("div", { class: "cnc-tip-sub", text: `from ${node.parent}: ${edgeLabel(node)}` }));
    }
    const rows = Object.entries(node.metrics || {}).map(([k, v]) =>
      html("tr", {}, [html("td", { text: k }), html("td", { text: formatValue(v) })]));
    if (rows.length) tooltip.append(html("table", {}, rows));
    else tooltip.append(html("div", { text: "not evaluated yet" }));
    tooltip.style.display = "block";
    const box = root.getBoundingClientRect();
    const anchor = event && event.clientX !== undefined
      ? { x: event.clientX, y: event.clientY }
      : (() => { const r = event.target.getBoundingClientRect(); return { x: r.right, y: r.bottom }; })();
    let left = anchor.x - box.left + 14;
    if (left + tooltip.offsetWidth > box.width) {
      // Near the right edge: show it left of the pointer so the model stays visible.
      left = Math.max(0, anchor.x - box.left - tooltip.offsetWidth - 14);
    }
    let top = anchor.y - box.top + 14;
    if (top + tooltip.offsetHeight > box.height) {
      // Keep the tooltip inside the view: above the pointer, or as low as it fits.
      const above = anchor.y - box.top - tooltip.offsetHeight - 8;
      top = above >= 0 ? above : Math.max(0, box.height - tooltip.offsetHeight - 2);
    }
    tooltip.style.left = `${left}px`;
    tooltip.style.top = `${top}px`;
  }

  function hideTip() {
    tooltip.style.display = "none";
  }

  function draw() {
    const nodes = model.get("nodes") || [];
    const metrics = metricNames(nodes);
    let colourBy = model.get("color_by");
    if (!metrics.includes(colourBy)) colourBy = metrics[0] || "";
    colourSelect.replaceChildren(...metrics.map((m) => html("option", { value: m, text: m, selected: m === colourBy })));
    colourSelect.disabled = metrics.length === 0;
    const values = nodes.map((n) => (n.metrics || {})[colourBy]);
    const range = numericExtent(values);
    legendBox.replaceChildren(legend(colourBy || "metric", range, formatValue));

    viewport.replaceChildren();
    if (!nodes.length) {
      viewport.append(svg("text", { x: 0, y: 20, text: "No models yet: reg.add(name, model)" }));
      canvas.setAttribute("height", 120);
      return;
    }
    const forest = buildForest(nodes);
    for (const name of [...collapsed]) if (!forest.byName.has(name)) collapsed.delete(name);
    const { positions, rows, depth } = layout(forest, collapsed);
    extent = { w: depth * COL + 160, h: rows * ROW };
    const height = Math.min(640, Math.max(260, extent.h + 2 * PAD));
    canvas.setAttribute("height", height);
    canvas.style.height = `${height}px`;
    const at = (name) => {
      const p = positions.get(name);
      return { x: p.depth * COL, y: p.row * ROW };
    };

    const edges = svg("g", { class: "cnc-edges" });
    const labels = svg("g", { class: "cnc-edge-labels" });
    const marks = svg("g", { class: "cnc-nodes" });
    viewport.append(edges, labels, marks);
    for (const node of nodes) {
      if (!positions.has(node.name)) continue;
      const parentVisible = node.parent !== null && node.parent !== undefined && positions.has(node.parent);
      if (parentVisible) {
        const a = at(node.parent);
        const b = at(node.name);
        const mid = (a.x + b.x) / 2;
        edges.append(svg("path", {
          class: "cnc-edge",
          "data-edge": `${node.parent}->${node.name}`,
          d: `M${a.x + RADIUS},${a.y} C${mid},${a.y} ${mid},${b.y} ${b.x - RADIUS},${b.y}`,
        }));
        const full = edgeLabel(node);
        labels.append(svg("g", {}, [
          svg("title", { text: full }),
          svg("text", {
            class: "cnc-edge-label", x: b.x - RADIUS - 6, y: b.y - 6, "text-anchor": "end",
            text: truncate(full, 34),
          }),
        ]));
      }
      const p = at(node.name);
      const value = (node.metrics || {})[colourBy];
      const mark = svg("g", {
        class: "cnc-node",
        "data-model": node.name,
        role: "option",
        tabindex: 0,
        "aria-selected": "false",
        "aria-label": `${node.name}${colourBy ? `, ${colourBy} ${formatValue(value)}` : ""}`,
        transform: `translate(${p.x},${p.y})`,
      }, [
        svg("circle", { class: "cnc-ring", r: RADIUS + 4 }),
        svg("circle", { class: "cnc-dot", r: RADIUS, fill: colourFor(value, range) }),
        svg("text", { class: "cnc-node-label", y: RADIUS + 14, "text-anchor": "middle", text: truncate(node.name, 30) }),
      ]);
      mark.addEventListener("click", (event) => {
        event.stopPropagation();
        select(model, node.name, event.shiftKey || event.metaKey || event.ctrlKey);
      });
      mark.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          select(model, node.name, event.shiftKey || event.metaKey || event.ctrlKey);
        }
      });
      mark.addEventListener("mouseenter", (event) => showTip(node, event));
      mark.addEventListener("mousemove", (event) => showTip(node, event));
      mark.addEventListener("mouseleave", hideTip);
      mark.addEventListener("focus", (event) => showTip(node, event));
      mark.addEventListener("blur", hideTip);
      marks.append(mark);

      const kids = forest.children.get(node.name);
      if (kids.length) {
        const isCollapsed = collapsed.has(node.name);
        const hidden = isCollapsed ? countDescendants(forest, node.name) : 0;
        const toggle = svg("g", {
          class: "cnc-collapse", transform: `translate(${p.x + RADIUS + 3},${p.y + 3})`,
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
    }
    markSelected(root, getSelected(model));
    if (!fitted && canvas.clientWidth) {
      fitView();
      fitted = true;
    } else {
      applyView();
    }
  }

  // Pan by dragging the background, zoom with the wheel around the pointer.
  let drag = null;
  canvas.addEventListener("pointerdown", (event) => {
    if (event.target.closest(".cnc-node, .cnc-collapse")) return;
    drag = { x: event.clientX, y: event.clientY, vx: view.x, vy: view.y };
    canvas.classList.add("cnc-panning");
    canvas.setPointerCapture(event.pointerId);
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drag) return;
    view.x = drag.vx + event.clientX - drag.x;
    view.y = drag.vy + event.clientY - drag.y;
    applyView();
  });
  const endDrag = () => {
    drag = null;
    canvas.classList.remove("cnc-panning");
  };
  canvas.addEventListener("pointerup", endDrag);
  canvas.addEventListener("pointercancel", endDrag);
  canvas.addEventListener("wheel", (event) => {
    event.preventDefault();
    const box = canvas.getBoundingClientRect();
    zoomAt(Math.exp(-event.deltaY * 0.0015), event.clientX - box.left, event.clientY - box.top);
  }, { passive: false });
  const centre = () => [canvas.clientWidth / 2, canvas.clientHeight / 2];
  zoomIn.addEventListener("click", () => zoomAt(1.25, ...centre()));
  zoomOut.addEventListener("click", () => zoomAt(0.8, ...centre()));
  fit.addEventListener("click", fitView);
  colourSelect.addEventListener("change", () => {
    model.set("color_by", colourSelect.value);
    model.save_changes();
  });

  const onNodes = () => draw();
  const onSelected = () => markSelected(root, getSelected(model));
  model.on("change:nodes", onNodes);
  model.on("change:color_by", onNodes);
  model.on("change:selected", onSelected);
  draw();
  // The element may be laid out only after render returns (JupyterLab output areas).
  requestAnimationFrame(() => {
    if (!fitted) {
      fitView();
      fitted = true;
    }
  });
  return () => {
    model.off("change:nodes", onNodes);
    model.off("change:color_by", onNodes);
    model.off("change:selected", onSelected);
  };
}

export default { render };

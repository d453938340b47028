// The provenance graph's marks: an edge from each model to its parent (labelled with the
// operation in the depth layout), a node per model (coloured, sized, ringed on the Pareto
// frontier) and the collapse / expand button beside a model with children.
//
// `view` (views/provenance.js) holds model, placed, collapsed, fmt, showTip, hideTip,
// draw(); `g` is one draw's layout and encodings ({forest, at, radiusOf, byOperation,
// colourBy, scale, onFront, edges, labels, marks}).
import { svg, formatParams, truncate, wireMark } from "../shared/dom.js";
import { MISSING } from "../shared/colour.js";
import { select } from "../shared/selection.js";
import { countDescendants } from "../shared/tree.js";

export const RADIUS = 9;

export function edgeLabel(node) {
  const shown = node.shown_params ? Object.fromEntries(
    Object.entries(node.params || {}).filter(([k]) => node.shown_params.includes(k))) : node.params;
  const params = formatParams(shown);
  const op = node.operation || "";
  return params ? `${op} (${params})` : op;
}

export function drawEdge({ at, radiusOf, forest, byOperation, edges, labels }, node) {
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

export function drawNode(view, g, node) {
  const { at, radiusOf, byOperation, colourBy, scale, onFront, marks } = g;
  const { model, fmt } = view;
  const p = at(node.name);
  view.placed.set(node.name, p);
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
  // Enter and the arrows are the roving focus's (keyboard.js); the tooltip is the shared wiring.
  wireMark(mark, { tip: (event) => view.showTip(node, event), hideTip: view.hideTip });
  marks.append(mark);
  drawToggle(view, g, node, p, r);
}

// The collapse / expand button beside a model with children (depth layout only).
function drawToggle(view, { marks, forest, byOperation }, node, p, r) {
  const kids = forest.children.get(node.name);
  if (!kids.length || byOperation) return;
  const isCollapsed = view.collapsed.has(node.name);
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
    if (isCollapsed) view.collapsed.delete(node.name);
    else view.collapsed.add(node.name);
    view.draw();
  };
  toggle.addEventListener("click", flip);
  toggle.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") flip(event);
  });
  marks.append(toggle);
}

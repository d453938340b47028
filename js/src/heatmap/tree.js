// The layers view's module tree, pure: a node for every dotted prefix of the modules' names,
// which nodes a first view opens, which are visible, and a node's value over its rows.
// Also what the view reads from the model (`readState`), its arrays unpacked.
import { unpack } from "../shared/wire.js";

export const VISIBLE_ROWS = 26; // a first view opens the tree until about this many rows show

// The module tree: a node for every dotted prefix, rows of the table at the nodes they name.
export function buildTree(rows) {
  const nodes = new Map();
  const roots = [];
  const ensure = (name) => {
    if (nodes.has(name)) return nodes.get(name);
    const dot = name.lastIndexOf(".");
    const node = { name, label: dot >= 0 ? name.slice(dot + 1) : name, children: [], row: -1,
      depth: dot >= 0 ? name.split(".").length - 1 : 0 };
    nodes.set(name, node);
    if (dot >= 0) ensure(name.slice(0, dot)).children.push(node);
    else roots.push(node);
    return node;
  };
  rows.forEach((name, i) => { ensure(name).row = i; });
  return { nodes, roots };
}

// Open the tree a whole level at a time while the visible rows stay few: a transformer
// opens at its blocks (encoder.layer.3), not at a hundred leaves, and never half a level.
export function initialOpen(tree, limit = VISIBLE_ROWS) {
  const open = new Set();
  let visible = tree.roots.length;
  let level = tree.roots.filter((n) => n.children.length);
  while (level.length) {
    const added = level.reduce((sum, n) => sum + n.children.length, 0);
    if (visible + added > limit) break;
    for (const n of level) open.add(n.name);
    visible += added;
    level = level.flatMap((n) => n.children).filter((n) => n.children.length);
  }
  return open;
}

// The nodes shown, in order: the roots and the children of every open node.
export function visibleNodes(tree, open) {
  const out = [];
  const walk = (node) => {
    out.push(node);
    if (open.has(node.name)) for (const c of node.children) walk(c);
  };
  for (const r of tree.roots) walk(r);
  return out;
}

export function countLeaves(node) {
  let total = node.row >= 0 ? 1 : 0;
  for (const c of node.children) total += countLeaves(c);
  return total;
}

// Open every parent of each dotted name, so that its row shows.
export function openParents(open, names) {
  for (const target of names) {
    const parts = target.split(".");
    for (let i = 1; i < parts.length; i += 1) open.add(parts.slice(0, i).join("."));
  }
}

// What the view shows, from the model's `layers` trait: rows, compared models and their
// columns unpacked.
export function readState(model) {
  const layers = model.get("layers") || {};
  const rows = layers.rows || [];
  const compared = layers.compared || [];
  const data = {};
  for (const name of compared) {
    const entry = (layers.by_model || {})[name] || {};
    const values = {};
    for (const [k, v] of Object.entries(entry.values || {})) values[k] = unpack(v);
    data[name] = { ...entry, values };
  }
  return { layers, rows, compared, data, reference: layers.reference,
    params: layers.params || [], kind: layers.kind || [] };
}

// A node's value: its rows' values weighted by element count (parameters).
export function aggregate(st, node, name, column, memo) {
  const key = `${node.name}\u0000${name}\u0000${column}`;
  if (memo.has(key)) return memo.get(key);
  let sum = 0;
  let weight = 0;
  const visit = (n) => {
    if (n.row >= 0) {
      const v = st.data[name].values[column] ? st.data[name].values[column][n.row] : NaN;
      const w = st.params[n.row] || 0;
      if (Number.isFinite(v) && w > 0 && (st.data[name].status || [])[n.row] !== "only_b") {
        sum += v * w;
        weight += w;
      }
    }
    for (const c of n.children) visit(c);
  };
  visit(node);
  const out = weight > 0 ? sum / weight : NaN;
  memo.set(key, out);
  return out;
}

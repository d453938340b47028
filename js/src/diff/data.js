// The classification diff's data, pure: the decoded arrays, the instances that pass the
// filters in the order picked, and which rows of the virtual table are in view.
import { unpack } from "../shared/wire.js";
import { ROW, BODY } from "./css.js";

const OVERSCAN = 8;

// The model's table and per-class arrays, decoded; null while there is nothing to compare.
export function decode(model) {
  const table = model.get("table") || {};
  const names = [model.get("reference"), ...(model.get("compared") || [])];
  if (!table.n || !names[0]) return null;
  const n = table.n;
  const m = names.length;
  const perClass = model.get("per_class") || {};
  return {
    names, n, m,
    ids: table.ids,
    label: unpack(table.label),
    pred: unpack(table.pred),
    conf: unpack(table.conf),
    kl: unpack(table.kl),
    mse: unpack(table.mse),
    classes: model.get("classes") || [],
    count: unpack(perClass.count),
    accuracy: unpack(perClass.accuracy),
    change: unpack(perClass.change),
    topChanges: perClass.top_changes || [],
  };
}

export const idOf = (d, i) => (d.ids ? d.ids[i] : String(i));
export const predOf = (d, k, i) => d.pred[k * d.n + i];
export const className = (d, c) => (d.classes[c] !== undefined ? d.classes[c] : String(c));

// Row i's value in the column `key` (id, label, pred<k>, conf<k>, kl<k>, mse<k>).
export function sortValue(d, key) {
  if (key === "id") return (i) => i;
  if (key === "label") return (i) => d.label[i];
  const k = Number(key.replace(/\D+/g, ""));
  if (key.startsWith("pred")) return (i) => predOf(d, k, i);
  if (key.startsWith("conf")) return (i) => d.conf[k * d.n + i];
  if (key.startsWith("kl")) return (i) => d.kl[(k - 1) * d.n + i];
  if (key.startsWith("mse")) return (i) => d.mse[(k - 1) * d.n + i];
  return (i) => i;
}

// The rows that pass the filters of `state` (focus, classFilter, changed, outcome, cell),
// sorted by state.sortKey in state.sortDir (ties by row), as a Uint32Array.
export function filterOrder(d, state) {
  const f = state.focus + 1;
  const keep = new Uint32Array(d.n);
  let n = 0;
  for (let i = 0; i < d.n; i += 1) {
    const pa = predOf(d, 0, i);
    const pb = predOf(d, f, i);
    const y = d.label[i];
    if (state.classFilter >= 0 && y !== state.classFilter) continue;
    if (state.changed && pa === pb) continue;
    if (state.outcome === "ref-right" && !(pa === y && pb !== y)) continue;
    if (state.outcome === "ref-wrong" && !(pa !== y && pb === y)) continue;
    if (state.cell && !(pa === state.cell[0] && pb === state.cell[1])) continue;
    keep[n] = i;
    n += 1;
  }
  const order = keep.slice(0, n);
  if (state.sortKey) {
    const value = sortValue(d, state.sortKey);
    const dir = state.sortDir;
    // Sort by a float key copy: typed-array sort with a key lookup stays fast at 10^4+ rows.
    const keys = new Float64Array(d.n);
    for (let k = 0; k < n; k += 1) keys[order[k]] = value(order[k]);
    order.sort((i, j) => (keys[i] - keys[j]) * dir || i - j);
  }
  return order;
}

// [first, end) of the positions in the order drawn at this scroll offset (with overscan).
export function visibleRange(scrollTop, count) {
  const top = Math.max(0, scrollTop - ROW);
  const a = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
  const b = Math.min(count, Math.ceil((top + BODY) / ROW) + OVERSCAN);
  return [a, b];
}

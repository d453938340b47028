// The layers view's tree table: a header row (the compared models, or the damage mode's two
// columns), one row per visible node of the module tree with a cell per compared model
// coloured by the mode, and the marks of the focused module and of a picked CKA pair.
//
// `view` is the view's state and actions (views/heatmap.js): open (Set of open nodes),
// damage, toggle(node), requestDetail(module, model), clearFocus(), showTip(lines, event),
// hideTip(). `g` is one draw's derived state: {st, mode, isDamage, coloured, memo, worst,
// selected}.
import { html, formatValue } from "../shared/dom.js";
import { SPARSITY } from "./modes.js";
import { aggregate, countLeaves } from "./tree.js";

const MISSING_STATUS = new Set(["only_a", "only_b", "absent"]);

export function tableRows(view, g, shown) {
  const template = g.isDamage ? "minmax(200px, 2fr) minmax(160px, 1.3fr) minmax(70px, 0.5fr)"
    : `minmax(220px, 2fr) repeat(${g.st.compared.length}, minmax(90px, 1fr))`;
  return [headRow(view, g, template), ...shown.map((node) => treeRow(view, g, node, template))];
}

function headRow(view, { st, isDamage, selected }, template) {
  const head = html("div", { class: "cnc-hm-row cnc-hm-head", role: "row" });
  head.style.gridTemplateColumns = template;
  head.append(html("div", { role: "columnheader", text: `module (reference: ${st.reference})` }));
  if (isDamage) {
    for (const c of view.damage.columns()) head.append(html("div", { role: "columnheader", "data-column": c.label, title: c.title, text: c.label }));
  }
  for (const name of isDamage ? [] : st.compared) {
    head.append(html("div", { role: "columnheader", "data-model": name, title: `${name} compared with ${st.reference}`,
      "aria-selected": String(selected.has(name)), tabindex: 0, text: name }));
  }
  return head;
}

function treeRow(view, g, node, template) {
  const { st, isDamage } = g;
  const isRow = node.row >= 0;
  const hasKids = node.children.length > 0;
  const open = view.open;
  const row = html("div", {
    class: "cnc-hm-row", role: "row", "data-layer": node.name, tabindex: 0,
    "aria-level": node.depth + 1, "aria-expanded": hasKids ? String(open.has(node.name)) : undefined,
    "aria-label": `${node.name}${isRow && st.kind[node.row] ? `, ${st.kind[node.row]}` : ""}`,
  });
  row.style.gridTemplateColumns = template;
  const caret = html("span", { class: "cnc-hm-caret", text: hasKids ? (open.has(node.name) ? "\u25be" : "\u25b8") : "" });
  const label = rowLabel(view, g, node, row, caret);
  const activate = () => {
    if (isRow) view.requestDetail(node.name, st.compared[0]);
    else view.toggle(node);
  };
  caret.addEventListener("click", (event) => { event.stopPropagation(); view.toggle(node); });
  label.addEventListener("click", activate);
  row.append(label);
  if (isDamage) row.append(...view.damage.cells(st, node));
  else for (const name of st.compared) row.append(cell(view, g, node, name));
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " ") {
      event.preventDefault();
      activate();
    } else if (event.key === "ArrowRight" && hasKids && !view.open.has(node.name)) view.toggle(node);
    else if (event.key === "ArrowLeft" && hasKids && view.open.has(node.name)) view.toggle(node);
    else if (event.key === "Escape") view.clearFocus();
  });
  return row;
}

// The row's header: caret, name, kind, "only in" tag, hidden count, the damage mode's mark.
function rowLabel(view, { st, isDamage, worst }, node, row, caret) {
  const isRow = node.row >= 0;
  const label = html("div", { class: "cnc-hm-label", role: "rowheader", title: node.name }, [caret]);
  label.style.paddingLeft = `${node.depth * 12}px`;
  label.append(html("span", { text: node.label }));
  if (isRow && st.kind[node.row]) label.append(html("span", { class: "cnc-hm-kind", text: st.kind[node.row] }));
  if (isRow) {
    const statuses = new Set(st.compared.map((n) => (st.data[n].status || [])[node.row]));
    if (statuses.has("only_a") && statuses.size === 1) label.append(html("span", { class: "cnc-hm-tag", text: `only in ${st.reference}` }));
    else if (statuses.has("only_b") && statuses.size === 1) label.append(html("span", { class: "cnc-hm-tag", text: "only in compared" }));
  }
  if (node.children.length && !view.open.has(node.name)) label.append(html("span", { class: "cnc-hm-kind", text: `(${countLeaves(node)})` }));
  if (isDamage) {
    const phrase = view.damage.rowLabel(st, node);
    if (phrase) row.setAttribute("aria-label", `${row.getAttribute("aria-label")}; ${phrase}`);
    if (isRow && worst.has(node.name)) {
      row.classList.add("cnc-dmg-worst");
      row.setAttribute("data-worst", "true");
      label.append(html("span", { class: "cnc-dmg-tag", text: `worst: ${view.damage.worstGroup()}` }));
    }
  }
  return label;
}

function cell(view, { st, mode, coloured, memo }, node, name) {
  const entry = st.data[name];
  const box = html("div", { class: "cnc-hm-cell", role: "gridcell", "data-cell-model": name });
  if (entry.error) {
    box.classList.add("cnc-missing");
    box.setAttribute("aria-label", entry.error);
    box.addEventListener("mousemove", (e) => view.showTip([node.name, entry.error], e));
    box.addEventListener("mouseleave", view.hideTip);
    return box;
  }
  const status = node.row >= 0 ? (entry.status || [])[node.row] : "group";
  box.addEventListener("mousemove", (e) => view.showTip(cellTip(st, node, name, memo), e));
  box.addEventListener("mouseleave", view.hideTip);
  box.addEventListener("click", () => {
    if (node.row >= 0) view.requestDetail(node.name, name);
    else view.toggle(node);
  });
  if (MISSING_STATUS.has(status)) {
    box.classList.add("cnc-missing");
    box.setAttribute("data-status", status);
    box.setAttribute("aria-label", (entry.note || [])[node.row] || status);
    return box;
  }
  if (mode.key === "sparsity") return sparsityCell(box, st, node, name, memo);
  const v = aggregate(st, node, name, mode.column, memo);
  const used = coloured && coloured.scale.domain;
  if (!Number.isFinite(v) || !used) {
    box.classList.add("cnc-missing");
    box.setAttribute("aria-label", `${name}: no value`);
    return box;
  }
  const t = used[1] > used[0] ? (v - used[0]) / (used[1] - used[0]) : 0.5;
  box.style.background = coloured.scale(v);
  if (t > 0.6) box.classList.add("cnc-light");
  box.setAttribute("data-value", String(v));
  box.setAttribute("aria-label", `${name}: ${mode.title} ${formatValue(v)}`);
  box.append(html("span", { class: "cnc-hm-num", text: formatValue(Number(v.toPrecision(3))) }));
  return box;
}

// Three segments (zero in both, only in the reference, only in the compared model).
function sparsityCell(box, st, node, name, memo) {
  const parts = SPARSITY.map((p) => aggregate(st, node, name, p.column, memo));
  if (!parts.some(Number.isFinite)) {
    box.classList.add("cnc-missing");
    return box;
  }
  box.classList.add("cnc-sparsity");
  parts.forEach((v, i) => {
    const seg = html("span");
    seg.style.width = `${Math.max(0, Math.min(1, v || 0)) * 100}%`;
    seg.style.background = SPARSITY[i].colour;
    box.append(seg);
  });
  box.setAttribute("data-value", parts.map((v) => (Number.isFinite(v) ? v.toFixed(4) : "nan")).join(","));
  const total = parts.reduce((s, v) => s + (Number.isFinite(v) ? v : 0), 0);
  box.setAttribute("aria-label", `${name}: ${(100 * total).toFixed(1)}% zero`);
  if (total >= 0.005) box.append(html("span", { class: "cnc-hm-num", text: `${Math.round(100 * total)}%` }));
  return box;
}

// A cell's tooltip: [title, subtitle, ...[label, value]] over the node's rows.
export function cellTip(st, node, name, memo) {
  const isRow = node.row >= 0;
  const status = isRow ? (st.data[name].status || [])[node.row] : "group";
  const note = isRow ? (st.data[name].note || [])[node.row] : "";
  const lines = [node.name, isRow ? `${name} vs ${st.reference}${st.kind[node.row] ? `, ${st.kind[node.row]}` : ""}`
    : `${name} vs ${st.reference}: ${countLeaves(node)} modules, weighted by element count`];
  if (note) lines[1] += ` \u2014 ${note}`;
  if (isRow && st.data[name].module_b && st.data[name].module_b[node.row] && st.data[name].module_b[node.row] !== node.name) {
    lines[1] += ` (paired with ${st.data[name].module_b[node.row]})`;
  }
  if (MISSING_STATUS.has(status)) return lines;
  const cols = [["zero_both", "zero in both"], ["zero_a_only", "zero only in reference"], ["zero_b_only", `zero only in ${name}`],
    ["weight_rel_change", "weight change"], ["activation_rel_change", "activation change"], ["cka", "CKA"]];
  for (const [c, label] of cols) {
    const v = aggregate(st, node, name, c, memo);
    const pct = c.startsWith("zero");
    lines.push([label, Number.isFinite(v) ? (pct ? `${(100 * v).toFixed(1)}%` : formatValue(v)) : "n/a"]);
  }
  if (isRow) lines.push(["parameters", formatValue(st.params[node.row])]);
  return lines;
}

// The focused module's row.
export function markFocus(table, focusModule) {
  for (const row of table.querySelectorAll(".cnc-hm-row[data-layer]")) {
    row.classList.toggle("cnc-focused", row.getAttribute("data-layer") === focusModule);
  }
}

// The two modules of a picked CKA cell ({a, b, rowB}), scrolled into view.
export function markPicked(table, picked) {
  for (const row of table.querySelectorAll(".cnc-hm-row")) row.classList.remove("cnc-hl-a", "cnc-hl-b");
  if (!picked) return;
  const mark = (name, cls) => {
    const row = table.querySelector(`[data-layer="${CSS.escape(name)}"]`);
    if (row) {
      row.classList.add(cls);
      row.scrollIntoView({ block: "nearest" });
    }
  };
  mark(picked.a, "cnc-hl-a");
  mark(picked.rowB || picked.b, "cnc-hl-b");
}

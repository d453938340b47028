// The classification diff's instance table: a virtualized grid of every instance (id,
// preview, label, and per model its prediction, p(true), KL and logit MSE), sortable by a
// click on a column's head, filtered by the controls and the change matrix; a click on a row
// selects its instance (shift adds).
//
// `view` (views/diff.js) holds model, root, d, state (filters, sort, order), cols, template,
// and dom.head, dom.rowsBox, dom.countBox, dom.cellChip, dom.matrixBox, dom.classPick,
// dom.changedBox, dom.outcomePick; the action drawPanels().
import { html, truncate } from "../shared/dom.js";
import { ROW } from "./css.js";
import { className, filterOrder, idOf, predOf, visibleRange } from "./data.js";
import { markActiveCell } from "./panels.js";
import { previewKind, previewNode, requestVisible } from "./previews.js";
import { num } from "./summary.js";

function columns(view) {
  const { d, model } = view;
  const cols = [
    { key: "id", label: "id", width: 64, num: true },
    { key: "instance", label: previewKind(model) === "image" ? "image" : "instance", width: previewKind(model) === "text" ? 260 : 56 },
    { key: "label", label: "label", width: 80 },
  ];
  d.names.forEach((name, k) => {
    const short = truncate(name, 12);
    cols.push({ key: `pred${k}`, top: short, label: "prediction", title: `${name}: predicted class`, width: 96, model: k });
    cols.push({ key: `conf${k}`, top: short, label: "p(true)", title: `${name}: probability of the true label`, width: 76, num: true, model: k });
    if (k > 0) {
      cols.push({ key: `kl${k}`, top: short, label: "KL (nats)", title: `KL(p ${d.names[0]} || p ${name}) in nats`, width: 84, num: true, model: k });
      cols.push({ key: `mse${k}`, top: short, label: "logit MSE", title: `mean squared logit difference, ${name} vs ${d.names[0]}`, width: 84, num: true, model: k });
    }
  });
  return cols;
}

function drawHead(view) {
  const { state, dom } = view;
  view.cols = columns(view);
  view.template = view.cols.map((c) => `${c.width}px`).join(" ");
  const total = view.cols.reduce((s, c) => s + c.width, 0);
  dom.head.style.gridTemplateColumns = view.template;
  dom.head.style.width = `${total}px`;
  dom.rowsBox.style.width = `${total}px`;
  dom.head.replaceChildren(...view.cols.map((c) => {
    const arrow = state.sortKey === c.key ? (state.sortDir < 0 ? " \u25bc" : " \u25b2") : "";
    const b = html("button", { type: "button", role: "columnheader", class: c.num ? "cnc-num" : "",
      "data-sort": c.key, title: `${c.title || c.label}: click to sort`,
      "aria-sort": state.sortKey === c.key ? (state.sortDir < 0 ? "descending" : "ascending") : "none" });
    b.append(html("span", { class: "cnc-head-model", text: c.top || "" }),
      html("span", { text: c.label + arrow }));
    if (c.key === "instance") { b.disabled = true; b.style.cursor = "default"; b.title = "what a person sees"; }
    b.addEventListener("click", () => {
      if (c.key === "instance") return;
      if (state.sortKey === c.key) state.sortDir = -state.sortDir;
      else { state.sortKey = c.key; state.sortDir = c.key === "id" || c.key === "label" ? 1 : -1; }
      applyFilters(view);
    });
    return b;
  }));
}

// Filter and sort again, then draw the count, the matrix filter's chip, the head and the rows.
export function applyFilters(view) {
  const { d, state, dom } = view;
  if (!d) return;
  const t = performance.now();
  const f = state.focus + 1;
  state.order = filterOrder(d, state);
  const n = state.order.length;
  view.root.dataset.sortMs = String(performance.now() - t);
  dom.rowsBox.style.height = `${n * ROW}px`;
  dom.countBox.textContent = `${n.toLocaleString()} of ${d.n.toLocaleString()} instances`;
  dom.countBox.dataset.count = String(n);
  dom.cellChip.replaceChildren();
  if (state.cell) {
    const clear = html("button", { type: "button", text: "\u00d7", "aria-label": "Clear the matrix filter" });
    clear.addEventListener("click", () => { state.cell = null; applyFilters(view); view.drawPanels(); });
    dom.cellChip.append(html("span", { class: "cnc-chip", text: `${d.names[0]}: ${className(d, state.cell[0])} \u2192 ${d.names[f]}: ${className(d, state.cell[1])} ` }), clear);
  }
  drawHead(view);
  markActiveCell(view);
  drawRows(view);
}

export function drawRows(view) {
  const { d, state, model } = view;
  if (!d) return;
  const selected = new Set(model.get("selected_instances") || []);
  const [a, b] = visibleRange(view.dom.scroller.scrollTop, state.order.length);
  const out = [];
  for (let k = a; k < b; k += 1) {
    const i = state.order[k];
    const id = idOf(d, i);
    const row = html("div", { class: "cnc-row", role: "row", "data-instance": id,
      "aria-selected": selected.has(id) ? "true" : "false", "aria-rowindex": k + 2 });
    row.style.top = `${k * ROW}px`;
    row.style.gridTemplateColumns = view.template;
    for (const c of view.cols) row.append(rowCell(view, c, i, id));
    row.addEventListener("click", (event) => toggleInstance(view, id, event.shiftKey || event.metaKey || event.ctrlKey));
    out.push(row);
  }
  view.dom.rowsBox.replaceChildren(...out);
  if (!state.order.length) view.dom.rowsBox.append(html("div", { class: "cnc-no-rows", text: "No instance matches these filters." }));
  requestVisible(view);
}

function rowCell(view, c, i, id) {
  const { d } = view;
  const y = d.label[i];
  const cell = html("div", { role: "cell", class: c.num ? "cnc-num" : "" });
  if (c.key === "id") cell.textContent = id;
  else if (c.key === "instance") cell.append(previewNode(view, i));
  else if (c.key === "label") { cell.textContent = className(d, y); cell.title = className(d, y); }
  else if (c.key.startsWith("pred")) {
    const p = predOf(d, c.model, i);
    cell.textContent = `${p === y ? "\u2713" : "\u2717"} ${className(d, p)}`;
    cell.title = `${d.names[c.model]} predicts ${className(d, p)}${p === y ? " (right)" : " (wrong)"}`;
    if (p !== y) cell.classList.add("cnc-wrong");
    if (c.model > 0 && p !== predOf(d, 0, i)) cell.classList.add("cnc-changed");
  } else if (c.key.startsWith("conf")) cell.textContent = d.conf[c.model * d.n + i].toFixed(3);
  else if (c.key.startsWith("kl")) cell.textContent = num(d.kl[(c.model - 1) * d.n + i], 4);
  else if (c.key.startsWith("mse")) cell.textContent = num(d.mse[(c.model - 1) * d.n + i], 4);
  return cell;
}

function toggleInstance(view, id, additive) {
  const { model } = view;
  const current = new Set(model.get("selected_instances") || []);
  let next;
  if (additive) {
    if (current.has(id)) current.delete(id); else current.add(id);
    next = [...current];
  } else next = current.size === 1 && current.has(id) ? [] : [id];
  model.set("selected_instances", next);
  model.save_changes();
  drawRows(view);
}

// The filter controls from the state (classes may have changed).
export function syncFilterControls(view) {
  const { d, state, dom } = view;
  dom.classPick.replaceChildren(html("option", { value: "-1", text: "all classes" }),
    ...d.classes.map((c, k) => html("option", { value: String(k), text: c, selected: state.classFilter === k })));
  dom.classPick.value = String(state.classFilter);
  dom.changedBox.checked = state.changed;
  dom.outcomePick.value = state.outcome;
}

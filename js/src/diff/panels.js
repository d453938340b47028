// The classification diff's two panels: the change matrix (rows: what the reference
// predicts, columns: what the compared model in focus predicts; a cell filters the instance
// table to its instances) and the per-class table of accuracy and most common changes.
//
// `view` (views/diff.js) holds d, state (focus, cell, filters), dom.matrixBox,
// dom.perClassBox and the actions syncFilterControls() and applyFilters().
import { html, truncate } from "../shared/dom.js";
import { className } from "./data.js";
import { pct } from "./summary.js";

export function drawPanels(view) {
  view.dom.matrixBox.replaceChildren();
  view.dom.perClassBox.replaceChildren();
  if (!view.d) return;
  drawMatrix(view);
  drawPerClass(view);
}

// The matrix cell of the current cell filter marked active.
export function markActiveCell(view) {
  const { state } = view;
  for (const cell of view.dom.matrixBox.querySelectorAll("[data-cell]")) {
    const on = state.cell && cell.getAttribute("data-cell") === `${state.cell[0]},${state.cell[1]}`;
    cell.classList.toggle("cnc-active", !!on);
  }
}

function drawMatrix(view) {
  const { d, state } = view;
  const matrixBox = view.dom.matrixBox;
  const name = (c) => className(d, c);
  const C = d.classes.length;
  const f = state.focus;
  const cmpName = d.names[f + 1];
  const counts = d.change ? d.change.subarray(f * C * C, (f + 1) * C * C) : new Int32Array(C * C);
  let maxOff = 0;
  let maxDiag = 0;
  for (let a = 0; a < C; a += 1) for (let b = 0; b < C; b += 1) {
    const v = counts[a * C + b];
    if (a === b) maxDiag = Math.max(maxDiag, v); else maxOff = Math.max(maxOff, v);
  }
  matrixBox.append(html("h4", { text: `Change matrix: rows ${d.names[0]} predicts, columns ${cmpName} predicts` }));
  const labelWidth = Math.min(90, 8 + 7 * Math.max(...d.classes.map((c) => Math.min(12, c.length))));
  const grid = html("div", { class: "cnc-matrix", role: "grid", "aria-label": "Change matrix" });
  // Columns as wide as their names need (up to 12 characters) while the matrix stays within
  // about 480 px; past that, 34 px columns and shortened names, whole on hover.
  const longest = Math.max(1, ...d.classes.map((c) => String(c).length));
  const colWidth = Math.max(34, Math.min(8 + 7 * Math.min(12, longest), Math.floor(480 / Math.max(1, C))));
  const colChars = Math.max(4, Math.floor((colWidth - 6) / 7));
  grid.style.gridTemplateColumns = `${labelWidth}px repeat(${C}, ${colWidth}px)`;
  grid.append(html("div"));
  for (let b = 0; b < C; b += 1) {
    const label = html("div", { class: "cnc-axis-label cnc-col-label", text: truncate(name(b), colChars), title: name(b) });
    label.style.width = `${colWidth}px`;
    grid.append(label);
  }
  for (let a = 0; a < C; a += 1) {
    grid.append(html("div", { class: "cnc-axis-label cnc-row-label", text: truncate(name(a), 12), title: name(a) }));
    for (let b = 0; b < C; b += 1) {
      const v = counts[a * C + b];
      const diag = a === b;
      // Two honest scales: agreements (grey) and changes (orange), each from 0 to its own max
      // (square root so one count still shows), both written in the legend.
      const t = v === 0 ? 0 : Math.sqrt(v / ((diag ? maxDiag : maxOff) || 1));
      grid.append(matrixCell(view, { a, b, v, t, diag, colWidth, cmpName }));
    }
  }
  matrixBox.append(grid, html("div", { class: "cnc-muted", text:
    `shade: square root of count; diagonal (agree) grey up to ${maxDiag}, changes orange up to ${maxOff}` }));
}

function matrixCell(view, { a, b, v, t, diag, colWidth, cmpName }) {
  const { d, state } = view;
  const name = (c) => className(d, c);
  const bg = v === 0 ? "transparent" : diag ? `rgba(128,128,128,${0.12 + 0.5 * t})` : `rgba(230,97,1,${0.15 + 0.75 * t})`;
  const cell = html("div", {
    class: "cnc-cell", role: "button", tabindex: 0, "data-cell": `${a},${b}`, text: v ? String(v) : "",
    "aria-label": `${d.names[0]} predicts ${name(a)}, ${cmpName} predicts ${name(b)}: ${v} instances`,
    title: `${d.names[0]}: ${name(a)} \u2192 ${cmpName}: ${name(b)}: ${v} instances (click to list them)`,
  });
  cell.style.background = bg;
  cell.style.width = `${colWidth}px`;
  if (t > 0.7 && !diag) cell.style.color = "#fff";
  if (state.cell && state.cell[0] === a && state.cell[1] === b) cell.classList.add("cnc-active");
  const pickCell = () => {
    Object.assign(state, { cell: [a, b], classFilter: -1, changed: false, outcome: "all" });
    view.syncFilterControls();
    view.applyFilters();
  };
  cell.addEventListener("click", pickCell);
  cell.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pickCell(); } });
  return cell;
}

function drawPerClass(view) {
  const { d, state } = view;
  const name = (c) => className(d, c);
  const C = d.classes.length;
  const f = state.focus;
  const cmpName = d.names[f + 1];
  const perClassBox = view.dom.perClassBox;
  perClassBox.append(html("h4", { text: "Per class: accuracy and most common changes" }));
  const header = html("tr", {}, [html("th", { text: "class" }), html("th", { text: "n" }),
    ...d.names.map((n, k) => html("th", { text: truncate(n, 14), title: `${n}: accuracy on the class${k ? " (change vs reference)" : ""}` })),
    html("th", { text: `changes ${truncate(d.names[0], 10)} \u2192 ${truncate(cmpName, 10)}` })]);
  const rows = [];
  for (let c = 0; c < C; c += 1) {
    const n = d.count ? d.count[c] : 0;
    const cells = [html("td", { text: name(c), title: name(c) }), html("td", { text: String(n) })];
    for (let k = 0; k < d.m; k += 1) {
      const acc = d.accuracy ? d.accuracy[k * C + c] : NaN;
      if (k === 0) { cells.push(html("td", { text: pct(acc) })); continue; }
      const delta = acc - d.accuracy[c];
      cells.push(html("td", { class: delta < 0 ? "cnc-down" : delta > 0 ? "cnc-up" : "",
        text: `${pct(acc)}${delta ? ` (${delta > 0 ? "+" : "\u2212"}${(100 * Math.abs(delta)).toFixed(1)} pts)` : ""}` }));
    }
    const top = (d.topChanges[f] || [])[c] || [];
    cells.push(html("td", { text: top.map(([a, b, k]) => `${name(a)} \u2192 ${name(b)}: ${k}`).join(", ") || "\u2014" }));
    rows.push(html("tr", {}, cells));
  }
  perClassBox.append(html("div", { class: "cnc-perclass" }, [html("table", {}, [html("thead", {}, [header]), html("tbody", {}, rows)])]));
}

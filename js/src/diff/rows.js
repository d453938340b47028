// What the task views of the diff share: a sortable table of instances (rows drawn for the
// first LIMIT in the current order, heights bounded), the summary table with a hover per
// measure, the notes box, and how a token's or a word's text is made visible.
import { html } from "../shared/dom.js";

export const LIMIT = 500;

export const CSS = `
.cnc-diff .cnc-task-body { display: flex; flex-direction: column; gap: 6px; }
.cnc-diff .cnc-notes { margin: 4px 8px; padding: 4px 8px; border-left: 3px solid #e66101;
  background: var(--jp-layout-color2, #fdf2e9); color: var(--jp-ui-font-color1, #222); }
.cnc-diff .cnc-seq-table { max-height: 320px; overflow: auto; border-top: 1px solid var(--jp-border-color2, #ddd); }
.cnc-diff .cnc-seq-table table { border-collapse: collapse; font-variant-numeric: tabular-nums; width: 100%; }
.cnc-diff .cnc-seq-table th { position: sticky; top: 0; background: var(--jp-layout-color2, #f4f4f4);
  z-index: 1; padding: 0; font-weight: 600; text-align: right; white-space: nowrap; }
.cnc-diff .cnc-seq-table th button { all: unset; cursor: pointer; padding: 4px 6px; display: block; }
.cnc-diff .cnc-seq-table th button:focus-visible { outline: 2px solid #1f77b4; }
.cnc-diff .cnc-seq-table th.cnc-text, .cnc-diff .cnc-seq-table td.cnc-text { text-align: left; }
.cnc-diff .cnc-seq-table td { padding: 2px 6px; text-align: right; white-space: nowrap;
  border-bottom: 1px solid var(--jp-border-color3, #f0f0f0); }
.cnc-diff .cnc-seq-table td.cnc-text { max-width: 320px; overflow: hidden; text-overflow: ellipsis; }
.cnc-diff .cnc-seq-table tr[data-instance] { cursor: pointer; }
.cnc-diff .cnc-seq-table tr[data-instance]:hover { background: var(--jp-layout-color2, #f6f6f6); }
.cnc-diff .cnc-seq-table tr[aria-selected="true"] { background: rgba(255, 127, 14, 0.18); }
.cnc-diff .cnc-seq-table tr:focus-visible { outline: 2px solid #1f77b4; outline-offset: -2px; }
.cnc-diff .cnc-detail { padding: 6px 8px; border-top: 1px solid var(--jp-border-color2, #ddd);
  max-height: 320px; overflow: auto; }
.cnc-diff .cnc-word-diff { background: rgba(230, 97, 1, 0.28); border-radius: 2px; font-weight: 600; }
.cnc-diff .cnc-subs { max-height: 220px; overflow: auto; font-variant-numeric: tabular-nums; }
.cnc-diff .cnc-subs td { padding: 1px 6px; white-space: pre; }
.cnc-diff code.cnc-tok { font-family: var(--jp-code-font-family, monospace); font-size: 12px;
  background: var(--jp-layout-color2, #f2f2f2); padding: 0 3px; border-radius: 2px; white-space: pre; }
`;

// Whitespace of a token shown, so " the" and "the" and a newline read apart.
export function visible(text) {
  return String(text).replace(/ /g, "\u2423").replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5");
}

export function notesBox(notes) {
  if (!notes || !notes.length) return null;
  return html("div", { class: "cnc-notes", role: "note" }, notes.map((n) => html("div", { text: n })));
}

// A summary table: rows = measures ([label, key, format(entry) -> text]), columns = entries.
export function summaryTable(entries, measures, explain, head = (e) => e.name) {
  const header = html("tr", {}, [html("th", { text: "measure" }),
    ...entries.map((e) => html("th", { text: head(e), title: head(e) }))]);
  const body = measures.map(([label, key, fmt]) => html("tr", { "data-measure": key }, [
    html("th", { text: label, title: explain[key] || "" }),
    ...entries.map((e) => html("td", { text: fmt(e) })),
  ]));
  return html("table", { class: "cnc-summary cnc-task-summary" },
    [html("thead", {}, [header]), html("tbody", {}, body)]);
}

// A sortable table of instances: cols [{key, label, title, text?, value(i), cell(i) -> node|string}].
//   const t = sortableTable({ cols, n, idOf, onPick, selected: () => Set })
//   t.el, t.draw()
export function sortableTable({ cols, n, idOf, onPick, selected, label }) {
  const state = { key: null, dir: -1 };
  const el = html("div", { class: "cnc-seq-table" });
  const count = html("div", { class: "cnc-muted cnc-rowcount", "aria-live": "polite" });
  function order() {
    const idx = Array.from({ length: n }, (_, i) => i);
    const col = cols.find((c) => c.key === state.key);
    if (col && col.value) {
      const v = idx.map((i) => col.value(i));
      // NaN last whichever the direction.
      idx.sort((i, j) => {
        const a = v[i];
        const b = v[j];
        if (!Number.isFinite(a) || !Number.isFinite(b)) return Number.isFinite(a) ? -1 : Number.isFinite(b) ? 1 : i - j;
        return (a - b) * state.dir || i - j;
      });
    }
    return idx;
  }
  function draw() {
    const chosen = selected();
    const head = html("tr", {}, cols.map((c) => {
      const arrow = state.key === c.key ? (state.dir < 0 ? " \u25bc" : " \u25b2") : "";
      const th = html("th", { class: c.text ? "cnc-text" : "", title: c.title || c.label,
        "aria-sort": state.key === c.key ? (state.dir < 0 ? "descending" : "ascending") : "none" });
      if (c.value) {
        const b = html("button", { type: "button", "data-sort": c.key, text: c.label + arrow });
        b.addEventListener("click", () => {
          if (state.key === c.key) state.dir = -state.dir;
          else { state.key = c.key; state.dir = c.key === "id" ? 1 : -1; }
          draw();
        });
        th.append(b);
      } else th.append(html("span", { text: c.label }));
      return th;
    }));
    const rows = order().slice(0, LIMIT).map((i) => {
      const id = idOf(i);
      const tr = html("tr", { "data-instance": id, "data-row": i, tabindex: 0,
        "aria-selected": chosen.has(id) ? "true" : "false" },
      cols.map((c) => {
        const v = c.cell(i);
        const td = html("td", { class: c.text ? "cnc-text" : "" });
        if (typeof v === "string") { td.textContent = v; if (c.text) td.title = v; } else if (v) td.append(v);
        return td;
      }));
      const pick = () => onPick(i, id);
      tr.addEventListener("click", pick);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
      return tr;
    });
    el.replaceChildren(html("table", { "aria-label": label }, [html("thead", {}, [head]), html("tbody", {}, rows)]));
    count.textContent = n > LIMIT
      ? `${LIMIT.toLocaleString()} of ${n.toLocaleString()} rows shown, in the current order (sort to see others)`
      : `${n.toLocaleString()} rows`;
  }
  return { el, count, draw, state };
}

export const fixed = (v, d = 3) => (Number.isFinite(v) ? v.toFixed(d) : "n/a");
export const signed = (v, d = 3) => (Number.isFinite(v) ? `${v >= 0 ? "+" : "\u2212"}${Math.abs(v).toFixed(d)}` : "n/a");
export const percent = (v, d = 1) => (Number.isFinite(v) ? `${(100 * v).toFixed(d)}%` : "n/a");
// Small values keep three significant digits (a KL of 3e-5 nats is not "0.0000").
export const sig = (v, d = 4) => (!Number.isFinite(v) ? "n/a" : v === 0 || Math.abs(v) >= 0.01 ? v.toFixed(d) : v.toPrecision(3));

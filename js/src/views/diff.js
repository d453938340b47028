// The prediction diff: summary measures, change matrix, per-class accuracy and a
// virtualized table of every instance. Arrays arrive as binary buffers; instance
// previews beyond the embedded ones are asked of the kernel for the rows in view.
import { html, truncate } from "../shared/dom.js";
import { addStyles, viewStyles } from "../shared/styles.js";
import { putBuffers, unpack } from "../shared/wire.js";
import { tooltip } from "../shared/tooltip.js";
import { CSS as TASK_CSS } from "../diff/rows.js";
import { LM_CSS, lmView } from "../diff/lm.js";
import { ANSWERS_CSS, answersView } from "../diff/answers.js";
import { formatPercent } from "../shared/format.js";
import { listen, coalesce, disposer } from "../shared/listen.js";

const ROW = 28;
const HEAD = 36;
const BODY = 420;
const OVERSCAN = 8;

const CSS = `
.cnc-diff.cnc-view { background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #222);
  border-color: var(--jp-border-color2, #ddd); min-height: 120px; }
.cnc-diff .cnc-toolbar { border-bottom-color: var(--jp-border-color2, #eee); }
.cnc-diff .cnc-section { padding: 6px 8px; }
.cnc-diff .cnc-summary-box { overflow-x: auto; }
.cnc-diff h4 { margin: 2px 0 6px; font-size: 12px; font-weight: 600; }
.cnc-diff .cnc-muted { color: var(--jp-ui-font-color2, #666); }
.cnc-diff table.cnc-summary { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.cnc-diff table.cnc-summary th, .cnc-diff table.cnc-summary td { padding: 3px 10px; text-align: right;
  border-bottom: 1px solid var(--jp-border-color3, #eee); white-space: nowrap; }
.cnc-diff table.cnc-summary th { font-weight: 600; cursor: help; }
.cnc-diff table.cnc-summary th:first-child, .cnc-diff table.cnc-summary td:first-child { text-align: left;
  max-width: 220px; overflow: hidden; text-overflow: ellipsis; }
.cnc-diff .cnc-ref-tag { font-size: 10px; padding: 0 4px; margin-left: 4px; border-radius: 3px;
  background: var(--jp-layout-color3, #ddd); }
.cnc-diff .cnc-panels { display: flex; gap: 16px; flex-wrap: wrap; align-items: flex-start; }
.cnc-diff .cnc-matrix { display: grid; gap: 1px; font-variant-numeric: tabular-nums; font-size: 11px; }
.cnc-diff .cnc-matrix .cnc-cell { width: 34px; height: 24px; display: flex; align-items: center;
  justify-content: center; border-radius: 2px; cursor: pointer; outline: none; }
.cnc-diff .cnc-matrix .cnc-cell:focus-visible, .cnc-diff .cnc-matrix .cnc-cell.cnc-active {
  box-shadow: 0 0 0 2px #ff7f0e inset; }
.cnc-diff .cnc-matrix .cnc-axis-label { font-size: 11px; overflow: hidden; text-overflow: ellipsis;
  white-space: nowrap; display: flex; align-items: center; color: var(--jp-ui-font-color2, #555); }
.cnc-diff .cnc-matrix .cnc-col-label { justify-content: center; width: 34px; }
.cnc-diff .cnc-matrix .cnc-row-label { justify-content: flex-end; padding-right: 4px; max-width: 90px; }
.cnc-diff .cnc-perclass { max-height: 330px; overflow: auto; border: 1px solid var(--jp-border-color3, #eee); }
.cnc-diff .cnc-perclass table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
.cnc-diff .cnc-perclass th { position: sticky; top: 0; background: var(--jp-layout-color2, #f4f4f4);
  font-weight: 600; }
.cnc-diff .cnc-perclass th, .cnc-diff .cnc-perclass td { padding: 2px 8px; text-align: right; white-space: nowrap; }
.cnc-diff .cnc-perclass td:first-child, .cnc-diff .cnc-perclass th:first-child,
.cnc-diff .cnc-perclass td:last-child, .cnc-diff .cnc-perclass th:last-child { text-align: left; }
.cnc-diff .cnc-down { color: var(--jp-error-color1, #c0392b); }
.cnc-diff .cnc-up { color: var(--jp-success-color1, #1e8449); }
.cnc-diff .cnc-filters { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; padding: 6px 8px;
  border-top: 1px solid var(--jp-border-color3, #eee); }
.cnc-diff .cnc-filters label { display: inline-flex; gap: 4px; align-items: center; }
.cnc-diff .cnc-filters select, .cnc-diff .cnc-filters button, .cnc-diff .cnc-toolbar select,
.cnc-diff button { font: inherit; }
.cnc-diff .cnc-chip { padding: 1px 6px; border-radius: 10px; background: #ffe0c2; color: #222; }
.cnc-diff .cnc-count { margin-left: auto; font-variant-numeric: tabular-nums; }
.cnc-diff .cnc-table { height: ${BODY}px; overflow: auto; position: relative;
  border-top: 1px solid var(--jp-border-color2, #ddd); }
.cnc-diff .cnc-head { position: sticky; top: 0; z-index: 2; display: grid; height: ${HEAD}px;
  background: var(--jp-layout-color2, #f4f4f4); border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.cnc-diff .cnc-head button { all: unset; cursor: pointer; font-weight: 600; padding: 0 6px; display: flex;
  flex-direction: column; justify-content: center; overflow: hidden; white-space: nowrap; }
.cnc-diff .cnc-head button span { overflow: hidden; text-overflow: ellipsis; }
.cnc-diff .cnc-head .cnc-head-model { font-weight: 400; font-size: 11px; color: var(--jp-ui-font-color2, #666); }
.cnc-diff .cnc-head button.cnc-num { align-items: flex-end; }
.cnc-diff .cnc-head button:focus-visible { outline: 2px solid #1f77b4; }
.cnc-diff .cnc-rows { position: relative; }
.cnc-diff .cnc-row { position: absolute; left: 0; display: grid; height: ${ROW}px; align-items: center;
  border-bottom: 1px solid var(--jp-border-color3, #f0f0f0); cursor: pointer; font-variant-numeric: tabular-nums; }
.cnc-diff .cnc-row:hover { background: var(--jp-layout-color2, #f6f6f6); }
.cnc-diff .cnc-row[aria-selected="true"] { background: rgba(255, 127, 14, 0.18); }
.cnc-diff .cnc-row > div { padding: 0 6px; overflow: hidden; white-space: nowrap; text-overflow: ellipsis; }
.cnc-diff .cnc-row .cnc-num { text-align: right; }
.cnc-diff .cnc-row .cnc-wrong { color: var(--jp-error-color1, #c0392b); }
.cnc-diff .cnc-row .cnc-changed { font-weight: 700; }
.cnc-diff .cnc-thumb { width: 24px; height: 24px; image-rendering: pixelated; display: block;
  border: 1px solid var(--jp-border-color3, #ddd); }
.cnc-diff .cnc-pending { color: var(--jp-ui-font-color3, #aaa); }
.cnc-diff .cnc-note { padding: 4px 8px 6px; color: var(--jp-ui-font-color2, #666); min-height: 16px; }
.cnc-diff .cnc-empty { padding: 24px; color: var(--jp-ui-font-color2, #666); }
.cnc-diff .cnc-no-rows { position: absolute; top: 16px; left: 16px; color: var(--jp-ui-font-color2, #666); }
`;

const pct = (v) => formatPercent(v);
const num = (v, d = 3) => (Number.isFinite(v) ? (Math.abs(v) >= 1e-3 || v === 0 ? v.toFixed(d) : v.toExponential(1)) : "n/a");

function render({ model, el }) {
  const t0 = performance.now();
  const root = html("div", { class: "cnc-view cnc-diff", tabindex: -1 });
  addStyles();
  viewStyles("diff", CSS);
  viewStyles("diff-tasks", TASK_CSS + LM_CSS + ANSWERS_CSS);
  el.append(root);
  const bag = disposer(); // timers and handlers that end with the view

  const title = html("span", { class: "cnc-title", text: "Prediction diff" });
  const focusPick = html("select", { "aria-label": "Model the matrix and filters compare with the reference" });
  const toolbar = html("div", { class: "cnc-toolbar" }, [title, html("label", { text: "matrix and filters for " }, [focusPick])]);
  const empty = html("div", { class: "cnc-empty" });
  const summaryBox = html("div", { class: "cnc-section cnc-summary-box" });
  const matrixBox = html("div");
  const perClassBox = html("div");
  const panels = html("div", { class: "cnc-section cnc-panels" }, [matrixBox, perClassBox]);
  const classPick = html("select", { "aria-label": "Filter by true class" });
  const changedBox = html("input", { type: "checkbox", "aria-label": "changed predictions only" });
  const outcomePick = html("select", { "aria-label": "Filter by who is right" }, [
    html("option", { value: "all", text: "any outcome" }),
    html("option", { value: "ref-right", text: "reference right, compared wrong" }),
    html("option", { value: "ref-wrong", text: "reference wrong, compared right" }),
  ]);
  const cellChip = html("span");
  const countBox = html("span", { class: "cnc-count", "aria-live": "polite" });
  const filters = html("div", { class: "cnc-filters" }, [
    html("label", { text: "class " }, [classPick]),
    html("label", { text: "changed only" }, [changedBox]),
    outcomePick, cellChip, countBox,
  ]);
  const scroller = html("div", { class: "cnc-table", role: "grid", "aria-label": "Instances", tabindex: 0 });
  const head = html("div", { class: "cnc-head", role: "row" });
  const rowsBox = html("div", { class: "cnc-rows", role: "rowgroup" });
  scroller.append(head, rowsBox);
  const note = html("div", { class: "cnc-note" });
  const main = html("div", {}, [summaryBox, panels, filters, scroller, note]);
  // Language models and answer tasks: their own view (js/src/diff/) in place of `main`.
  const taskBox = html("div", { class: "cnc-task-body" });
  root.append(toolbar, empty, main, taskBox);
  const tip = tooltip(root);
  let task = null; // { kind, view }

  // State that lives in the browser only.
  const state = {
    focus: 0, classFilter: -1, changed: false, outcome: "all", cell: null,
    sortKey: null, sortDir: -1, order: new Uint32Array(0),
  };
  let d = null; // decoded data
  // "live" once the kernel answered a ping; "none" in an exported report (no kernel at all);
  // "unknown" until then: a kernel busy running other cells answers late, not never, so
  // controls that need it stay offered (their message waits in the kernel's queue).
  let kernel = window.__cncReport ? "none" : "unknown";
  const previewCache = new Map(); // row index -> ImageData | string
  const pending = new Set();
  const adversarial = new Map(); // model -> {status, started, message}

  function decode() {
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

  const idOf = (i) => (d.ids ? d.ids[i] : String(i));
  const predOf = (k, i) => d.pred[k * d.n + i];
  const className = (c) => (d.classes[c] !== undefined ? d.classes[c] : String(c));

  // -- previews ------------------------------------------------------------------
  function loadEmbedded() {
    previewCache.clear();
    const p = model.get("previews") || {};
    if (p.kind === "image" && p.data) {
      const bytes = new Uint8Array(p.data.buffer || p.data, p.data.byteOffset || 0, p.data.byteLength);
      storeImages(range(p.count || 0), p.shape, bytes);
    } else if (p.kind === "text") {
      (p.texts || []).forEach((text, r) => previewCache.set(r, text));
    }
  }
  function range(k) { return [...Array(k).keys()]; }
  function storeImages(rows, shape, bytes) {
    const [h, w] = shape;
    const channels = shape.length === 3 ? shape[2] : 1;
    rows.forEach((r, k) => {
      const img = new ImageData(w, h);
      const base = k * h * w * channels;
      for (let p = 0; p < h * w; p += 1) {
        for (let c = 0; c < 3; c += 1) img.data[4 * p + c] = bytes[base + p * channels + (channels === 3 ? c : 0)];
        img.data[4 * p + 3] = 255;
      }
      previewCache.set(r, img);
    });
  }
  function onMessage(msg, buffers) {
    if (!msg || typeof msg !== "object") return;
    if (msg.type === "pong") {
      kernel = "live";
      updateNote();
      drawSummary();
      drawRows();
    } else if (msg.type === "rows") {
      for (const r of msg.rows) pending.delete(r);
      if (msg.kind === "image" && buffers && buffers.length) {
        const b = buffers[0];
        storeImages(msg.rows, msg.shape, new Uint8Array(b.buffer || b, b.byteOffset || 0, b.byteLength));
      } else if (msg.kind === "text") {
        msg.rows.forEach((r, k) => previewCache.set(r, msg.texts[k]));
      }
      drawRows();
    } else if ((msg.type === "tokens" || msg.type === "context") && task) {
      task.view.onMessage(putBuffers(msg, buffers || []));
    } else if (msg.type === "adversarial") {
      const entry = adversarial.get(msg.model) || {};
      adversarial.set(msg.model, { ...entry, status: msg.status, message: msg.message, value: msg.value });
      drawSummary();
    }
  }
  function ping() {
    if (kernel === "none") return;
    try {
      model.send({ type: "ping" });
    } catch (err) {
      kernel = "none";
    }
  }
  let requestTimer = null;
  bag.add(() => clearTimeout(requestTimer));
  function requestVisible() {
    if (kernel !== "live" || !d) return;
    clearTimeout(requestTimer);
    requestTimer = setTimeout(() => {
      const p = model.get("previews") || {};
      if (p.kind !== "image" && p.kind !== "text") return;
      const [a, b] = visibleRange();
      const want = [];
      for (let k = a; k < b; k += 1) {
        const r = state.order[k];
        if (!previewCache.has(r) && !pending.has(r)) want.push(r);
      }
      if (!want.length) return;
      want.forEach((r) => pending.add(r));
      model.send({ type: "rows", rows: want });
    }, 60);
  }

  // -- summary -------------------------------------------------------------------
  function drawSummary() {
    summaryBox.replaceChildren();
    if (!d) return;
    const explain = model.get("explain") || {};
    const rows = model.get("summary") || [];
    const th = (text, key) => html("th", { text, title: explain[key] || "" });
    const header = html("tr", {}, [th("model", ""), th("accuracy", "accuracy"), th("\u0394 accuracy", "accuracy"),
      th("agreement", "agreement"), th("error Jaccard", "error_jaccard"), th("kNN@10", "knn"),
      th("OOD agreement", "ood"), th("adversarial overlap", "adversarial")]);
    const body = rows.map((r, k) => {
      const ref = k === 0;
      const delta = ref ? null : r.accuracy - rows[0].accuracy;
      const cells = [
        html("td", { title: r.name }, [r.name, ref ? html("span", { class: "cnc-ref-tag", text: "reference" }) : null]),
        html("td", { text: pct(r.accuracy) }),
        html("td", { class: delta < 0 ? "cnc-down" : delta > 0 ? "cnc-up" : "",
          text: ref ? "" : `${delta >= 0 ? "+" : "\u2212"}${(100 * Math.abs(delta)).toFixed(2)} pts` }),
      ];
      if (ref) {
        cells.push(...[0, 1, 2, 3, 4].map(() => html("td", { class: "cnc-muted", text: "\u2014" })));
      } else {
        cells.push(html("td", { text: pct(r.agreement) }), html("td", { text: num(r.error_jaccard) }),
          html("td", { text: num(r.knn), title: r.knn_error || "" }),
          html("td", { text: num(r.ood), title: r.ood_error || "" }), adversarialCell(r));
      }
      return html("tr", { "data-model": r.name, "aria-selected": "true" }, cells);
    });
    summaryBox.append(html("table", { class: "cnc-summary" }, [html("thead", {}, [header]), html("tbody", {}, body)]));
  }

  function adversarialCell(r) {
    const td = html("td", { class: "cnc-adversarial" });
    const entry = adversarial.get(r.name);
    if (r.adversarial !== null && r.adversarial !== undefined) {
      const info = r.adversarial_info || {};
      td.textContent = num(r.adversarial);
      td.title = `${info.attack || "attack"}, eps ${num(info.eps)}, ${info.instances || "?"} instances; ` +
        `flipped: ${info.flipped_a} (${info.source_a}) / ${info.flipped_b} (${info.source_b})`;
      return td;
    }
    if (entry && entry.status === "running") {
      const secs = Math.round((performance.now() - entry.started) / 1000);
      td.append(html("span", { class: "cnc-muted", text: `attacking\u2026 ${secs} s` }));
      return td;
    }
    if (entry && entry.status === "error") {
      td.append(html("span", { class: "cnc-down", text: "failed", title: entry.message || "" }));
      return td;
    }
    if (kernel === "none") {
      td.append(html("span", { class: "cnc-muted", text: "needs a running kernel",
        title: "Adversarial overlap runs attacks in the kernel; open the notebook with a kernel to compute it" }));
      return td;
    }
    const button = html("button", { type: "button", text: "compute", title: "Run the attack in the kernel (seconds to minutes)" });
    button.addEventListener("click", () => {
      adversarial.set(r.name, { status: "running", started: performance.now() });
      model.send({ type: "adversarial", model: r.name });
      drawSummary();
    });
    td.append(button);
    return td;
  }
  bag.interval(() => {
    if ([...adversarial.values()].some((e) => e.status === "running")) drawSummary();
  }, 1000);

  // -- change matrix and per-class table ---------------------------------------------
  function drawPanels() {
    matrixBox.replaceChildren();
    perClassBox.replaceChildren();
    if (!d) return;
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
      const label = html("div", { class: "cnc-axis-label cnc-col-label", text: truncate(className(b), colChars), title: className(b) });
      label.style.width = `${colWidth}px`;
      grid.append(label);
    }
    for (let a = 0; a < C; a += 1) {
      grid.append(html("div", { class: "cnc-axis-label cnc-row-label", text: truncate(className(a), 12), title: className(a) }));
      for (let b = 0; b < C; b += 1) {
        const v = counts[a * C + b];
        const diag = a === b;
        // Two honest scales: agreements (grey) and changes (orange), each from 0 to its own max
        // (square root so one count still shows), both written in the legend.
        const t = v === 0 ? 0 : Math.sqrt(v / ((diag ? maxDiag : maxOff) || 1));
        const bg = v === 0 ? "transparent" : diag ? `rgba(128,128,128,${0.12 + 0.5 * t})` : `rgba(230,97,1,${0.15 + 0.75 * t})`;
        const cell = html("div", {
          class: "cnc-cell", role: "button", tabindex: 0, "data-cell": `${a},${b}`, text: v ? String(v) : "",
          "aria-label": `${d.names[0]} predicts ${className(a)}, ${cmpName} predicts ${className(b)}: ${v} instances`,
          title: `${d.names[0]}: ${className(a)} \u2192 ${cmpName}: ${className(b)}: ${v} instances (click to list them)`,
        });
        cell.style.background = bg;
        cell.style.width = `${colWidth}px`;
        if (t > 0.7 && !diag) cell.style.color = "#fff";
        if (state.cell && state.cell[0] === a && state.cell[1] === b) cell.classList.add("cnc-active");
        const pickCell = () => {
          Object.assign(state, { cell: [a, b], classFilter: -1, changed: false, outcome: "all" });
          syncFilterControls();
          applyFilters();
        };
        cell.addEventListener("click", pickCell);
        cell.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pickCell(); } });
        grid.append(cell);
      }
    }
    matrixBox.append(grid, html("div", { class: "cnc-muted", text:
      `shade: square root of count; diagonal (agree) grey up to ${maxDiag}, changes orange up to ${maxOff}` }));

    perClassBox.append(html("h4", { text: "Per class: accuracy and most common changes" }));
    const header = html("tr", {}, [html("th", { text: "class" }), html("th", { text: "n" }),
      ...d.names.map((name, k) => html("th", { text: truncate(name, 14), title: `${name}: accuracy on the class${k ? " (change vs reference)" : ""}` })),
      html("th", { text: `changes ${truncate(d.names[0], 10)} \u2192 ${truncate(cmpName, 10)}` })]);
    const rows = [];
    for (let c = 0; c < C; c += 1) {
      const n = d.count ? d.count[c] : 0;
      const cells = [html("td", { text: className(c), title: className(c) }), html("td", { text: String(n) })];
      for (let k = 0; k < d.m; k += 1) {
        const acc = d.accuracy ? d.accuracy[k * C + c] : NaN;
        if (k === 0) { cells.push(html("td", { text: pct(acc) })); continue; }
        const delta = acc - d.accuracy[c];
        cells.push(html("td", { class: delta < 0 ? "cnc-down" : delta > 0 ? "cnc-up" : "",
          text: `${pct(acc)}${delta ? ` (${delta > 0 ? "+" : "\u2212"}${(100 * Math.abs(delta)).toFixed(1)} pts)` : ""}` }));
      }
      const top = (d.topChanges[f] || [])[c] || [];
      cells.push(html("td", { text: top.map(([a, b, k]) => `${className(a)} \u2192 ${className(b)}: ${k}`).join(", ") || "\u2014" }));
      rows.push(html("tr", {}, cells));
    }
    perClassBox.append(html("div", { class: "cnc-perclass" }, [html("table", {}, [html("thead", {}, [header]), html("tbody", {}, rows)])]));
  }

  // -- instance table ---------------------------------------------------------------
  function columns() {
    const cols = [
      { key: "id", label: "id", width: 64, num: true },
      { key: "instance", label: previewKind() === "image" ? "image" : "instance", width: previewKind() === "text" ? 260 : 56 },
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
  function previewKind() { return (model.get("previews") || {}).kind || "none"; }

  function sortValue(key) {
    if (key === "id") return (i) => i;
    if (key === "label") return (i) => d.label[i];
    const k = Number(key.replace(/\D+/g, ""));
    if (key.startsWith("pred")) return (i) => predOf(k, i);
    if (key.startsWith("conf")) return (i) => d.conf[k * d.n + i];
    if (key.startsWith("kl")) return (i) => d.kl[(k - 1) * d.n + i];
    if (key.startsWith("mse")) return (i) => d.mse[(k - 1) * d.n + i];
    return (i) => i;
  }

  let cols = [];
  let template = "";
  function drawHead() {
    cols = columns();
    template = cols.map((c) => `${c.width}px`).join(" ");
    const total = cols.reduce((s, c) => s + c.width, 0);
    head.style.gridTemplateColumns = template;
    head.style.width = `${total}px`;
    rowsBox.style.width = `${total}px`;
    head.replaceChildren(...cols.map((c) => {
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
        applyFilters();
      });
      return b;
    }));
  }

  function applyFilters() {
    if (!d) return;
    const t = performance.now();
    const f = state.focus + 1;
    const keep = new Uint32Array(d.n);
    let n = 0;
    for (let i = 0; i < d.n; i += 1) {
      const pa = predOf(0, i);
      const pb = predOf(f, i);
      const y = d.label[i];
      if (state.classFilter >= 0 && y !== state.classFilter) continue;
      if (state.changed && pa === pb) continue;
      if (state.outcome === "ref-right" && !(pa === y && pb !== y)) continue;
      if (state.outcome === "ref-wrong" && !(pa !== y && pb === y)) continue;
      if (state.cell && !(pa === state.cell[0] && pb === state.cell[1])) continue;
      keep[n] = i;
      n += 1;
    }
    let order = keep.slice(0, n);
    if (state.sortKey) {
      const value = sortValue(state.sortKey);
      const dir = state.sortDir;
      // Sort by a float key copy: typed-array sort with a key lookup stays fast at 10^4+ rows.
      const keys = new Float64Array(d.n);
      for (let k = 0; k < n; k += 1) keys[order[k]] = value(order[k]);
      order.sort((i, j) => (keys[i] - keys[j]) * dir || i - j);
    }
    state.order = order;
    root.dataset.sortMs = String(performance.now() - t);
    rowsBox.style.height = `${n * ROW}px`;
    countBox.textContent = `${n.toLocaleString()} of ${d.n.toLocaleString()} instances`;
    countBox.dataset.count = String(n);
    cellChip.replaceChildren();
    if (state.cell) {
      const clear = html("button", { type: "button", text: "\u00d7", "aria-label": "Clear the matrix filter" });
      clear.addEventListener("click", () => { state.cell = null; applyFilters(); drawPanels(); });
      cellChip.append(html("span", { class: "cnc-chip", text: `${d.names[0]}: ${className(state.cell[0])} \u2192 ${d.names[f]}: ${className(state.cell[1])} ` }), clear);
    }
    drawHead();
    drawPanelsActive();
    drawRows();
  }

  function drawPanelsActive() {
    for (const cell of matrixBox.querySelectorAll("[data-cell]")) {
      const on = state.cell && cell.getAttribute("data-cell") === `${state.cell[0]},${state.cell[1]}`;
      cell.classList.toggle("cnc-active", !!on);
    }
  }

  function visibleRange() {
    const top = Math.max(0, scroller.scrollTop - ROW);
    const a = Math.max(0, Math.floor(top / ROW) - OVERSCAN);
    const b = Math.min(state.order.length, Math.ceil((top + BODY) / ROW) + OVERSCAN);
    return [a, b];
  }

  function drawRows() {
    if (!d) return;
    const selected = new Set(model.get("selected_instances") || []);
    const [a, b] = visibleRange();
    const out = [];
    for (let k = a; k < b; k += 1) {
      const i = state.order[k];
      const id = idOf(i);
      const row = html("div", { class: "cnc-row", role: "row", "data-instance": id,
        "aria-selected": selected.has(id) ? "true" : "false", "aria-rowindex": k + 2 });
      row.style.top = `${k * ROW}px`;
      row.style.gridTemplateColumns = template;
      const y = d.label[i];
      for (const c of cols) {
        const cell = html("div", { role: "cell", class: c.num ? "cnc-num" : "" });
        if (c.key === "id") cell.textContent = id;
        else if (c.key === "instance") cell.append(previewNode(i));
        else if (c.key === "label") { cell.textContent = className(y); cell.title = className(y); }
        else if (c.key.startsWith("pred")) {
          const p = predOf(c.model, i);
          cell.textContent = `${p === y ? "\u2713" : "\u2717"} ${className(p)}`;
          cell.title = `${d.names[c.model]} predicts ${className(p)}${p === y ? " (right)" : " (wrong)"}`;
          if (p !== y) cell.classList.add("cnc-wrong");
          if (c.model > 0 && p !== predOf(0, i)) cell.classList.add("cnc-changed");
        } else if (c.key.startsWith("conf")) cell.textContent = d.conf[c.model * d.n + i].toFixed(3);
        else if (c.key.startsWith("kl")) cell.textContent = num(d.kl[(c.model - 1) * d.n + i], 4);
        else if (c.key.startsWith("mse")) cell.textContent = num(d.mse[(c.model - 1) * d.n + i], 4);
        row.append(cell);
      }
      row.addEventListener("click", (event) => toggleInstance(id, event.shiftKey || event.metaKey || event.ctrlKey));
      out.push(row);
    }
    rowsBox.replaceChildren(...out);
    if (!state.order.length) rowsBox.append(html("div", { class: "cnc-no-rows", text: "No instance matches these filters." }));
    requestVisible();
  }

  function previewNode(i) {
    const item = previewCache.get(i);
    if (item instanceof ImageData) {
      const canvas = html("canvas", { class: "cnc-thumb", width: item.width, height: item.height, role: "img",
        "aria-label": `instance ${idOf(i)}` });
      canvas.getContext("2d").putImageData(item, 0, 0);
      return canvas;
    }
    if (typeof item === "string") {
      // Dataset text is untrusted: textContent only, whole text on hover.
      const span = html("span", { text: truncate(item, 200), title: item });
      return span;
    }
    const kind = previewKind();
    if (kind === "none") return html("span", { class: "cnc-pending", text: "" });
    return html("span", { class: "cnc-pending", text: kernel === "none" ? "n/a" : "\u2026",
      title: kernel === "none" ? "beyond the embedded previews; needs a running kernel" : "loading" });
  }

  function toggleInstance(id, additive) {
    const current = new Set(model.get("selected_instances") || []);
    let next;
    if (additive) {
      if (current.has(id)) current.delete(id); else current.add(id);
      next = [...current];
    } else next = current.size === 1 && current.has(id) ? [] : [id];
    model.set("selected_instances", next);
    model.save_changes();
    drawRows();
  }

  function updateNote() {
    const p = model.get("previews") || {};
    note.replaceChildren();
    if (!d) return;
    const bits = [];
    if (p.kind === "image" || p.kind === "text") {
      const count = p.count || 0;
      if (count < d.n) {
        bits.push(kernel === "none"
          ? `Previews embedded for the first ${count.toLocaleString()} of ${d.n.toLocaleString()} instances; the rest need a running kernel.`
          : `Previews of the first ${count.toLocaleString()} instances are embedded; the rest load from the kernel as you scroll.`);
      }
    } else bits.push("No instance previews: pass instances= to reg.set_data to see them here.");
    bits.push("Click a row to select it (shift adds); diff.selected_instances holds the ids.");
    note.textContent = bits.join(" ");
  }

  function syncFilterControls() {
    classPick.replaceChildren(html("option", { value: "-1", text: "all classes" }),
      ...d.classes.map((c, k) => html("option", { value: String(k), text: c, selected: state.classFilter === k })));
    classPick.value = String(state.classFilter);
    changedBox.checked = state.changed;
    outcomePick.value = state.outcome;
  }

  classPick.addEventListener("change", () => { state.classFilter = Number(classPick.value); state.cell = null; applyFilters(); });
  changedBox.addEventListener("change", () => { state.changed = changedBox.checked; state.cell = null; applyFilters(); });
  outcomePick.addEventListener("change", () => { state.outcome = outcomePick.value; state.cell = null; applyFilters(); });
  focusPick.addEventListener("change", () => { state.focus = Number(focusPick.value); state.cell = null; drawPanels(); applyFilters(); });
  let scrollFrame = 0;
  bag.add(() => cancelAnimationFrame(scrollFrame));
  scroller.addEventListener("scroll", () => {
    if (scrollFrame) return;
    scrollFrame = requestAnimationFrame(() => { scrollFrame = 0; drawRows(); });
  });
  root.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      model.set("selected_instances", []);
      model.save_changes();
      drawRows();
    }
  });

  function taskContext() {
    const previewText = (i) => previewCache.get(i);
    return {
      model, box: taskBox, tip,
      send: (msg) => model.send(msg),
      canAsk: () => kernel !== "none",
      previewText,
      idOf: (i) => { const ids = (model.get("task_view") || {}).ids; return ids ? ids[i] : String(i); },
      selectedIds: () => new Set(model.get("selected_instances") || []),
      choose: (id) => { model.set("selected_instances", [id]); model.save_changes(); },
    };
  }

  function drawTask(kind) {
    d = null; // no classifier rows to draw
    main.style.display = "none";
    empty.style.display = "none";
    focusPick.parentElement.style.display = "none";
    taskBox.style.display = "";
    title.textContent = `Prediction diff: ${(model.get("compared") || []).join(", ")} against ${model.get("reference")}`;
    loadEmbedded();
    if (!task || task.kind !== kind) {
      const make = kind === "causal_lm" ? lmView : answersView;
      task = { kind, view: make(taskContext()) };
    }
    task.view.draw();
  }

  function draw() {
    const kind = model.get("task") || "classification";
    const status = model.get("status");
    if (kind !== "classification" && !status && model.get("reference")) { drawTask(kind); return; }
    taskBox.style.display = "none";
    d = decode();
    if (!d || status) {
      main.style.display = "none";
      focusPick.parentElement.style.display = "none";
      empty.style.display = "block";
      empty.textContent = status || "Nothing to compare yet.";
      return;
    }
    main.style.display = "block";
    focusPick.parentElement.style.display = d.m > 2 ? "" : "none";
    title.textContent = `Prediction diff: ${d.names.slice(1).join(", ")} against ${d.names[0]}`;
    empty.style.display = "none";
    if (state.focus >= d.m - 1) state.focus = 0;
    if (state.classFilter >= d.classes.length) state.classFilter = -1;
    focusPick.replaceChildren(...d.names.slice(1).map((name, k) => html("option", { value: String(k), text: name, selected: k === state.focus })));
    focusPick.disabled = d.m <= 2;
    loadEmbedded();
    syncFilterControls();
    drawSummary();
    drawPanels();
    applyFilters();
    updateNote();
  }

  // Python sets several traits at once: draw once after all their change events.
  const redraw = coalesce(draw);
  bag.add(redraw.cancel);
  bag.add(listen(model, {
    "change:table change:per_class change:reference change:compared change:status change:previews change:classes change:task change:task_view change:details": redraw,
    "change:summary": () => drawSummary(),
    "change:selected_instances": () => drawRows(),
    "msg:custom": onMessage,
  }));
  draw();
  ping();
  root.dataset.renderMs = String(performance.now() - t0);
  return bag;
}

export default { render };

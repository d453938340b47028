// The prediction diff: summary measures, change matrix, per-class accuracy and a
// virtualized table of every instance. Arrays arrive as binary buffers; instance
// previews beyond the embedded ones are asked of the kernel for the rows in view.
// Its parts live in js/src/diff/: the data (data.js), the summary and attack button
// (summary.js), the change matrix and per-class table (panels.js), the instance table
// (instances.js), previews (previews.js), CSS (css.js), and the views of other tasks
// (lm.js, answers.js, rows.js).
import { html } from "../shared/dom.js";
import { addStyles, viewStyles } from "../shared/styles.js";
import { putBuffers } from "../shared/wire.js";
import { tooltip } from "../shared/tooltip.js";
import { listen, coalesce, disposer } from "../shared/listen.js";
import { DIFF_CSS } from "../diff/css.js";
import { CSS as TASK_CSS } from "../diff/rows.js";
import { LM_CSS, lmView } from "../diff/lm.js";
import { ANSWERS_CSS, answersView } from "../diff/answers.js";
import { decode } from "../diff/data.js";
import { drawSummary, attackTicker } from "../diff/summary.js";
import { drawPanels } from "../diff/panels.js";
import { applyFilters, drawRows, syncFilterControls } from "../diff/instances.js";
import { loadEmbedded, storeRows, updateNote } from "../diff/previews.js";

// The view's elements.
function layout(root) {
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
  return { title, focusPick, empty, summaryBox, matrixBox, perClassBox, classPick, changedBox, outcomePick,
    cellChip, countBox, scroller, head, rowsBox, note, main, taskBox };
}

// The view's state in the browser; the parts read it and call its actions.
function viewState(model, root, dom) {
  const view = {
    model, root, dom, tip: tooltip(root),
    task: null, // { kind, view }
    state: { focus: 0, classFilter: -1, changed: false, outcome: "all", cell: null,
      sortKey: null, sortDir: -1, order: new Uint32Array(0) },
    d: null, // decoded data
    // "live" once the kernel answered a ping; "none" in an exported report (no kernel at all);
    // "unknown" until then: a kernel busy running other cells answers late, not never, so
    // controls that need it stay offered (their message waits in the kernel's queue).
    kernel: window.__cncReport ? "none" : "unknown",
    previewCache: new Map(), // row index -> ImageData | string
    pending: new Set(),
    adversarial: new Map(), // model -> {status, started, message}
    requestTimer: null,
    cols: [],
    template: "",
  };
  view.applyFilters = () => applyFilters(view);
  view.drawPanels = () => drawPanels(view);
  view.syncFilterControls = () => syncFilterControls(view);
  return view;
}

function onMessage(view, msg, buffers) {
  if (!msg || typeof msg !== "object") return;
  if (msg.type === "pong") {
    view.kernel = "live";
    updateNote(view);
    drawSummary(view);
    drawRows(view);
  } else if (msg.type === "rows") {
    storeRows(view, msg, buffers);
    drawRows(view);
  } else if ((msg.type === "tokens" || msg.type === "context") && view.task) {
    view.task.view.onMessage(putBuffers(msg, buffers || []));
  } else if (msg.type === "adversarial") {
    const entry = view.adversarial.get(msg.model) || {};
    view.adversarial.set(msg.model, { ...entry, status: msg.status, message: msg.message, value: msg.value });
    drawSummary(view);
  }
}

function ping(view) {
  if (view.kernel === "none") return;
  try {
    view.model.send({ type: "ping" });
  } catch (err) {
    view.kernel = "none";
  }
}

// The filter controls, the scrolling table and Escape.
function wireControls(view, bag) {
  const { model, root, dom, state } = view;
  const refilter = (change) => () => { change(); state.cell = null; applyFilters(view); };
  dom.classPick.addEventListener("change", refilter(() => { state.classFilter = Number(dom.classPick.value); }));
  dom.changedBox.addEventListener("change", refilter(() => { state.changed = dom.changedBox.checked; }));
  dom.outcomePick.addEventListener("change", refilter(() => { state.outcome = dom.outcomePick.value; }));
  dom.focusPick.addEventListener("change", () => { state.focus = Number(dom.focusPick.value); state.cell = null; drawPanels(view); applyFilters(view); });
  let scrollFrame = 0;
  bag.add(() => cancelAnimationFrame(scrollFrame));
  dom.scroller.addEventListener("scroll", () => {
    if (scrollFrame) return;
    scrollFrame = requestAnimationFrame(() => { scrollFrame = 0; drawRows(view); });
  });
  root.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      model.set("selected_instances", []);
      model.save_changes();
      drawRows(view);
    }
  });
}

// What a task view (lm.js, answers.js) may use of this one.
function taskContext(view) {
  const { model } = view;
  const previewText = (i) => view.previewCache.get(i);
  return {
    model, box: view.dom.taskBox, tip: view.tip,
    send: (msg) => model.send(msg),
    canAsk: () => view.kernel !== "none",
    previewText,
    idOf: (i) => { const ids = (model.get("task_view") || {}).ids; return ids ? ids[i] : String(i); },
    selectedIds: () => new Set(model.get("selected_instances") || []),
    choose: (id) => { model.set("selected_instances", [id]); model.save_changes(); },
  };
}

function drawTask(view, kind) {
  const { model, dom } = view;
  view.d = null; // no classifier rows to draw
  dom.main.style.display = "none";
  dom.empty.style.display = "none";
  dom.focusPick.parentElement.style.display = "none";
  dom.taskBox.style.display = "";
  dom.title.textContent = `Prediction diff: ${(model.get("compared") || []).join(", ")} against ${model.get("reference")}`;
  loadEmbedded(view);
  if (!view.task || view.task.kind !== kind) {
    const make = kind === "causal_lm" ? lmView : answersView;
    view.task = { kind, view: make(taskContext(view)) };
  }
  view.task.view.draw();
}

function draw(view) {
  const { model, dom, state } = view;
  const kind = model.get("task") || "classification";
  const status = model.get("status");
  if (kind !== "classification" && !status && model.get("reference")) { drawTask(view, kind); return; }
  dom.taskBox.style.display = "none";
  const d = decode(model);
  view.d = d;
  if (!d || status) {
    dom.main.style.display = "none";
    dom.focusPick.parentElement.style.display = "none";
    dom.empty.style.display = "block";
    dom.empty.textContent = status || "Nothing to compare yet.";
    return;
  }
  dom.main.style.display = "block";
  dom.focusPick.parentElement.style.display = d.m > 2 ? "" : "none";
  dom.title.textContent = `Prediction diff: ${d.names.slice(1).join(", ")} against ${d.names[0]}`;
  dom.empty.style.display = "none";
  if (state.focus >= d.m - 1) state.focus = 0;
  if (state.classFilter >= d.classes.length) state.classFilter = -1;
  dom.focusPick.replaceChildren(...d.names.slice(1).map((name, k) => html("option", { value: String(k), text: name, selected: k === state.focus })));
  dom.focusPick.disabled = d.m <= 2;
  loadEmbedded(view);
  syncFilterControls(view);
  drawSummary(view);
  drawPanels(view);
  applyFilters(view);
  updateNote(view);
}

function render({ model, el }) {
  const t0 = performance.now();
  const root = html("div", { class: "cnc-view cnc-diff", tabindex: -1 });
  addStyles();
  viewStyles("diff", DIFF_CSS);
  viewStyles("diff-tasks", TASK_CSS + LM_CSS + ANSWERS_CSS);
  el.append(root);
  const bag = disposer(); // timers and handlers that end with the view
  const dom = layout(root);
  const view = viewState(model, root, dom);
  bag.add(() => clearTimeout(view.requestTimer));
  bag.interval(attackTicker(view), 1000);
  wireControls(view, bag);
  // Python sets several traits at once: draw once after all their change events.
  const redraw = coalesce(() => draw(view));
  bag.add(redraw.cancel);
  bag.add(listen(model, {
    "change:table change:per_class change:reference change:compared change:status change:previews change:classes change:task change:task_view change:details": redraw,
    "change:summary": () => drawSummary(view),
    "change:selected_instances": () => drawRows(view),
    "msg:custom": (msg, buffers) => onMessage(view, msg, buffers),
  }));
  draw(view);
  ping(view);
  root.dataset.renderMs = String(performance.now() - t0);
  return bag;
}

export default { render };

// The layers view: the module tree of a reference model against up to four compressed
// models, coloured by sparsity masks, weight change, activation change or CKA; a module's
// histograms (altair specs drawn by vega-embed) and the CKA matrix beside it.
// Its parts live in js/src/heatmap/: the tree (tree.js), the modes and legend (modes.js), the
// table (table.js), the side panel (side.js, matrix.js), the damage mode (damage.js), CSS.
import { html } from "../shared/dom.js";
import { addStyles, viewStyles } from "../shared/styles.js";
import { tooltip as makeTooltip } from "../shared/tooltip.js";
import { listen } from "../shared/listen.js";
import { markFiltered } from "../shared/filter.js";
import { HEATMAP_CSS } from "../heatmap/css.js";
import { damageMode, DAMAGE_CSS } from "../heatmap/damage.js";
import { MODES, modeScale, drawLegend } from "../heatmap/modes.js";
import { buildTree, initialOpen, visibleNodes, openParents, readState } from "../heatmap/tree.js";
import { tableRows, markFocus, markPicked } from "../heatmap/table.js";
import { drawSide } from "../heatmap/side.js";

// The view's elements; the mode buttons set the `mode` trait.
function layout(root, model) {
  const modeBox = html("div", { class: "cnc-modes", role: "radiogroup", "aria-label": "Colour cells by" });
  const legendBox = html("div", { class: "cnc-hm-legend" });
  const expandAll = html("button", { type: "button", text: "Expand all" });
  const collapseAll = html("button", { type: "button", text: "Collapse" });
  const toolbar = html("div", { class: "cnc-toolbar" }, [
    html("span", { class: "cnc-title", text: "Layers" }), modeBox, legendBox, expandAll, collapseAll,
  ]);
  const message = html("div", { class: "cnc-hm-message", role: "status" });
  const table = html("div", { class: "cnc-hm-table", role: "treegrid", "aria-label": "Modules by model" });
  const tabs = html("div", { class: "cnc-tabs", role: "tablist" });
  const sideBody = html("div", { class: "cnc-hm-sidebody" });
  const side = html("div", { class: "cnc-hm-side" }, [tabs, sideBody]);
  const body = html("div", { class: "cnc-hm-body" }, [table, side]);
  root.append(toolbar, message, body);
  for (const mode of MODES) {
    const button = html("button", { type: "button", role: "radio", "data-mode": mode.key, text: mode.label,
      title: mode.explain || "zero in both / only in the reference / only in the compressed model" });
    button.addEventListener("click", () => { model.set("mode", mode.key); model.save_changes(); });
    modeBox.append(button);
  }
  return { root, modeBox, legendBox, expandAll, collapseAll, message, table, tabs, sideBody, side };
}

// The view's state in the browser and its actions; the parts read and call them.
function viewState(model, dom) {
  const tip = makeTooltip(dom.root);
  const view = {
    model, dom, open: null, openKey: "", tree: null, focusModule: null, sideTab: "module",
    ckaModel: null, picked: null /* {a, b, rowB} from the CKA matrix */, chart: null, sideDraws: 0,
    domains: {}, lastMode: null, worstOpened: "",
  };
  view.showTip = (lines, event) => {
    const [title, sub, ...rows] = lines;
    tip.show({ title, sub, rows }, event);
  };
  view.hideTip = () => tip.hide();
  view.draw = () => draw(view);
  view.damage = damageMode({ model, tip, redraw: view.draw });
  view.toggle = (node) => {
    if (view.open.has(node.name)) view.open.delete(node.name);
    else view.open.add(node.name);
    draw(view);
    const row = dom.table.querySelector(`[data-layer="${CSS.escape(node.name)}"]`);
    if (row) row.focus();
  };
  view.clearFocus = () => {
    view.focusModule = null;
    view.picked = null;
    markFocus(dom.table, view.focusModule);
    markPicked(dom.table, view.picked);
    drawSide(view);
  };
  view.requestDetail = (module, name) => {
    view.focusModule = module;
    view.sideTab = "module";
    model.set("_detail_request", { module, model: name, at: Date.now() });
    model.save_changes();
    drawSide(view);
    markFocus(dom.table, view.focusModule);
  };
  view.revealAndPick = (a, b, name) => {
    const st = readState(model);
    // After drop_layers the compared model's module has another name in the reference's tree.
    let rowB = b;
    const pairs = st.data[name] && st.data[name].module_b;
    if (pairs) {
      const i = pairs.indexOf(b);
      if (i >= 0) rowB = st.rows[i];
    }
    view.picked = { a, b, rowB };
    openParents(view.open, [a, rowB]);
    draw(view);
  };
  return view;
}

// The mode picked and what follows from it: the side tab, the damage mode's request, busy.
function syncMode(view, st) {
  const { model, dom, damage } = view;
  const mode = MODES.find((m) => m.key === model.get("mode")) || MODES[0];
  for (const b of dom.modeBox.children) b.setAttribute("aria-pressed", String(b.getAttribute("data-mode") === mode.key));
  const isDamage = mode.key === "damage";
  if (mode.key !== view.lastMode) {
    // Entering the damage mode shows its panel; leaving it, the module's.
    if (isDamage) view.sideTab = "damage";
    else if (view.sideTab === "damage") view.sideTab = "module";
    view.lastMode = mode.key;
  }
  if (isDamage && st.rows.length) damage.sync(st);
  const busy = model.get("busy") || (isDamage && damage.busy());
  dom.message.textContent = model.get("message") || "";
  dom.message.style.display = dom.message.textContent ? "block" : "none";
  dom.root.setAttribute("aria-busy", busy ? "true" : "false");
  return { mode, isDamage };
}

// The tree's open nodes: a first view's, then the user's, with the worst group revealed once.
function syncOpen(view, st, worst) {
  view.tree = buildTree(st.rows);
  const key = `${st.reference}|${st.rows.length}|${st.rows[0]}`;
  if (!view.open || key !== view.openKey) {
    view.open = initialOpen(view.tree);
    view.openKey = key;
  }
  const worstKey = [...worst].join("|");
  if (worst.size && worstKey !== view.worstOpened) {
    // Reveal the worst group's modules once per answer: open their parents.
    view.worstOpened = worstKey;
    openParents(view.open, worst);
  }
}

function draw(view) {
  const { model, dom, damage } = view;
  const st = readState(model);
  const { mode, isDamage } = syncMode(view, st);
  if (!st.rows.length) {
    dom.table.replaceChildren();
    dom.legendBox.replaceChildren();
    dom.side.style.display = "none";
    return;
  }
  dom.side.style.display = "";
  const memo = new Map();
  const worst = isDamage ? damage.worstModules() : new Set();
  syncOpen(view, st, worst);
  const shown = visibleNodes(view.tree, view.open);
  const coloured = mode.key === "sparsity" || isDamage ? null : modeScale(st, mode, memo, shown, view.domains[mode.key]);
  drawLegend(dom.legendBox, mode, coloured, { damage, onDomain: (value) => { view.domains[mode.key] = value; draw(view); } });
  const selected = new Set(model.get("selected") || []);
  const rows = tableRows(view, { st, mode, isDamage, coloured, memo, worst, selected }, shown);
  const scroll = dom.table.scrollTop;
  dom.table.replaceChildren(...rows);
  dom.table.scrollTop = scroll;
  markFiltered(dom.table, model.get("filtered_out"));
  markFocus(dom.table, view.focusModule);
  markPicked(dom.table, view.picked);
  drawSide(view);
}

function render({ model, el }) {
  const root = html("div", { class: "cnc-view cnc-heatmap" });
  addStyles();
  viewStyles("heatmap", HEATMAP_CSS + DAMAGE_CSS);
  el.append(root);
  const dom = layout(root, model);
  const view = viewState(model, dom);
  dom.expandAll.addEventListener("click", () => {
    if (!view.tree) return;
    for (const node of view.tree.nodes.values()) if (node.children.length) view.open.add(node.name);
    draw(view);
  });
  dom.collapseAll.addEventListener("click", () => { view.open = new Set(); draw(view); });
  root.addEventListener("keydown", (e) => { if (e.key === "Escape") view.clearFocus(); });
  const onSelected = () => {
    const selected = new Set(model.get("selected") || []);
    for (const h of dom.table.querySelectorAll(".cnc-hm-head [data-model]")) {
      h.setAttribute("aria-selected", String(selected.has(h.getAttribute("data-model"))));
    }
  };
  const unlisten = listen(model, {
    "change:layers change:cka change:mode change:message change:busy change:models": view.draw,
    "change:_detail": () => { if (view.sideTab === "module") drawSide(view); },
    "change:_damage change:_suggest": () => { if (model.get("mode") === "damage") draw(view); },
    "change:selected": onSelected,
    "change:filtered_out": () => markFiltered(dom.table, model.get("filtered_out")),
  });
  // Charts read the theme's colours when drawn: draw the side again when JupyterLab's
  // theme changes (histograms, the damage bars).
  const themeWatch = new MutationObserver(() => drawSide(view));
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light"] });
  draw(view);
  if (!model.get("active")) {
    // A lazy view (the dashboard's) runs the models once it is shown.
    model.set("active", true);
    model.save_changes();
  }
  return () => {
    unlisten();
    themeWatch.disconnect();
    if (view.chart) view.chart.finalize();
  };
}

export default { render };

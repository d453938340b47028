// The layers view: the module tree of a reference model against up to four compressed
// models, coloured by sparsity masks, weight change, activation change or CKA; a module's
// histograms (altair specs drawn by vega-embed) and the CKA matrix beside it.
import { html, svg, formatValue } from "../shared/dom.js";
import { viridis, MISSING, colourScale, scaleLegend, domainOptions, domainControl } from "../shared/colour.js";
import { formatNumber } from "../shared/format.js";
import { addStyles, viewStyles } from "../shared/styles.js";
import { tooltip as makeTooltip } from "../shared/tooltip.js";
import { listen } from "../shared/listen.js";
import { drawChart } from "../shared/vega.js";
import { markFiltered } from "../shared/filter.js";
import { unpack } from "../shared/wire.js";
import { damageMode, DAMAGE_CSS } from "./damage.js";

const MODES = [
  { key: "sparsity", label: "Sparsity" },
  { key: "weight_change", label: "Weight change", column: "weight_rel_change", domain: "zero",
    title: "weight change", explain: "||w_b - w_a|| / ||w_a|| over the module's parameters" },
  { key: "activation_change", label: "Activation change", column: "activation_rel_change", domain: "zero",
    title: "activation change", explain: "||act_b - act_a|| / ||act_a|| over all evaluation instances" },
  { key: "cka", label: "CKA", column: "cka", title: "CKA", domain: "unit",
    explain: "linear CKA of the module's outputs, exact over all instances; 1 = same representation" },
  { key: "damage", label: "Damage", title: "recovered",
    explain: "which groups of weights cost the quality: each group restored from the reference and the model run again (computed in the kernel when picked)" },
];
// Okabe and Ito's bluish green for "zero in both": apart from the blue and vermillion of
// the one-sided zeros and from the grey of nonzero elements, in light and dark themes alike.
const SPARSITY = [
  { column: "zero_both", label: "zero in both", colour: "var(--cnc-zero-both)" },
  { column: "zero_a_only", label: "zero only in the reference", colour: "#0072B2" },
  { column: "zero_b_only", label: "zero only in the compressed model", colour: "#D55E00" },
];
const VISIBLE_ROWS = 26; // a first view opens the tree until about this many rows show

const HEATMAP_CSS = `
.cnc-heatmap { --cnc-zero-both: #009E73; --cnc-nonzero: var(--jp-layout-color3, #d0d0d0); background: var(--jp-layout-color1, #fff);
  color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color2, #ddd); }
.cnc-heatmap .cnc-toolbar { border-bottom-color: var(--jp-border-color2, #eee); }
.cnc-heatmap .cnc-modes { display: inline-flex; border: 1px solid var(--jp-border-color1, #bbb); border-radius: 4px; overflow: hidden; }
.cnc-heatmap .cnc-modes button { border: 0; background: transparent; color: inherit; padding: 2px 8px; cursor: pointer; }
.cnc-heatmap .cnc-modes button[aria-pressed="true"] { background: var(--jp-brand-color1, #1976d2); color: #fff; }
.cnc-heatmap .cnc-hm-body { display: flex; flex-wrap: wrap; gap: 10px; padding: 8px; align-items: flex-start; min-height: 120px; }
.cnc-heatmap .cnc-hm-table { flex: 3 1 520px; min-width: 320px; max-height: 520px; overflow: auto; }
.cnc-heatmap .cnc-hm-side { flex: 2 1 360px; min-width: 320px; max-height: 560px; overflow: auto;
  border-left: 1px solid var(--jp-border-color2, #eee); padding-left: 10px; }
.cnc-heatmap .cnc-hm-row { display: grid; align-items: center; min-height: 22px; border-radius: 3px; outline: none; }
.cnc-heatmap .cnc-hm-row:focus-visible { box-shadow: inset 0 0 0 2px var(--jp-brand-color1, #1976d2); }
.cnc-heatmap .cnc-hm-row.cnc-focused { background: var(--jp-layout-color2, #eef3fb); }
.cnc-heatmap .cnc-hm-row.cnc-hl-a .cnc-hm-label { box-shadow: inset 3px 0 0 #0072B2; }
.cnc-heatmap .cnc-hm-row.cnc-hl-b .cnc-hm-label { box-shadow: inset -3px 0 0 #D55E00; }
.cnc-heatmap .cnc-hm-row.cnc-hl-a, .cnc-heatmap .cnc-hm-row.cnc-hl-b { background: var(--jp-layout-color2, #f3f3f3); }
.cnc-heatmap .cnc-hm-head { position: sticky; top: 0; z-index: 2; background: var(--jp-layout-color1, #fff);
  font-weight: 600; border-bottom: 1px solid var(--jp-border-color2, #ddd); }
.cnc-heatmap .cnc-hm-head [data-model] { cursor: default; text-align: center; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; padding: 2px 4px; }
.cnc-heatmap .cnc-hm-head [data-model][data-filtered="out"] { opacity: 0.45; }
.cnc-heatmap .cnc-hm-head [data-model][aria-selected="true"] { text-decoration: underline; text-decoration-color: #ff7f0e; text-decoration-thickness: 2px; }
.cnc-heatmap .cnc-hm-label { display: flex; align-items: center; gap: 4px; white-space: nowrap; overflow: hidden; cursor: pointer; padding-right: 6px; }
.cnc-heatmap .cnc-hm-caret { width: 14px; flex: 0 0 14px; text-align: center; color: var(--jp-ui-font-color2, #666); cursor: pointer; }
.cnc-heatmap .cnc-hm-kind { color: var(--jp-ui-font-color2, #777); font-size: 11px; }
.cnc-heatmap .cnc-hm-tag { font-size: 10px; padding: 0 4px; border-radius: 3px; border: 1px solid var(--jp-border-color1, #999); color: var(--jp-ui-font-color2, #555); }
.cnc-heatmap .cnc-hm-cell { height: 18px; margin: 1px 2px; border-radius: 2px; position: relative; overflow: hidden; cursor: pointer; }
.cnc-heatmap .cnc-hm-cell.cnc-missing { background: repeating-linear-gradient(135deg, transparent 0 4px, var(--jp-border-color2, #ccc) 4px 5px); }
.cnc-heatmap .cnc-hm-cell.cnc-sparsity { background: var(--cnc-nonzero); display: flex; }
.cnc-heatmap .cnc-hm-cell.cnc-sparsity .cnc-hm-num { color: var(--jp-ui-font-color0, #000); text-shadow: none;
  background: var(--jp-layout-color1, #fff); border-radius: 2px; padding: 0 2px; line-height: 14px; top: 2px; }
.cnc-heatmap .cnc-hm-caption { color: var(--jp-ui-font-color2, #555); font-size: 11px; margin: 2px 0 6px;
  overflow-wrap: anywhere; }
.cnc-heatmap .cnc-hm-cell.cnc-sparsity span { display: block; height: 100%; }
.cnc-heatmap .cnc-hm-cell .cnc-hm-num { position: absolute; right: 3px; top: 1px; font-size: 10px; font-variant-numeric: tabular-nums;
  color: #fff; text-shadow: 0 0 2px #000; pointer-events: none; }
.cnc-heatmap .cnc-hm-cell.cnc-light .cnc-hm-num { color: #111; text-shadow: 0 0 2px #fff; }
.cnc-heatmap .cnc-hm-legend { display: inline-flex; gap: 8px; align-items: center; flex-wrap: wrap; }
.cnc-heatmap .cnc-hm-legend .cnc-legend-bar { width: 110px; }
.cnc-heatmap .cnc-hm-key { display: inline-block; width: 10px; height: 10px; border-radius: 2px; vertical-align: middle; margin-right: 3px; }
.cnc-heatmap .cnc-hm-note { color: var(--jp-warn-color0, #b35c00); font-size: 11px; }
.cnc-heatmap .cnc-tabs { display: flex; gap: 2px; border-bottom: 1px solid var(--jp-border-color2, #ddd); margin-bottom: 6px; }
.cnc-heatmap .cnc-tabs button { border: 0; background: transparent; color: inherit; padding: 4px 10px; cursor: pointer; border-bottom: 2px solid transparent; font: inherit; }
.cnc-heatmap .cnc-tabs button[aria-selected="true"] { border-bottom-color: var(--jp-brand-color1, #1976d2); font-weight: 600; }
.cnc-heatmap .cnc-hm-numbers { border-collapse: collapse; margin: 4px 0 8px; }
.cnc-heatmap .cnc-hm-numbers td { padding: 1px 8px 1px 0; }
.cnc-heatmap .cnc-hm-numbers td:last-child { text-align: right; font-variant-numeric: tabular-nums; }
.cnc-heatmap .cnc-hm-matrix text { fill: var(--jp-ui-font-color1, #222); font-size: 10px; }
.cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell { cursor: pointer; outline: none; }
.cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell:hover, .cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell:focus,
.cnc-heatmap .cnc-hm-matrix rect.cnc-cka-cell.cnc-picked { stroke: var(--jp-ui-font-color0, #000); stroke-width: 2; }
.cnc-heatmap .cnc-hm-message { padding: 6px 10px; color: var(--jp-ui-font-color2, #555); }
.cnc-heatmap .cnc-hm-error { color: var(--jp-error-color1, #c62828); overflow-wrap: anywhere; }
.cnc-heatmap .cnc-tooltip { background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #222); border-color: var(--jp-border-color1, #bbb); }
.cnc-heatmap .cnc-tooltip .cnc-tip-sub { color: var(--jp-ui-font-color2, #555); }
.cnc-heatmap .cnc-picker { display: flex; gap: 4px; margin: 4px 0; flex-wrap: wrap; }
.cnc-heatmap .cnc-picker button { font: inherit; padding: 1px 8px; }
.cnc-heatmap .cnc-picker button[aria-pressed="true"] { font-weight: 700; }
`;

function shortName(name, prefix) {
  return prefix && name.startsWith(prefix) ? name.slice(prefix.length) || name : name;
}

function commonPrefix(names) {
  if (names.length < 2) return "";
  let prefix = names[0];
  for (const n of names) while (!n.startsWith(prefix)) prefix = prefix.slice(0, -1);
  const cut = prefix.lastIndexOf(".");
  return cut >= 0 ? prefix.slice(0, cut + 1) : "";
}

// The module tree: a node for every dotted prefix, rows of the table at the nodes they name.
function buildTree(rows) {
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
function initialOpen(tree) {
  const open = new Set();
  let visible = tree.roots.length;
  let level = tree.roots.filter((n) => n.children.length);
  while (level.length) {
    const added = level.reduce((sum, n) => sum + n.children.length, 0);
    if (visible + added > VISIBLE_ROWS) break;
    for (const n of level) open.add(n.name);
    visible += added;
    level = level.flatMap((n) => n.children).filter((n) => n.children.length);
  }
  return open;
}

function render({ model, el }) {
  const root = html("div", { class: "cnc-view cnc-heatmap" });
  addStyles();
  viewStyles("heatmap", HEATMAP_CSS + DAMAGE_CSS);
  el.append(root);

  let open = null;
  let openKey = "";
  let focusModule = null;
  let sideTab = "module";
  let ckaModel = null;
  let picked = null; // {a, b} from the CKA matrix
  let chart = null;

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
  const tip = makeTooltip(root);
  const damage = damageMode({ model, tip, redraw: () => draw() });
  let lastMode = null;
  let worstOpened = "";

  for (const mode of MODES) {
    const button = html("button", { type: "button", role: "radio", "data-mode": mode.key, text: mode.label,
      title: mode.explain || "zero in both / only in the reference / only in the compressed model" });
    button.addEventListener("click", () => { model.set("mode", mode.key); model.save_changes(); });
    modeBox.append(button);
  }

  function state() {
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
  function aggregate(st, node, name, column, memo) {
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

  function countLeaves(node) {
    let total = node.row >= 0 ? 1 : 0;
    for (const c of node.children) total += countLeaves(c);
    return total;
  }

  function showTip(lines, event) {
    const [title, sub, ...rows] = lines;
    tip.show({ title, sub, rows }, event);
  }
  const hideTip = () => tip.hide();

  function cellTip(st, node, name, memo) {
    const isRow = node.row >= 0;
    const status = isRow ? (st.data[name].status || [])[node.row] : "group";
    const note = isRow ? (st.data[name].note || [])[node.row] : "";
    const lines = [node.name, isRow ? `${name} vs ${st.reference}${st.kind[node.row] ? `, ${st.kind[node.row]}` : ""}`
      : `${name} vs ${st.reference}: ${countLeaves(node)} modules, weighted by element count`];
    if (note) lines[1] += ` \u2014 ${note}`;
    if (isRow && st.data[name].module_b && st.data[name].module_b[node.row] && st.data[name].module_b[node.row] !== node.name) {
      lines[1] += ` (paired with ${st.data[name].module_b[node.row]})`;
    }
    if (status === "only_a" || status === "only_b" || status === "absent") return lines;
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

  // The colour scale of a mode over the visible rows (shared helpers: domain control,
  // range in the legend, small-spread note, neutral mark for missing values).
  const domains = {};
  function modeScale(st, mode, memo, shown) {
    const values = [];
    for (const node of shown) {
      for (const name of st.compared) {
        if (st.data[name].values) values.push(aggregate(st, node, name, mode.column, memo));
      }
    }
    const domain = domains[mode.key] || mode.domain;
    return { scale: colourScale(values, { domain }), values, domain };
  }

  function drawLegend(mode, coloured) {
    legendBox.replaceChildren();
    if (mode.key === "damage") {
      legendBox.append(damage.legend());
      return;
    }
    if (mode.key === "sparsity") {
      for (const part of [...SPARSITY, { column: "nonzero", label: "nonzero", colour: "var(--cnc-nonzero)" }]) {
        const key = html("span", { class: "cnc-hm-key", "data-part": part.column });
        key.style.background = part.colour;
        legendBox.append(html("span", {}, [key, part.label]));
      }
      return;
    }
    const box = scaleLegend(mode.title, coloured.scale, formatNumber);
    box.setAttribute("title", mode.explain);
    legendBox.append(box);
    if (mode.key === "cka") legendBox.append(html("span", { text: "(1 = same representation)" }));
    legendBox.append(domainControl(domainOptions(coloured.values, mode.title), coloured.domain, (value) => {
      domains[mode.key] = value;
      draw();
    }));
  }

  function visibleNodes(tree) {
    const out = [];
    const walk = (node) => {
      out.push(node);
      if (open.has(node.name)) for (const c of node.children) walk(c);
    };
    for (const r of tree.roots) walk(r);
    return out;
  }

  function requestDetail(module, name) {
    focusModule = module;
    sideTab = "module";
    model.set("_detail_request", { module, model: name, at: Date.now() });
    model.save_changes();
    drawSide();
    markFocus();
  }

  function markFocus() {
    for (const row of table.querySelectorAll(".cnc-hm-row[data-layer]")) {
      row.classList.toggle("cnc-focused", row.getAttribute("data-layer") === focusModule);
    }
  }

  let tree = null;
  function draw() {
    const st = state();
    const mode = MODES.find((m) => m.key === model.get("mode")) || MODES[0];
    for (const b of modeBox.children) b.setAttribute("aria-pressed", String(b.getAttribute("data-mode") === mode.key));
    const isDamage = mode.key === "damage";
    if (mode.key !== lastMode) {
      // Entering the damage mode shows its panel; leaving it, the module's.
      if (isDamage) sideTab = "damage";
      else if (sideTab === "damage") sideTab = "module";
      lastMode = mode.key;
    }
    if (isDamage && st.rows.length) damage.sync(st);
    const busy = model.get("busy") || (isDamage && damage.busy());
    message.textContent = model.get("message") || "";
    message.style.display = message.textContent ? "block" : "none";
    root.setAttribute("aria-busy", busy ? "true" : "false");
    if (!st.rows.length) {
      table.replaceChildren();
      legendBox.replaceChildren();
      side.style.display = "none";
      return;
    }
    side.style.display = "";
    tree = buildTree(st.rows);
    const key = `${st.reference}|${st.rows.length}|${st.rows[0]}`;
    if (!open || key !== openKey) {
      open = initialOpen(tree);
      openKey = key;
    }
    const memo = new Map();
    const worst = isDamage ? damage.worstModules() : new Set();
    const worstKey = [...worst].join("|");
    if (worst.size && worstKey !== worstOpened) {
      // Reveal the worst group's modules once per answer: open their parents.
      worstOpened = worstKey;
      for (const target of worst) {
        const parts = target.split(".");
        for (let i = 1; i < parts.length; i += 1) open.add(parts.slice(0, i).join("."));
      }
    }
    const shown = visibleNodes(tree);
    const coloured = mode.key === "sparsity" || isDamage ? null : modeScale(st, mode, memo, shown);
    drawLegend(mode, coloured);
    const template = isDamage ? "minmax(200px, 2fr) minmax(160px, 1.3fr) minmax(70px, 0.5fr)"
      : `minmax(220px, 2fr) repeat(${st.compared.length}, minmax(90px, 1fr))`;
    const selected = new Set(model.get("selected") || []);
    const head = html("div", { class: "cnc-hm-row cnc-hm-head", role: "row" });
    head.style.gridTemplateColumns = template;
    head.append(html("div", { role: "columnheader", text: `module (reference: ${st.reference})` }));
    if (isDamage) {
      for (const c of damage.columns()) head.append(html("div", { role: "columnheader", "data-column": c.label, title: c.title, text: c.label }));
    }
    for (const name of isDamage ? [] : st.compared) {
      head.append(html("div", { role: "columnheader", "data-model": name, title: `${name} compared with ${st.reference}`,
        "aria-selected": String(selected.has(name)), tabindex: 0, text: name }));
    }
    const rows = [head];
    for (const node of shown) {
      const isRow = node.row >= 0;
      const hasKids = node.children.length > 0;
      const row = html("div", {
        class: "cnc-hm-row", role: "row", "data-layer": node.name, tabindex: 0,
        "aria-level": node.depth + 1, "aria-expanded": hasKids ? String(open.has(node.name)) : undefined,
        "aria-label": `${node.name}${isRow && st.kind[node.row] ? `, ${st.kind[node.row]}` : ""}`,
      });
      row.style.gridTemplateColumns = template;
      const caret = html("span", { class: "cnc-hm-caret", text: hasKids ? (open.has(node.name) ? "\u25be" : "\u25b8") : "" });
      const label = html("div", { class: "cnc-hm-label", role: "rowheader", title: node.name }, [caret]);
      label.style.paddingLeft = `${node.depth * 12}px`;
      label.append(html("span", { text: node.label }));
      if (isRow && st.kind[node.row]) label.append(html("span", { class: "cnc-hm-kind", text: st.kind[node.row] }));
      if (isRow) {
        const statuses = new Set(st.compared.map((n) => (st.data[n].status || [])[node.row]));
        if (statuses.has("only_a") && statuses.size === 1) label.append(html("span", { class: "cnc-hm-tag", text: `only in ${st.reference}` }));
        else if (statuses.has("only_b") && statuses.size === 1) label.append(html("span", { class: "cnc-hm-tag", text: "only in compared" }));
      }
      if (hasKids && !open.has(node.name)) label.append(html("span", { class: "cnc-hm-kind", text: `(${countLeaves(node)})` }));
      if (isDamage) {
        const phrase = damage.rowLabel(st, node);
        if (phrase) row.setAttribute("aria-label", `${row.getAttribute("aria-label")}; ${phrase}`);
        if (isRow && worst.has(node.name)) {
          row.classList.add("cnc-dmg-worst");
          row.setAttribute("data-worst", "true");
          label.append(html("span", { class: "cnc-dmg-tag", text: `worst: ${damage.worstGroup()}` }));
        }
      }
      caret.addEventListener("click", (event) => { event.stopPropagation(); toggle(node); });
      label.addEventListener("click", () => {
        if (isRow) requestDetail(node.name, st.compared[0]);
        else toggle(node);
      });
      row.append(label);
      if (isDamage) row.append(...damage.cells(st, node));
      else for (const name of st.compared) row.append(cell(st, node, name, mode, coloured, memo));
      row.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          if (isRow) requestDetail(node.name, st.compared[0]);
          else toggle(node);
        } else if (event.key === "ArrowRight" && hasKids && !open.has(node.name)) toggle(node);
        else if (event.key === "ArrowLeft" && hasKids && open.has(node.name)) toggle(node);
        else if (event.key === "Escape") clearFocus();
      });
      rows.push(row);
    }
    const scroll = table.scrollTop;
    table.replaceChildren(...rows);
    table.scrollTop = scroll;
    markFiltered(table, model.get("filtered_out"));
    markFocus();
    markPicked();
    drawSide();
  }

  function cell(st, node, name, mode, coloured, memo) {
    const entry = st.data[name];
    const box = html("div", { class: "cnc-hm-cell", role: "gridcell", "data-cell-model": name });
    if (entry.error) {
      box.classList.add("cnc-missing");
      box.setAttribute("aria-label", entry.error);
      box.addEventListener("mousemove", (e) => showTip([node.name, entry.error], e));
      box.addEventListener("mouseleave", hideTip);
      return box;
    }
    const status = node.row >= 0 ? (entry.status || [])[node.row] : "group";
    box.addEventListener("mousemove", (e) => showTip(cellTip(st, node, name, memo), e));
    box.addEventListener("mouseleave", hideTip);
    box.addEventListener("click", () => {
      if (node.row >= 0) requestDetail(node.name, name);
      else toggle(node);
    });
    if (status === "only_a" || status === "only_b" || status === "absent") {
      box.classList.add("cnc-missing");
      box.setAttribute("data-status", status);
      box.setAttribute("aria-label", (entry.note || [])[node.row] || status);
      return box;
    }
    if (mode.key === "sparsity") {
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

  function toggle(node) {
    if (open.has(node.name)) open.delete(node.name);
    else open.add(node.name);
    draw();
    const row = table.querySelector(`[data-layer="${CSS.escape(node.name)}"]`);
    if (row) row.focus();
  }

  function clearFocus() {
    focusModule = null;
    picked = null;
    markFocus();
    markPicked();
    drawSide();
  }

  // Highlight the two modules of a picked CKA cell in the tree, opening their parents.
  function markPicked() {
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

  function revealAndPick(a, b, name) {
    const st = state();
    // After drop_layers the compared model's module has another name in the reference's tree.
    let rowB = b;
    const pairs = st.data[name] && st.data[name].module_b;
    if (pairs) {
      const i = pairs.indexOf(b);
      if (i >= 0) rowB = st.rows[i];
    }
    picked = { a, b, rowB };
    for (const target of [a, rowB]) {
      const parts = target.split(".");
      for (let i = 1; i < parts.length; i += 1) open.add(parts.slice(0, i).join("."));
    }
    draw();
  }

  function drawTabs() {
    tabs.replaceChildren();
    const modeKey = model.get("mode");
    const tabList = [["module", "Module"], ["cka", "CKA matrix"], ...(modeKey === "damage" ? [["damage", "Damage"]] : [])];
    for (const [key, label] of tabList) {
      const b = html("button", { type: "button", role: "tab", "data-tab": key, "aria-selected": String(sideTab === key), text: label });
      b.addEventListener("click", () => { sideTab = key; drawSide(); });
      tabs.append(b);
    }
  }

  let sideDraws = 0;
  function drawSide() {
    drawTabs();
    if (chart) { chart.finalize(); chart = null; }
    sideBody.replaceChildren();
    const drawn = ++sideDraws;
    if (sideTab === "damage") {
      damage.panel(sideBody).then((c) => {
        // A later draw replaced this panel meanwhile: its chart is not shown, release it.
        if (c && drawn !== sideDraws) c.finalize();
        else if (c) chart = c;
      });
    } else if (sideTab === "cka") drawMatrix();
    else drawDetail();
  }

  function drawDetail() {
    const detail = model.get("_detail") || {};
    if (!focusModule) {
      sideBody.append(html("div", { class: "cnc-hm-message", text: "Click a module (or a cell) for its weight and activation histograms." }));
      return;
    }
    if (detail.module !== focusModule) {
      sideBody.append(html("div", { class: "cnc-hm-message", text: `Loading ${focusModule}\u2026` }));
      return;
    }
    sideBody.append(html("div", { class: "cnc-tip-title", text: detail.module }));
    sideBody.append(html("div", { class: "cnc-tip-sub", text: `${detail.model} compared with ${detail.reference}` }));
    const st = state();
    if (st.compared.length > 1) {
      const picker = html("div", { class: "cnc-picker", "aria-label": "Compared model" });
      for (const name of st.compared) {
        const b = html("button", { type: "button", "aria-pressed": String(name === detail.model), text: name });
        b.addEventListener("click", () => requestDetail(detail.module, name));
        picker.append(b);
      }
      sideBody.append(picker);
    }
    if (detail.numbers) {
      const labels = { kind: "kind", params: "parameters", zero_both: "zero in both", zero_a_only: "zero only in reference",
        zero_b_only: `zero only in ${detail.model}`, sparsity_a: "sparsity, reference", sparsity_b: `sparsity, ${detail.model}`,
        weight_rel_change: "weight change", activation_rel_change: "activation change", cka: "CKA" };
      const rows = Object.entries(detail.numbers).map(([k, v]) => {
        const pct = k.startsWith("zero") || k.startsWith("sparsity");
        const text = typeof v === "number" && pct ? `${(100 * v).toFixed(2)}%` : formatValue(v);
        return html("tr", {}, [html("td", { text: labels[k] || k }), html("td", { text })]);
      });
      sideBody.append(html("table", { class: "cnc-hm-numbers" }, rows));
    }
    if (detail.error) sideBody.append(html("div", { class: "cnc-hm-error", text: detail.error }));
    if (detail.spec) {
      const box = html("div", { class: "cnc-hm-chart" });
      sideBody.append(box);
      drawChart(box, detail.spec).then((c) => { chart = c; }).catch((err) => {
        box.append(html("div", { class: "cnc-hm-error", text: `chart failed: ${err.message}` }));
      });
    }
  }

  function drawMatrix() {
    const st = state();
    const cka = model.get("cka") || {};
    if (!st.compared.length) return;
    if (!st.compared.includes(ckaModel)) ckaModel = st.compared[0];
    const picker = html("div", { class: "cnc-picker", "aria-label": "Compared model" });
    for (const name of st.compared) {
      const b = html("button", { type: "button", "aria-pressed": String(name === ckaModel), "data-cka-model": name, text: name });
      b.addEventListener("click", () => { ckaModel = name; drawSide(); });
      picker.append(b);
    }
    sideBody.append(picker);
    const entry = cka[ckaModel] || {};
    if (entry.error) {
      sideBody.append(html("div", { class: "cnc-hm-error", text: entry.error }));
      return;
    }
    if (!entry.rows) return;
    const values = unpack(entry.values);
    const na = entry.rows.length;
    const nb = entry.cols.length;
    const pa = commonPrefix(entry.rows);
    const pb = commonPrefix(entry.cols);
    const labelW = Math.min(170, 8 + 6.2 * Math.max(...entry.rows.map((r) => shortName(r, pa).length)));
    const labelH = Math.min(150, 8 + 6.2 * Math.max(...entry.cols.map((c) => shortName(c, pb).length)));
    const size = Math.max(10, Math.min(36, Math.floor(420 / Math.max(na, nb))));
    const width = labelW + nb * size + 10;
    const height = labelH + na * size + 6;
    const g = svg("svg", { class: "cnc-hm-matrix", width, height, role: "grid",
      "aria-label": `CKA of ${st.reference}'s layers (rows) against ${ckaModel}'s (columns)` });
    entry.cols.forEach((c, j) => {
      const x = labelW + j * size + size / 2;
      g.append(svg("text", { x, y: labelH - 4, transform: `rotate(-60 ${x} ${labelH - 4})`, text: shortName(c, pb) }));
    });
    entry.rows.forEach((r, i) => {
      g.append(svg("text", { x: labelW - 4, y: labelH + i * size + size / 2 + 3, "text-anchor": "end", text: shortName(r, pa) }));
      entry.cols.forEach((c, j) => {
        const v = values[i * nb + j];
        const rect = svg("rect", {
          class: "cnc-cka-cell", x: labelW + j * size, y: labelH + i * size, width: size - 1, height: size - 1,
          fill: Number.isFinite(v) ? viridis(v) : MISSING, tabindex: 0, role: "gridcell",
          "data-a": r, "data-b": c, "data-value": Number.isFinite(v) ? v.toFixed(6) : "nan",
          "aria-label": `${r} and ${c}: CKA ${Number.isFinite(v) ? v.toFixed(3) : "n/a"}`,
        });
        if (picked && picked.a === r && picked.b === c) rect.classList.add("cnc-picked");
        const tip = (e) => showTip([`CKA ${Number.isFinite(v) ? v.toFixed(4) : "n/a"}`, "1 = same representation",
          [`${st.reference}`, r], [`${ckaModel}`, c]], e);
        rect.addEventListener("mousemove", tip);
        rect.addEventListener("mouseleave", hideTip);
        const pick = () => revealAndPick(r, c, ckaModel);
        rect.addEventListener("click", pick);
        rect.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
        g.append(rect);
      });
    });
    // The caption is HTML above the matrix: it wraps at the panel's width and nothing below
    // (the legend) can cover it.
    sideBody.append(html("div", { class: "cnc-hm-caption", text: `rows: ${st.reference}${pa ? ` (${pa}\u2026)` : ""}; columns: ${ckaModel}${pb ? ` (${pb}\u2026)` : ""}` }), g);
    const stops = Array.from({ length: 11 }, (_, i) => `${viridis(i / 10)} ${i * 10}%`).join(", ");
    const bar = html("span", { class: "cnc-legend-bar" });
    bar.style.background = `linear-gradient(to right, ${stops})`;
    sideBody.append(html("div", { class: "cnc-hm-legend" }, [html("span", { class: "cnc-legend-title", text: "CKA" }),
      html("span", { text: "0" }), bar, html("span", { text: "1 = same representation" })]));
    if (picked) {
      sideBody.append(html("div", { class: "cnc-tip-sub", text: `highlighted in the tree: ${picked.a} (blue edge) and ${picked.rowB || picked.b} (vermillion edge)` }));
    }
  }

  expandAll.addEventListener("click", () => {
    if (!tree) return;
    for (const node of tree.nodes.values()) if (node.children.length) open.add(node.name);
    draw();
  });
  collapseAll.addEventListener("click", () => { open = new Set(); draw(); });
  root.addEventListener("keydown", (e) => { if (e.key === "Escape") clearFocus(); });

  const onData = () => draw();
  const onDetail = () => { if (sideTab === "module") drawSide(); };
  const onSelected = () => {
    const selected = new Set(model.get("selected") || []);
    for (const h of table.querySelectorAll(".cnc-hm-head [data-model]")) {
      h.setAttribute("aria-selected", String(selected.has(h.getAttribute("data-model"))));
    }
  };
  const unlisten = listen(model, {
    "change:layers change:cka change:mode change:message change:busy change:models": onData,
    "change:_detail": onDetail,
    "change:_damage change:_suggest": () => { if (model.get("mode") === "damage") draw(); },
    "change:selected": onSelected,
    "change:filtered_out": () => markFiltered(table, model.get("filtered_out")),
  });
  // Charts read the theme's colours when drawn: draw the side again when JupyterLab's
  // theme changes (histograms, the damage bars).
  const themeWatch = new MutationObserver(() => drawSide());
  themeWatch.observe(document.body, { attributes: true, attributeFilter: ["data-jp-theme-light"] });
  draw();
  if (!model.get("active")) {
    // A lazy view (the dashboard's) runs the models once it is shown.
    model.set("active", true);
    model.save_changes();
  }
  return () => {
    unlisten();
    themeWatch.disconnect();
    if (chart) chart.finalize();
  };
}

export default { render };

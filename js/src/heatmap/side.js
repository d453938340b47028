// The layers view's side panel: its tabs (module, CKA matrix, and damage in the damage mode)
// and the module tab: the focused module's numbers and histograms (an altair spec).
//
// `view` (views/heatmap.js) holds model, dom.tabs, dom.sideBody, sideTab, focusModule,
// ckaModel, picked, chart (the vega handle shown, finalized on the next draw), sideDraws,
// damage, and the actions requestDetail, revealAndPick, showTip, hideTip.
import { html, formatValue } from "../shared/dom.js";
import { drawChart } from "../shared/vega.js";
import { drawMatrix } from "./matrix.js";
import { readState } from "./tree.js";

const NUMBER_LABELS = { kind: "kind", params: "parameters", zero_both: "zero in both", zero_a_only: "zero only in reference",
  sparsity_a: "sparsity, reference", weight_rel_change: "weight change", activation_rel_change: "activation change", cka: "CKA" };

function drawTabs(view) {
  const { tabs } = view.dom;
  tabs.replaceChildren();
  const modeKey = view.model.get("mode");
  const tabList = [["module", "Module"], ["cka", "CKA matrix"], ...(modeKey === "damage" ? [["damage", "Damage"]] : [])];
  for (const [key, label] of tabList) {
    const b = html("button", { type: "button", role: "tab", "data-tab": key, "aria-selected": String(view.sideTab === key), text: label });
    b.addEventListener("click", () => { view.sideTab = key; drawSide(view); });
    tabs.append(b);
  }
}

export function drawSide(view) {
  drawTabs(view);
  if (view.chart) { view.chart.finalize(); view.chart = null; }
  view.dom.sideBody.replaceChildren();
  const drawn = ++view.sideDraws;
  if (view.sideTab === "damage") {
    view.damage.panel(view.dom.sideBody).then((c) => {
      // A later draw replaced this panel meanwhile: its chart is not shown, release it.
      if (c && drawn !== view.sideDraws) c.finalize();
      else if (c) view.chart = c;
    });
  } else if (view.sideTab === "cka") drawCka(view);
  else drawDetail(view);
}

function drawCka(view) {
  const st = readState(view.model);
  const cka = view.model.get("cka") || {};
  if (!st.compared.length) return;
  if (!st.compared.includes(view.ckaModel)) view.ckaModel = st.compared[0];
  drawMatrix(view.dom.sideBody, { st, cka, ckaModel: view.ckaModel, picked: view.picked }, {
    pickModel: (name) => { view.ckaModel = name; drawSide(view); },
    pick: view.revealAndPick,
    showTip: view.showTip,
    hideTip: view.hideTip,
  });
}

function drawDetail(view) {
  const box = view.dom.sideBody;
  const detail = view.model.get("_detail") || {};
  const focusModule = view.focusModule;
  if (!focusModule) {
    box.append(html("div", { class: "cnc-hm-message", text: "Click a module (or a cell) for its weight and activation histograms." }));
    return;
  }
  if (detail.module !== focusModule) {
    box.append(html("div", { class: "cnc-hm-message", text: `Loading ${focusModule}\u2026` }));
    return;
  }
  box.append(html("div", { class: "cnc-tip-title", text: detail.module }));
  box.append(html("div", { class: "cnc-tip-sub", text: `${detail.model} compared with ${detail.reference}` }));
  const st = readState(view.model);
  if (st.compared.length > 1) {
    const picker = html("div", { class: "cnc-picker", "aria-label": "Compared model" });
    for (const name of st.compared) {
      const b = html("button", { type: "button", "aria-pressed": String(name === detail.model), text: name });
      b.addEventListener("click", () => view.requestDetail(detail.module, name));
      picker.append(b);
    }
    box.append(picker);
  }
  if (detail.numbers) box.append(numbersTable(detail));
  if (detail.error) box.append(html("div", { class: "cnc-hm-error", text: detail.error }));
  if (detail.spec) {
    const chartBox = html("div", { class: "cnc-hm-chart" });
    box.append(chartBox);
    drawChart(chartBox, detail.spec).then((c) => { view.chart = c; }).catch((err) => {
      chartBox.append(html("div", { class: "cnc-hm-error", text: `chart failed: ${err.message}` }));
    });
  }
}

function numbersTable(detail) {
  const labels = { ...NUMBER_LABELS, zero_b_only: `zero only in ${detail.model}`, sparsity_b: `sparsity, ${detail.model}` };
  const rows = Object.entries(detail.numbers).map(([k, v]) => {
    const pct = k.startsWith("zero") || k.startsWith("sparsity");
    const text = typeof v === "number" && pct ? `${(100 * v).toFixed(2)}%` : formatValue(v);
    return html("tr", {}, [html("td", { text: labels[k] || k }), html("td", { text })]);
  });
  return html("table", { class: "cnc-hm-numbers" }, rows);
}

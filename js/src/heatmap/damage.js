// The layers view's damage mode: which groups of a compressed model's changed weights cost
// its quality (Comparison.sensitivity, computed in the kernel only when this mode asks),
// per module of the tree, the worst group's modules marked; the bar chart of `recovered`
// (an altair spec) and the "suggest restores" button beside it.
//
// API (used by views/heatmap.js and heatmap/table.js):
//   const damage = damageMode({ model, tip, redraw });
//   damage.sync(st)            pick the compared model, ask the kernel when nothing answers yet
//   damage.payload()           the answer for the current pair, or null
//   damage.columns(st)         [{label, title}] of the two table columns
//   damage.cells(st, node)     the two cells of a tree node (recovered, proxy)
//   damage.worstModules()      Set of the worst measured group's modules
//   damage.legend()            the legend element
//   damage.panel(box)          draws the side panel (summary, chart, suggest); returns a
//                              promise of the chart handle (finalize it when redrawing)
//   damage.rowLabel(st, node)  a phrase for the row's aria-label
import { html } from "../shared/dom.js";
import { viridis } from "../shared/colour.js";
import { drawChart } from "../shared/vega.js";

export const DAMAGE_CSS = `
.cnc-heatmap { --cnc-worse: #D55E00; }
.cnc-heatmap .cnc-hm-cell.cnc-dmg-negative { background: repeating-linear-gradient(135deg, var(--cnc-worse) 0 5px, transparent 5px 8px);
  border: 1px solid var(--cnc-worse); }
.cnc-heatmap .cnc-hm-cell.cnc-dmg-negative .cnc-hm-num { color: var(--jp-ui-font-color0, #000); text-shadow: none;
  background: var(--jp-layout-color1, #fff); border-radius: 2px; padding: 0 2px; line-height: 14px; top: 2px; }
.cnc-heatmap .cnc-hm-cell.cnc-dmg-text { background: transparent; border: 1px dashed var(--jp-border-color1, #999); cursor: help; }
.cnc-heatmap .cnc-hm-cell.cnc-dmg-text .cnc-hm-num, .cnc-heatmap .cnc-hm-cell.cnc-dmg-proxy .cnc-hm-num {
  color: var(--jp-ui-font-color1, #222); text-shadow: none; font-size: 11px; }
.cnc-heatmap .cnc-hm-cell.cnc-dmg-text .cnc-hm-num { left: 4px; right: auto; color: var(--jp-ui-font-color2, #666); font-style: italic; }
.cnc-heatmap .cnc-hm-cell.cnc-dmg-proxy { background: transparent; cursor: help; }
.cnc-heatmap .cnc-hm-row.cnc-dmg-worst { background: color-mix(in srgb, var(--cnc-worse) 14%, transparent); }
.cnc-heatmap .cnc-hm-row.cnc-dmg-worst .cnc-hm-label { box-shadow: inset 3px 0 0 var(--cnc-worse); }
.cnc-heatmap .cnc-dmg-tag { font-size: 10px; padding: 0 4px; border-radius: 3px; border: 1px solid var(--cnc-worse);
  color: var(--jp-ui-font-color1, #222); }
.cnc-heatmap .cnc-dmg-summary { margin: 4px 0 8px; }
.cnc-heatmap .cnc-hm-head [data-column] { text-align: center; padding: 2px 6px; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; cursor: help; }
.cnc-heatmap .cnc-dmg-controls { display: flex; gap: 8px; align-items: center; flex-wrap: wrap; margin: 6px 0; }
.cnc-heatmap .cnc-dmg-controls button, .cnc-heatmap .cnc-dmg-controls select { font: inherit; color: inherit;
  background: var(--jp-layout-color2, #f3f3f3); border: 1px solid var(--jp-border-color1, #bbb); border-radius: 3px; padding: 1px 8px; }
.cnc-heatmap .cnc-dmg-controls button[disabled] { opacity: 0.55; cursor: not-allowed; }
.cnc-heatmap .cnc-dmg-made { margin: 4px 0; }
.cnc-heatmap .cnc-dmg-made li { font-variant-numeric: tabular-nums; }
`;

const PROXY_MEANING = "proxy: relative weight change ||w_b - w_a|| / ||w_a|| over the group's tensors "
  + "(a ratio; 0 = unchanged, 1 = a change as large as the weights). Cheap: from the weights alone.";
const RECOVERED_MEANING = "recovered: the fraction of the quality gap between the reference and the "
  + "compressed model that restoring this group alone (from the reference) closes; 100% = the "
  + "reference's quality back, below 0 = restoring it made things worse.";

const pct = (v) => `${(100 * v).toFixed(Math.abs(v) < 0.1 ? 1 : 0)}%`;
const num = (v, digits = 4) => (typeof v === "number" && Number.isFinite(v) ? Number(v.toPrecision(digits)).toString() : "n/a");

export function damageMode({ model, tip, redraw }) {
  // In an exported report there is no kernel to run restores.
  const report = Boolean(window.__cncReport);
  let chosen = null; // the compared model the damage is shown for
  let groups = "auto";
  let pending = null; // {key, at} of the request in flight
  let suggesting = null; // {model, at}

  const keyOf = (reference, name, g) => `${reference}\u0000${name}\u0000${g}`;
  let current = { reference: null, compared: [] };

  function answer() {
    const d = model.get("_damage") || {};
    return d.model ? d : null;
  }

  function sync(st) {
    current = { reference: st.reference, compared: st.compared };
    const have = answer();
    if (!st.compared.includes(chosen)) {
      // A report (or another view of this widget) may hold the answer for one model already.
      chosen = have && have.reference === st.reference && st.compared.includes(have.model) ? have.model : st.compared[0];
      if (have && have.model === chosen) groups = have.groups || groups;
    }
    if (!chosen || report || payload() || (pending && pending.key === keyOf(st.reference, chosen, groups))) return;
    const at = Date.now();
    pending = { key: keyOf(st.reference, chosen, groups), at };
    model.set("_damage_request", { model: chosen, groups, at });
    model.save_changes();
  }

  function payload() {
    const d = answer();
    if (!d || d.reference !== current.reference || d.model !== chosen || (d.groups || "auto") !== groups) return null;
    if (pending && pending.key === keyOf(d.reference, d.model, d.groups) && d.at === pending.at) pending = null;
    return d;
  }

  function waiting() {
    return !payload() && Boolean(pending);
  }

  function groupRow(d, i) {
    const t = d.table;
    return { group: t.group[i], by: t.by[i], modules: t.modules[i], params: t.params[i], proxy: t.proxy[i],
      quality: t.quality_restored[i], recovered: t.recovered[i], kl: t.kl_restored ? t.kl_restored[i] : null };
  }

  // The worst group touching a tree node: its own row's, or the first (worst) of its rows'.
  function groupOf(st, d, node) {
    let best = -1;
    const visit = (n) => {
      if (n.row >= 0) {
        const g = d.module_group[n.row];
        if (g >= 0 && (best < 0 || g < best)) best = g;
      }
      for (const c of n.children) visit(c);
    };
    visit(node);
    return best;
  }

  function tipLines(st, d, node, g) {
    const r = groupRow(d, g);
    const a = d.attrs;
    const isRow = node.row >= 0;
    const kind = isRow && st.kind[node.row] ? `, ${st.kind[node.row]}` : "";
    const rows = [
      ["group", `${r.group} (by ${r.by}, ${r.modules.length} module${r.modules.length === 1 ? "" : "s"})`],
      ["recovered", r.recovered === null ? "not measured (proxy only)" : pct(r.recovered), RECOVERED_MEANING],
      [`${a.metric} restored`, r.quality === null ? "not measured" : num(r.quality)],
      ["proxy (weight change)", num(r.proxy, 3), PROXY_MEANING],
      ["parameters in group", r.params.toLocaleString()],
    ];
    if (r.kl !== null && r.kl !== undefined) rows.push(["KL(a || restored)", `${num(r.kl, 3)} nats`]);
    rows.push(
      [`${a.metric}, ${d.reference}`, num(a.quality_a)],
      [`${a.metric}, ${d.model}`, num(a.quality_b)],
      ["measured on", `${a.n_rows} rows, ${a.restore_runs} restore runs`],
      ["metric", `${a.metric} (${a.better} is better)`],
    );
    return {
      title: node.name,
      sub: isRow ? `${d.model} vs ${d.reference}${kind}` : `worst group among the modules below`,
      rows,
      notes: [r.recovered === null ? "Not measured: only the top groups by proxy get a restore run (top="
        + `${a.top}); this one keeps its proxy.` : RECOVERED_MEANING],
    };
  }

  function cells(st, node) {
    const d = payload();
    const recovered = html("div", { class: "cnc-hm-cell", role: "gridcell", "data-cell-model": chosen, "data-column": "recovered", tabindex: -1 });
    const proxy = html("div", { class: "cnc-hm-cell cnc-dmg-proxy", role: "gridcell", "data-column": "proxy" });
    if (!d || d.error) {
      recovered.classList.add("cnc-missing");
      const why = d ? d.error : report ? "needs a running kernel" : "measuring\u2026";
      recovered.setAttribute("aria-label", `${chosen}: ${why}`);
      proxy.classList.add("cnc-missing");
      return [recovered, proxy];
    }
    const g = groupOf(st, d, node);
    if (g < 0) {
      for (const box of [recovered, proxy]) {
        box.classList.add("cnc-missing");
        box.setAttribute("aria-label", "no weights in both models");
      }
      return [recovered, proxy];
    }
    const r = groupRow(d, g);
    const show = (e) => tip.show(tipLines(st, d, node, g), e);
    for (const box of [recovered, proxy]) {
      box.addEventListener("mousemove", show);
      box.addEventListener("mouseleave", () => tip.hide());
    }
    recovered.setAttribute("data-group", r.group);
    proxy.setAttribute("data-value", String(r.proxy));
    proxy.setAttribute("aria-label", `proxy ${num(r.proxy, 3)} (relative weight change of group ${r.group})`);
    proxy.append(html("span", { class: "cnc-hm-num", text: num(r.proxy, 3) }));
    if (r.recovered === null) {
      recovered.classList.add("cnc-dmg-text");
      recovered.setAttribute("data-value", "nan");
      recovered.setAttribute("aria-label", `group ${r.group}: not measured, proxy ${num(r.proxy, 3)}`);
      recovered.append(html("span", { class: "cnc-hm-num", text: "not measured" }));
      return [recovered, proxy];
    }
    recovered.setAttribute("data-value", String(r.recovered));
    recovered.setAttribute("aria-label", `group ${r.group}: restoring it recovers ${pct(r.recovered)} of the ${d.attrs.metric} gap`);
    if (r.recovered < 0) {
      recovered.classList.add("cnc-dmg-negative");
    } else {
      // A fixed 0..1 domain: the same colour means the same recovery in every comparison.
      recovered.style.background = viridis(Math.min(1, r.recovered));
      if (r.recovered > 0.6) recovered.classList.add("cnc-light");
    }
    recovered.append(html("span", { class: "cnc-hm-num", text: pct(r.recovered) }));
    return [recovered, proxy];
  }

  function worstModules() {
    const d = payload();
    if (!d || d.error || d.worst === null || d.worst === undefined) return new Set();
    return new Set(d.table.modules[d.worst]);
  }

  function worstGroup() {
    const d = payload();
    return d && !d.error && d.worst !== null && d.worst !== undefined ? d.table.group[d.worst] : null;
  }

  function columns() {
    return [
      { label: `recovered (${chosen || ""})`, title: RECOVERED_MEANING },
      { label: "proxy", title: PROXY_MEANING },
    ];
  }

  function legend() {
    const stops = Array.from({ length: 11 }, (_, i) => `${viridis(i / 10)} ${i * 10}%`).join(", ");
    const bar = html("span", { class: "cnc-legend-bar" });
    bar.style.background = `linear-gradient(to right, ${stops})`;
    const neg = html("span", { class: "cnc-hm-key" });
    neg.style.background = "repeating-linear-gradient(135deg, var(--cnc-worse) 0 3px, transparent 3px 5px)";
    neg.style.border = "1px solid var(--cnc-worse)";
    const worst = html("span", { class: "cnc-hm-key" });
    worst.style.background = "var(--cnc-worse)";
    return html("span", { class: "cnc-hm-legend", title: RECOVERED_MEANING }, [
      html("span", { class: "cnc-legend-title", text: "recovered" }), html("span", { text: "0%" }), bar,
      html("span", { text: "100% of the gap" }), html("span", {}, [neg, "below 0: worse"]),
      html("span", {}, [worst, "worst group"]),
    ]);
  }

  function rowLabel(st, node) {
    const d = payload();
    if (!d || d.error) return "";
    const g = groupOf(st, d, node);
    if (g < 0) return "";
    const r = groupRow(d, g);
    const worst = g === d.worst ? ", worst group" : "";
    return `group ${r.group}${worst}: ${r.recovered === null ? "not measured" : `recovered ${pct(r.recovered)}`}, proxy ${num(r.proxy, 3)}`;
  }

  function request(name, g) {
    chosen = name;
    groups = g;
    pending = null;
    redraw();
  }

  // The kernel answered the suggestion in flight: no longer busy.
  function settleSuggest() {
    const s = model.get("_suggest") || {};
    if (suggesting && s.at === suggesting.at) suggesting = null;
  }

  function panel(box) {
    settleSuggest();
    const st = current;
    const d = payload();
    box.append(html("div", { class: "cnc-tip-title", text: `Damage: ${chosen || ""} against ${st.reference || ""}` }));
    const controls = html("div", { class: "cnc-dmg-controls" });
    if (st.compared.length > 1) {
      const picker = html("div", { class: "cnc-picker", "aria-label": "Compared model" });
      for (const name of st.compared) {
        const b = html("button", { type: "button", "aria-pressed": String(name === chosen), "data-damage-model": name, text: name });
        b.addEventListener("click", () => request(name, groups));
        picker.append(b);
      }
      box.append(picker);
    }
    const select = html("select", { "aria-label": "Group weights by", title: "auto: by module kind and by block; module: one group per module" },
      [["auto", "groups: kind and block"], ["module", "groups: one per module"]].map(([v, t]) =>
        html("option", { value: v, text: t, selected: v === groups ? "selected" : undefined })));
    select.addEventListener("change", () => request(chosen, select.value));
    controls.append(select);
    const canSuggest = d && !d.error && d.suggest && d.suggest.ok && !report;
    const busy = Boolean(suggesting);
    const button = html("button", {
      type: "button", class: "cnc-dmg-suggest", "data-action": "suggest-restores",
      text: busy ? "suggesting\u2026" : "suggest restores",
      "aria-busy": busy ? "true" : "false",
      title: report ? "needs a running kernel"
        : d && d.suggest && !d.suggest.ok ? d.suggest.why
          : `reg.suggest_restores(${JSON.stringify(st.reference)}, ${JSON.stringify(chosen)}): restore the worst groups from the reference, one more per child, until 95% of its quality is kept`,
    });
    if (!canSuggest || busy) button.disabled = true;
    button.addEventListener("click", () => {
      const at = Date.now();
      suggesting = { model: chosen, at };
      model.set("_suggest_request", { model: chosen, at });
      model.save_changes();
      redraw();
    });
    controls.append(button);
    box.append(controls);
    drawSuggested(box);
    if (report && !d) {
      box.append(html("div", { class: "cnc-hm-message", text: "Damage needs a running kernel (each group is restored and the model run again). "
        + "Pick the mode in the notebook before exporting, or call cmp.sensitivity() there." }));
      return Promise.resolve(null);
    }
    if (!d) {
      box.append(html("div", { class: "cnc-hm-message", role: "status", "aria-busy": "true",
        text: `Measuring which groups of ${chosen}'s weights cost its quality (restore runs in the kernel)\u2026` }));
      return Promise.resolve(null);
    }
    if (d.error) {
      box.append(html("div", { class: "cnc-hm-error", text: d.error }));
      return Promise.resolve(null);
    }
    const a = d.attrs;
    const worst = worstGroup();
    box.append(html("div", { class: "cnc-tip-sub cnc-dmg-summary", text: `${a.metric} (${a.better} is better): ${d.reference} ${num(a.quality_a)}, `
      + `${d.model} ${num(a.quality_b)} on ${a.n_rows} rows; ${a.restore_runs} restore runs`
      + `${worst ? `; worst group: ${worst} (its modules marked in the tree)` : "; no group measured"}.` }));
    const chart = html("div", { class: "cnc-hm-chart cnc-dmg-chart" });
    // The chart's title is HTML here (it wraps at the panel's width; the summary above says
    // what its subtitle says); the bars take the panel's width.
    box.append(html("div", { class: "cnc-hm-caption", text: `Quality gap closed by restoring each group from ${d.reference} (measured groups, worst first)` }), chart);
    const width = Math.max(160, Math.min(420, box.clientWidth - 130));
    const spec = { ...d.spec, title: undefined, width };
    delete spec.title;
    return drawChart(chart, spec).catch((err) => {
      chart.append(html("div", { class: "cnc-hm-error", text: `chart failed: ${err.message}` }));
      return null;
    });
  }

  function drawSuggested(box) {
    const s = model.get("_suggest") || {};
    if (suggesting || !s.model || s.model !== chosen || s.reference !== current.reference) return;
    if (s.error) {
      box.append(html("div", { class: "cnc-hm-error", text: s.error }));
      return;
    }
    const q = s.quality || {};
    if (!s.made.length) {
      box.append(html("div", { class: "cnc-tip-sub", text: `${s.model} already keeps 95% of ${s.reference}'s ${s.metric}, or no restore helps: no child made.` }));
      return;
    }
    box.append(html("div", { class: "cnc-tip-sub", text: `Restore children made (now in the provenance graph and the scatter); ${s.metric} on the whole evaluation set: `
      + `${s.reference} ${num(q[s.reference])}, ${s.model} ${num(q[s.model])}` }));
    box.append(html("ul", { class: "cnc-dmg-made" }, s.made.map((n) => html("li", { "data-made": n, text: `${n}: ${num(q[n])}` }))));
  }

  function busy() {
    settleSuggest();
    return waiting() || Boolean(suggesting);
  }

  return { sync, payload, columns, cells, worstModules, worstGroup, legend, panel, rowLabel, busy, isReport: () => report };
}

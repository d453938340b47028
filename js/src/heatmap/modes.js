// The layers view's colour modes (what a cell shows), the colour scale of a mode over the
// visible rows, and the toolbar's legend of the mode.
import { html } from "../shared/dom.js";
import { colourScale, scaleLegend, domainOptions, domainControl } from "../shared/colour.js";
import { formatNumber } from "../shared/format.js";
import { aggregate } from "./tree.js";

export const MODES = [
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
export const SPARSITY = [
  { column: "zero_both", label: "zero in both", colour: "var(--cnc-zero-both)" },
  { column: "zero_a_only", label: "zero only in the reference", colour: "#0072B2" },
  { column: "zero_b_only", label: "zero only in the compressed model", colour: "#D55E00" },
];

// The colour scale of a mode over the visible rows (shared helpers: domain control,
// range in the legend, small-spread note, neutral mark for missing values). `chosen` is the
// domain picked in the legend, if any.
export function modeScale(st, mode, memo, shown, chosen) {
  const values = [];
  for (const node of shown) {
    for (const name of st.compared) {
      if (st.data[name].values) values.push(aggregate(st, node, name, mode.column, memo));
    }
  }
  const domain = chosen || mode.domain;
  return { scale: colourScale(values, { domain }), values, domain };
}

// The toolbar's legend: the damage mode's, the sparsity parts, or the scale with its domain
// control (onDomain(value) when another domain is picked).
export function drawLegend(legendBox, mode, coloured, { damage, onDomain }) {
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
  legendBox.append(domainControl(domainOptions(coloured.values, mode.title), coloured.domain, onDomain));
}

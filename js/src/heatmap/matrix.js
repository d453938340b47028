// The layers view's CKA tab: the matrix of CKA between every module of the reference (rows)
// and of one compared model (columns), its model picker, caption and legend; a cell picked
// highlights its two modules in the tree.
import { html, svg } from "../shared/dom.js";
import { viridis, MISSING } from "../shared/colour.js";
import { unpack } from "../shared/wire.js";

export function shortName(name, prefix) {
  return prefix && name.startsWith(prefix) ? name.slice(prefix.length) || name : name;
}

// The dotted prefix all the names share (up to its last dot), "" for fewer than two names.
export function commonPrefix(names) {
  if (names.length < 2) return "";
  let prefix = names[0];
  for (const n of names) while (!n.startsWith(prefix)) prefix = prefix.slice(0, -1);
  const cut = prefix.lastIndexOf(".");
  return cut >= 0 ? prefix.slice(0, cut + 1) : "";
}

// Draws into `box` for the compared model `ckaModel` (one of st.compared). `on`: pickModel(name),
// pick(a, b, name), showTip(lines, event), hideTip().
export function drawMatrix(box, { st, cka, ckaModel, picked }, on) {
  const picker = html("div", { class: "cnc-picker", "aria-label": "Compared model" });
  for (const name of st.compared) {
    const b = html("button", { type: "button", "aria-pressed": String(name === ckaModel), "data-cka-model": name, text: name });
    b.addEventListener("click", () => on.pickModel(name));
    picker.append(b);
  }
  box.append(picker);
  const entry = cka[ckaModel] || {};
  if (entry.error) {
    box.append(html("div", { class: "cnc-hm-error", text: entry.error }));
    return;
  }
  if (!entry.rows) return;
  const pa = commonPrefix(entry.rows);
  const pb = commonPrefix(entry.cols);
  const g = matrixSvg(entry, { st, ckaModel, picked, pa, pb }, on);
  // The caption is HTML above the matrix: it wraps at the panel's width and nothing below
  // (the legend) can cover it.
  box.append(html("div", { class: "cnc-hm-caption", text: `rows: ${st.reference}${pa ? ` (${pa}\u2026)` : ""}; columns: ${ckaModel}${pb ? ` (${pb}\u2026)` : ""}` }), g);
  const stops = Array.from({ length: 11 }, (_, i) => `${viridis(i / 10)} ${i * 10}%`).join(", ");
  const bar = html("span", { class: "cnc-legend-bar" });
  bar.style.background = `linear-gradient(to right, ${stops})`;
  box.append(html("div", { class: "cnc-hm-legend" }, [html("span", { class: "cnc-legend-title", text: "CKA" }),
    html("span", { text: "0" }), bar, html("span", { text: "1 = same representation" })]));
  if (picked) {
    box.append(html("div", { class: "cnc-tip-sub", text: `highlighted in the tree: ${picked.a} (blue edge) and ${picked.rowB || picked.b} (vermillion edge)` }));
  }
}

function matrixSvg(entry, { st, ckaModel, picked, pa, pb }, on) {
  const values = unpack(entry.values);
  const na = entry.rows.length;
  const nb = entry.cols.length;
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
      const tip = (e) => on.showTip([`CKA ${Number.isFinite(v) ? v.toFixed(4) : "n/a"}`, "1 = same representation",
        [`${st.reference}`, r], [`${ckaModel}`, c]], e);
      rect.addEventListener("mousemove", tip);
      rect.addEventListener("mouseleave", on.hideTip);
      const pick = () => on.pick(r, c, ckaModel);
      rect.addEventListener("click", pick);
      rect.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
      g.append(rect);
    });
  });
  return g;
}

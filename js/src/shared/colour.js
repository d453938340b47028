// A perceptually ordered colour scale (viridis stops) and its legend.
import { html } from "./dom.js";

const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e",
  "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
export const MISSING = "#c8c8c8";

function hexToRgb(hex) {
  const n = parseInt(hex.slice(1), 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

export function viridis(t) {
  if (!Number.isFinite(t)) return MISSING;
  const x = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const a = hexToRgb(VIRIDIS[i]);
  const b = hexToRgb(VIRIDIS[i + 1]);
  const f = x - i;
  const c = a.map((v, k) => Math.round(v + (b[k] - v) * f));
  return `rgb(${c[0]}, ${c[1]}, ${c[2]})`;
}

export function numericExtent(values) {
  const finite = values.filter((v) => typeof v === "number" && Number.isFinite(v));
  if (!finite.length) return null;
  return [Math.min(...finite), Math.max(...finite)];
}

export function colourFor(value, extent) {
  if (!extent || typeof value !== "number" || !Number.isFinite(value)) return MISSING;
  const [lo, hi] = extent;
  return viridis(hi > lo ? (value - lo) / (hi - lo) : 0.5);
}

export function legend(metric, extent, format) {
  const stops = VIRIDIS.map((c, i) => `${c} ${(100 * i) / (VIRIDIS.length - 1)}%`).join(", ");
  const box = html("div", { class: "cnc-legend", role: "img",
    "aria-label": extent ? `${metric}: ${format(extent[0])} to ${format(extent[1])}` : `${metric}: no values` });
  box.append(html("span", { class: "cnc-legend-title", text: metric }));
  if (extent) {
    box.append(html("span", { text: format(extent[0]) }));
    const bar = html("span", { class: "cnc-legend-bar" });
    bar.style.background = `linear-gradient(to right, ${stops})`;
    box.append(bar, html("span", { text: format(extent[1]) }));
  }
  const swatch = html("span", { class: "cnc-legend-swatch" });
  swatch.style.background = MISSING;
  box.append(swatch, html("span", { text: "n/a" }));
  return box;
}

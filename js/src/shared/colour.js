// Colour scales that tell the truth about size (viridis: perceptually ordered and
// readable with the common colour-vision deficiencies), and their legend.
//
// API:
//   const scale = colourScale(values, { domain, metric, info });
//     values   the numbers being coloured (null / NaN / non-numbers are "missing")
//     domain   "data" (default: the data's min..max), "unit" (0..1), "zero" (0..max),
//              or [low, high] (a fixed range); see domainOptions()
//   scale(value)          a CSS colour; MISSING (a neutral grey) for a missing value
//   scale.domain          [low, high] used for colouring, or null when nothing is finite
//   scale.dataRange       [min, max] of the finite values, or null
//   scale.smallSpread     true when max - min < 1% of the values' magnitude
//   scale.note            a sentence for the legend when smallSpread ("" otherwise)
//   scale.missing         how many values are missing
//   scaleLegend(metric, scale, format) -> element: title, low end, gradient, high end,
//       the small-spread note (class "cnc-legend-note") and the missing swatch;
//       format is (value) => string (e.g. v => formatMetric(v, metric, info))
//   domainOptions(values, metric, info) -> [{value, label}] for a <select>: the data range,
//       0..1 when every value is within it (fractions, accuracies, CKA), 0..max when all
//       are non-negative, and the range a Compress and Compare file declares
//   domainControl(options, current, onChange) -> a labelled <select class="cnc-domain">
//   defaultDomain(metric, info) -> "data"
//   viridis(t), numericExtent(values), colourFor(v, extent): the scale's parts, for callers
//   that colour a fixed 0..1 range (the CKA matrix) or need an extent.
import { html } from "./dom.js";

const VIRIDIS = ["#440154", "#482878", "#3e4989", "#31688e", "#26828e",
  "#1f9e89", "#35b779", "#6ece58", "#b5de2b", "#fde725"];
export const MISSING = "#b4b4b4";
const SMALL_SPREAD = 0.01;

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

const isNumber = (v) => typeof v === "number" && Number.isFinite(v);

export function numericExtent(values) {
  const finite = values.filter(isNumber);
  if (!finite.length) return null;
  return [Math.min(...finite), Math.max(...finite)];
}

export function colourFor(value, extent) {
  if (!extent || !isNumber(value)) return MISSING;
  const [lo, hi] = extent;
  return viridis(hi > lo ? (value - lo) / (hi - lo) : 0.5);
}

export function defaultDomain() {
  return "data";
}

function resolveDomain(domain, dataRange, info) {
  if (Array.isArray(domain) && domain.length === 2 && domain.every(isNumber)) return domain;
  if (!dataRange) return null;
  if (domain === "unit") return [0, 1];
  if (domain === "zero") return [Math.min(0, dataRange[0]), Math.max(0, dataRange[1])];
  if (domain === "declared" && info) {
    return [isNumber(info.min) ? info.min : dataRange[0], isNumber(info.max) ? info.max : dataRange[1]];
  }
  return dataRange;
}

export function colourScale(values, { domain = "data", info = null } = {}) {
  const dataRange = numericExtent(values);
  const used = resolveDomain(domain, dataRange, info);
  const scale = (value) => colourFor(value, used);
  scale.domain = used;
  scale.dataRange = dataRange;
  scale.missing = values.filter((v) => !isNumber(v)).length;
  const spread = dataRange ? dataRange[1] - dataRange[0] : 0;
  const magnitude = dataRange ? Math.max(Math.abs(dataRange[0]), Math.abs(dataRange[1])) : 0;
  scale.smallSpread = Boolean(dataRange) && spread > 0 && spread < SMALL_SPREAD * magnitude;
  scale.note = "";
  if (scale.smallSpread) {
    const pct = (100 * spread) / magnitude;
    const usedSpan = used ? used[1] - used[0] : 0;
    scale.note = usedSpan > spread * 1.0001
      ? `values differ by only ${pct.toPrecision(2)}%`
      : `values differ by only ${pct.toPrecision(2)}%: the colours exaggerate it`;
  } else if (dataRange && spread === 0 && values.filter(isNumber).length > 1) {
    scale.note = "all values equal";
  }
  return scale;
}

export function domainOptions(values, metric, info = null) {
  const range = numericExtent(values);
  const options = [{ value: "data", label: "data range" }];
  if (!range) return options;
  if (range[0] >= 0 && range[1] <= 1) options.push({ value: "unit", label: "0 to 1" });
  else if (range[0] >= 0) options.push({ value: "zero", label: "0 to max" });
  if (info && (isNumber(info.min) || isNumber(info.max))) {
    options.push({ value: "declared", label: "the file's range" });
  }
  return options;
}

export function domainControl(options, current, onChange) {
  const key = Array.isArray(current) ? JSON.stringify(current) : current;
  const select = html("select", { class: "cnc-domain", "aria-label": "Colour scale range" },
    options.map((o) => html("option", { value: o.value, text: o.label, selected: o.value === key })));
  if (Array.isArray(current)) {
    select.append(html("option", { value: key, text: `${current[0]} to ${current[1]}`, selected: true }));
  }
  select.addEventListener("change", () => {
    const v = select.value;
    onChange(v.startsWith("[") ? JSON.parse(v) : v);
  });
  return select;
}

function gradient() {
  return VIRIDIS.map((c, i) => `${c} ${(100 * i) / (VIRIDIS.length - 1)}%`).join(", ");
}

export function scaleLegend(metric, scale, format) {
  const used = scale.domain;
  const label = used
    ? `${metric}: colour from ${format(used[0])} to ${format(used[1])}` +
      (scale.dataRange ? `; values ${format(scale.dataRange[0])} to ${format(scale.dataRange[1])}` : "") +
      (scale.note ? `; ${scale.note}` : "")
    : `${metric}: no values`;
  const box = html("div", { class: "cnc-legend", role: "img", "aria-label": label });
  box.append(html("span", { class: "cnc-legend-title", text: metric }));
  if (used) {
    box.append(html("span", { class: "cnc-legend-low", text: format(used[0]) }));
    const bar = html("span", { class: "cnc-legend-bar" });
    bar.style.background = `linear-gradient(to right, ${gradient()})`;
    if (scale.dataRange && used[1] > used[0]) {
      // Where the data lies on the bar: a bracket, so a fixed domain shows how little it spans.
      const lo = (scale.dataRange[0] - used[0]) / (used[1] - used[0]);
      const hi = (scale.dataRange[1] - used[0]) / (used[1] - used[0]);
      const span = html("span", { class: "cnc-legend-span", title: `values ${format(scale.dataRange[0])} to ${format(scale.dataRange[1])}` });
      span.style.left = `${Math.max(0, Math.min(100, lo * 100))}%`;
      span.style.width = `${Math.max(1, Math.min(100, (hi - lo) * 100))}%`;
      bar.append(span);
    }
    box.append(bar, html("span", { class: "cnc-legend-high", text: format(used[1]) }));
  }
  if (scale.note) box.append(html("span", { class: "cnc-legend-note", text: scale.note }));
  const swatch = html("span", { class: "cnc-legend-swatch cnc-missing" });
  box.append(swatch, html("span", { text: "n/a" }));
  return box;
}

// Units of the metrics the registry reports, and numbers formatted with them.
// (Small on purpose: the shared formatting helpers replace this when they land.)
import { formatValue } from "./dom.js";

export function unitOf(metric, values = []) {
  const name = String(metric).toLowerCase();
  if (/bytes|model size|memory/.test(name)) return "bytes";
  if (/latency|_ms$|\bms\b/.test(name)) return "ms";
  if (/accuracy|sparsity|agreement|jaccard|overlap|^conf/.test(name)) {
    const finite = values.filter(Number.isFinite);
    if (finite.every((v) => v >= 0 && v <= 1)) return "fraction";
  }
  if (/params|macs|flops/.test(name)) return "count";
  return "";
}

const UNIT_WORDS = { bytes: "bytes", ms: "ms", fraction: "%", count: "count" };

export function axisTitle(metric, unit, log) {
  const bits = [UNIT_WORDS[unit], log ? "log scale" : null].filter(Boolean);
  return bits.length ? `${metric} (${bits.join(", ")})` : metric;
}

function trim(text) {
  return text.includes(".") ? text.replace(/\.?0+$/, "") : text;
}

export function formatMetric(value, unit, digits = 3) {
  if (value === null || value === undefined || !Number.isFinite(value)) return "n/a";
  if (unit === "bytes") {
    const steps = [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]];
    for (const [suffix, size] of steps) {
      if (Math.abs(value) >= size) return `${trim((value / size).toPrecision(digits))} ${suffix}`;
    }
    return `${Math.round(value)} B`;
  }
  if (unit === "ms") {
    if (Math.abs(value) >= 1000) return `${trim((value / 1000).toPrecision(digits))} s`;
    if (Math.abs(value) < 1 && value !== 0) return `${trim((value * 1000).toPrecision(digits))} \u00b5s`;
    return `${trim(value.toPrecision(digits))} ms`;
  }
  if (unit === "fraction") return `${trim((100 * value).toFixed(Math.max(0, digits - 1)))}%`;
  if (unit === "count") {
    const steps = [["G", 1e9], ["M", 1e6], ["k", 1e3]];
    for (const [suffix, size] of steps) {
      if (Math.abs(value) >= size) return `${trim((value / size).toPrecision(digits))}${suffix}`;
    }
    return String(Math.round(value));
  }
  return formatValue(value);
}

// Tick values for a linear axis: 1, 2 or 5 times a power of ten, about `count` of them.
export function linearTicks(lo, hi, count = 6) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const power = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw) || raw;
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : +v.toPrecision(12));
  }
  return ticks;
}

// Ticks for a log axis: powers of ten, with 2 and 5 between them over short ranges.
export function logTicks(lo, hi) {
  const a = Math.floor(Math.log10(lo));
  const b = Math.ceil(Math.log10(hi));
  const within = (mults) => {
    const ticks = [];
    for (let e = a; e <= b; e += 1) {
      for (const m of mults) {
        const v = m * 10 ** e;
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) ticks.push(v);
      }
    }
    return ticks;
  };
  for (const mults of [[1], [1, 2, 5], [1, 1.5, 2, 3, 4, 5, 6, 8]]) {
    const ticks = within(mults);
    if (ticks.length >= 3) return ticks;
  }
  return linearTicks(lo, hi, 4);
}

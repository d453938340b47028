// Numbers as a person writes them: bytes in kB / MB / GB, milliseconds, fractions as
// percentages, counts with k / M / G. The Python twin is cnc_widgets/formatting.py;
// the two follow the same rules (tests check both).
//
// API:
//   formatMetric(value, metric, info)  the value of `metric`, with its unit; "n/a" when missing.
//       info (optional) is what the widget syncs per metric ({kind, format, unit, description}):
//       a Compress and Compare file's own d3 `format` (".2%", ".2~s", "00") and `unit` ("ms")
//       win over the rules below.
//   metricKind(metric, info) -> "bytes" | "ms" | "fraction" | "count" | "number"
//   formatBytes(v), formatMs(v), formatPercent(v), formatCount(v), formatNumber(v)
//   d3Format(spec) -> (v) => string   the subset of d3-format that C&C files use
//   metricTitle(metric, info) -> axis/legend title with the unit, e.g. "latency_ms (ms)"
//
// Rules: bytes are decimal (1 kB = 1000 B), three significant digits ("15.5 MB");
// fractions print as percentages with up to two decimals ("94.37%"); milliseconds keep
// three significant digits below 100 ms and thousands separators above ("2,041 ms").

const FRACTION = /(^|_)(accuracy|sparsity|agreement|jaccard|overlap|cka|fraction|rate)$|^zero_/i;
const COUNT = /(^|_)(params|macs|count|instances)$|^n_/i;

export function metricKind(metric, info = {}) {
  if (info && info.kind) return info.kind;
  const unit = info && info.unit ? String(info.unit).toLowerCase() : "";
  if (unit === "ms") return "ms";
  if (unit === "b" || unit === "bytes") return "bytes";
  if (info && String(info.format || "").endsWith("%")) return "fraction";
  const name = String(metric || "");
  if (/(^|_)bytes$/i.test(name)) return "bytes";
  if (/(^|_)ms$/i.test(name)) return "ms";
  if (FRACTION.test(name)) return "fraction";
  if (COUNT.test(name)) return "count";
  return "number";
}

const missing = (v) => v === null || v === undefined || (typeof v === "number" && Number.isNaN(v));

function trim(text) {
  return text.includes(".") && !/e/i.test(text) ? text.replace(/\.?0+$/, "") : text;
}

function group(intText) {
  return intText.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

export function formatNumber(value) {
  if (missing(value)) return "n/a";
  if (typeof value !== "number") return String(value);
  if (!Number.isFinite(value)) return value > 0 ? "\u221e" : "\u2212\u221e";
  const abs = Math.abs(value);
  if (Number.isInteger(value)) return abs >= 1e4 ? formatCount(value) : String(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(3);
  return trim(value.toPrecision(4));
}

export function formatBytes(value) {
  if (missing(value)) return "n/a";
  const abs = Math.abs(value);
  const units = [["GB", 1e9], ["MB", 1e6], ["kB", 1e3]];
  for (const [unit, size] of units) {
    if (abs >= size) return `${trim((value / size).toPrecision(3))} ${unit}`;
  }
  return `${Math.round(value)} B`;
}

export function formatMs(value) {
  if (missing(value)) return "n/a";
  const abs = Math.abs(value);
  if (abs >= 100) return `${group(String(Math.round(value)))} ms`;
  if (abs === 0) return "0 ms";
  return `${trim(value.toPrecision(3))} ms`;
}

export function formatPercent(value, decimals = 2) {
  if (missing(value)) return "n/a";
  return `${trim((value * 100).toFixed(decimals))}%`;
}

export function formatCount(value) {
  if (missing(value)) return "n/a";
  const abs = Math.abs(value);
  const units = [["T", 1e12], ["G", 1e9], ["M", 1e6]];
  for (const [suffix, size] of units) {
    if (abs >= size) return `${trim((value / size).toPrecision(3))}${suffix}`;
  }
  if (Number.isInteger(value)) return (value < 0 ? "-" : "") + group(String(Math.abs(value)));
  return formatNumber(value);
}

const SI = [[1e12, "T"], [1e9, "G"], [1e6, "M"], [1e3, "k"], [1, ""], [1e-3, "m"], [1e-6, "\u00b5"]];

export function d3Format(spec) {
  // d3-format's grammar without fill, align, sign and symbol: [0][width][,][.precision][~][type]
  const m = /^(0)?(\d+)?(,)?(?:\.(\d+))?(~)?([%sfdeg])?$/.exec(String(spec || ""));
  if (!m) return formatNumber;
  const [, zero, width, comma, precision, tilde, type] = m;
  const p = precision === undefined ? undefined : Number(precision);
  return (value) => {
    if (missing(value)) return "n/a";
    if (typeof value !== "number") return String(value);
    let text;
    if (type === "%") {
      text = (value * 100).toFixed(p ?? 6);
      text = (tilde ? trim(text) : text) + "%";
    } else if (type === "s") {
      const abs = Math.abs(value);
      const [size, prefix] = SI.find(([s]) => abs >= s) || SI[SI.length - 1];
      text = (value / size).toPrecision(Math.max(1, p ?? 6));
      text = (tilde ? trim(text) : text) + prefix;
    } else if (type === "f") {
      text = value.toFixed(p ?? 6);
      if (tilde) text = trim(text);
    } else if (type === "e") {
      text = value.toExponential(p ?? 6);
    } else if (type === "d") {
      text = String(Math.round(value));
    } else if (p !== undefined) {
      text = value.toPrecision(Math.max(1, p));
      if (tilde || !type) text = trim(text);
    } else {
      text = String(value);
    }
    if (comma) {
      const parts = /^(-?)(\d+)(.*)$/.exec(text);
      if (parts) text = parts[1] + group(parts[2]) + parts[3];
    }
    if (zero && width) {
      const sign = text.startsWith("-") ? "-" : "";
      const body = sign ? text.slice(1) : text;
      text = sign + body.padStart(Number(width) - sign.length, "0");
    }
    return text;
  };
}

export function formatMetric(value, metric, info = {}) {
  if (missing(value)) return "n/a";
  if (typeof value !== "number") return String(value);
  if (info && info.format) {
    const text = d3Format(info.format)(value);
    return info.unit ? `${text} ${info.unit}` : text;
  }
  switch (metricKind(metric, info)) {
    case "bytes": return formatBytes(value);
    case "ms": return formatMs(value);
    case "fraction": return formatPercent(value);
    case "count": return formatCount(value);
    default: {
      const text = formatNumber(value);
      return info && info.unit ? `${text} ${info.unit}` : text;
    }
  }
}

export function metricTitle(metric, info = {}) {
  if (info && info.unit) return `${metric} (${info.unit})`;
  const kind = metricKind(metric, info);
  if (kind === "fraction" && !(info && info.format)) return `${metric} (%)`;
  return String(metric);
}

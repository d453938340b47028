// DOM helpers. Text from models and datasets is untrusted: it only ever
// reaches the page through textContent or setAttribute, never innerHTML.
const SVG_NS = "http://www.w3.org/2000/svg";

export function html(tag, attrs = {}, children = []) {
  return build(document.createElement(tag), attrs, children);
}

export function svg(tag, attrs = {}, children = []) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

function build(node, attrs, children) {
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") node.textContent = String(value);
    else if (key === "class") node.setAttribute("class", value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, String(value));
  }
  for (const child of [].concat(children)) {
    if (child === null || child === undefined) continue;
    node.append(typeof child === "string" ? document.createTextNode(child) : child);
  }
  return node;
}

export function formatValue(value) {
  if (typeof value !== "number") return value === null || value === undefined ? "n/a" : String(value);
  if (!Number.isFinite(value)) return String(value);
  if (Number.isInteger(value) && Math.abs(value) >= 1e4) return formatBig(value);
  if (Number.isInteger(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs < 1e-3 || abs >= 1e6)) return value.toExponential(3);
  return value.toPrecision(4).replace(/\.?0+$/, "");
}

function formatBig(value) {
  const units = [["G", 1e9], ["M", 1e6], ["k", 1e3]];
  for (const [suffix, size] of units) {
    if (Math.abs(value) >= size) return (value / size).toPrecision(4).replace(/\.?0+$/, "") + suffix;
  }
  return String(value);
}

export function formatParams(params) {
  if (!params || typeof params !== "object") return "";
  return Object.entries(params)
    .map(([k, v]) => `${k}=${typeof v === "object" ? JSON.stringify(v) : formatValue(v)}`)
    .join(", ");
}

// `text` cut to `max` characters, an ellipsis marking the cut.
export function truncate(text, max) {
  const s = String(text);
  return s.length > max ? s.slice(0, max - 1) + "\u2026" : s;
}

// Mark wiring shared by the views: a focusable model mark selects on click and on
// Enter/Space (shift, ctrl or cmd adds), and shows the tooltip on hover and focus.
//   wireMark(mark, { onSelect: (additive) => void, tip: (event) => void, hideTip })
export function wireMark(mark, { onSelect, tip, hideTip }) {
  const additive = (event) => event.shiftKey || event.metaKey || event.ctrlKey;
  if (onSelect) {
    mark.addEventListener("click", (event) => { event.stopPropagation(); onSelect(additive(event)); });
    mark.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") { event.preventDefault(); onSelect(additive(event)); }
    });
  }
  if (tip) {
    for (const name of ["mouseenter", "mousemove", "focus"]) mark.addEventListener(name, tip);
    for (const name of ["mouseleave", "blur"]) mark.addEventListener(name, hideTip);
  }
  return mark;
}

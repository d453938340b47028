// The scatter's geometry, pure: the plot's size and margins, scales and padded extents,
// models at one place spread on a ring, the frontier's step line, and where names go.
export const HEIGHT = 420;
export const M = { top: 16, right: 24, bottom: 48, left: 78 };

// Points closer than this (pixels) are one place on the plot: they spread on a small ring
// around it and a badge says how many models are there.
const SAME_PLACE = 2;
const MAX_SPREAD = 26;

export function scale(lo, hi, a, b, log) {
  if (log) {
    const l0 = Math.log10(lo);
    const l1 = Math.log10(hi);
    return (v) => a + ((Math.log10(v) - l0) / (l1 - l0 || 1)) * (b - a);
  }
  return (v) => a + ((v - lo) / (hi - lo || 1)) * (b - a);
}

// The extent with a margin (6%, or a factor on a log scale; a single value gets a range).
export function padded(extent, log) {
  let [lo, hi] = extent;
  if (log) {
    if (hi === lo) return [lo / 2, hi * 2];
    const f = (hi / lo) ** 0.06;
    return [lo / f, hi * f];
  }
  if (hi === lo) {
    const d = Math.abs(lo) * 0.05 || 1;
    return [lo - d, hi + d];
  }
  const d = (hi - lo) * 0.06;
  return [lo - d, hi + d];
}

// Groups of indices whose points land on the same pixel place, in `order`.
export function samePlace(indices, px, py, tolerance = SAME_PLACE) {
  const groups = new Map();
  for (const i of indices) {
    const key = `${Math.round(px(i) / tolerance)},${Math.round(py(i) / tolerance)}`;
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(i);
  }
  return [...groups.values()];
}

// The ring of a group at one place: its radius (wide enough that neighbours do not cover
// each other's centres, up to a limit) and each member's offset from the place.
export function ring(group, radius) {
  const widest = Math.max(...group.map(radius));
  const spread = Math.min(MAX_SPREAD, (widest + 1.5) / Math.sin(Math.PI / Math.max(2, group.length)));
  const offsets = group.map((_, k) => {
    const angle = (2 * Math.PI * k) / group.length - Math.PI / 2;
    return [spread * Math.cos(angle), spread * Math.sin(angle)];
  });
  return { spread, offsets };
}

// The Pareto frontier as a step line through the corners (worse x, worse y).
export function frontierPath(front, { sx, sy, xs, ys }, xBetter, yBetter) {
  const worse = (a, b, better) => (better === "lower" ? Math.max(a, b) : Math.min(a, b));
  let d = `M${sx(xs[front[0]])},${sy(ys[front[0]])}`;
  for (let k = 1; k < front.length; k += 1) {
    const a = front[k - 1];
    const b = front[k];
    const cx = worse(xs[a], xs[b], xBetter);
    const cy = worse(ys[a], ys[b], yBetter);
    d += ` L${sx(cx)},${sy(cy)} L${sx(xs[b])},${sy(ys[b])}`;
  }
  return d;
}

// Names beside their points, in the order given, skipping any whose box would overlap a box
// already taken (`taken`: [x0, y0, x1, y1] of badges); at most 40. Returns {i, x, y, anchor}.
export function placeLabels(wanted, { px, py, textOf, width, taken }) {
  const boxes = [...taken];
  const out = [];
  for (const i of wanted.slice(0, 40)) {
    const w = textOf(i).length * 6.2;
    let x = px(i) + 9;
    const y = py(i) - 8;
    let anchor = "start";
    if (x + w > width - 4) { x -= 18; anchor = "end"; }
    const box = anchor === "start" ? [x, y - 11, x + w, y + 2] : [x - w, y - 11, x, y + 2];
    if (boxes.some((b) => box[0] < b[2] && box[2] > b[0] && box[1] < b[3] && box[3] > b[1])) continue;
    boxes.push(box);
    out.push({ i, x, y, anchor });
  }
  return out;
}

// Whether a metric starts on a log scale: sizes, latencies and counts, not sparsity.
export function defaultLog(metric) {
  const name = String(metric).toLowerCase();
  return /bytes|size|latency|macs|params|memory/.test(name) && !name.includes("sparsity");
}

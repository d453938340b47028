// The Pareto frontier of two metrics: the same rule as cnc_widgets.metrics.pareto.
// Returns indices of the points on it, by increasing x.
export function paretoFront(xs, ys, xBetter = "lower", yBetter = "higher") {
  const n = xs.length;
  const gx = (i) => (xBetter === "lower" ? xs[i] : -xs[i]);
  const gy = (i) => (yBetter === "higher" ? -ys[i] : ys[i]);
  const order = [];
  for (let i = 0; i < n; i += 1) if (Number.isFinite(xs[i]) && Number.isFinite(ys[i])) order.push(i);
  order.sort((i, j) => gx(i) - gx(j) || gy(i) - gy(j));
  const front = [];
  let best = Infinity;
  let i = 0;
  while (i < order.length) {
    let j = i;
    while (j < order.length && gx(order[j]) === gx(order[i])) j += 1;
    const runBest = gy(order[i]);
    if (runBest < best) {
      for (let k = i; k < j; k += 1) if (gy(order[k]) === runBest) front.push(order[k]);
      best = runBest;
    }
    i = j;
  }
  return front.sort((p, q) => xs[p] - xs[q] || p - q);
}

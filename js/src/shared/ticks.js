// Axis ticks: 1-2-5 steps on linear axes, powers of ten (and steps between) on log axes.

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

// paretoFront against a brute-force check of dominance, with ties and missing values.
import { test } from "node:test";
import assert from "node:assert/strict";
import { paretoFront } from "../src/shared/pareto.js";

function bruteFront(xs, ys, xBetter, yBetter) {
  const gx = (i) => (xBetter === "lower" ? xs[i] : -xs[i]);
  const gy = (i) => (yBetter === "higher" ? -ys[i] : ys[i]);
  const ok = xs.map((_, i) => i).filter((i) => Number.isFinite(xs[i]) && Number.isFinite(ys[i]));
  return ok.filter((i) => !ok.some((j) => gx(j) <= gx(i) && gy(j) <= gy(i) && (gx(j) < gx(i) || gy(j) < gy(i))))
    .sort((a, b) => a - b);
}

// A small deterministic generator (no Math.random: failures must reproduce).
function lcg(seed) {
  let s = seed;
  return () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
}

test("the frontier is exactly the undominated points, for every direction", () => {
  const rand = lcg(7);
  for (const xb of ["lower", "higher"]) {
    for (const yb of ["lower", "higher"]) {
      for (let trial = 0; trial < 200; trial += 1) {
        const n = 1 + Math.floor(rand() * 30);
        const xs = Array.from({ length: n }, () => Math.floor(rand() * 6));
        const ys = Array.from({ length: n }, () => Math.floor(rand() * 6));
        if (trial % 4 === 0) xs[Math.floor(rand() * n)] = NaN;
        const got = paretoFront(xs, ys, xb, yb);
        assert.deepEqual([...got].sort((a, b) => a - b), bruteFront(xs, ys, xb, yb));
        for (let k = 1; k < got.length; k += 1) assert.ok(xs[got[k - 1]] <= xs[got[k]], "ordered by x");
      }
    }
  }
});

test("the same example as the Python test", () => {
  assert.deepEqual(paretoFront([1, 2, 3, 2], [0.5, 0.9, 0.95, 0.7]), [0, 1, 2]);
  assert.deepEqual(paretoFront([], []), []);
  assert.deepEqual(paretoFront([1, 1], [0.9, 0.9]), [0, 1], "duplicates are both on it");
});

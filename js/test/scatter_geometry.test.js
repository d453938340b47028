// The scatter's pure geometry: scales, padding, models at one place, the ring they spread
// on, the frontier's step line and where names go without overlapping.
import { test } from "node:test";
import assert from "node:assert/strict";
import { scale, padded, samePlace, ring, frontierPath, placeLabels, defaultLog } from "../src/scatter/geometry.js";

const close = (a, b) => Math.abs(a - b) < 1e-9;

test("scales map the extent's ends onto the range, linear and log", () => {
  const lin = scale(2, 6, 100, 300, false);
  assert.ok(close(lin(2), 100) && close(lin(6), 300) && close(lin(4), 200));
  const log = scale(1, 1000, 0, 300, true);
  assert.ok(close(log(1), 0) && close(log(10), 100) && close(log(1000), 300));
  assert.ok(close(scale(5, 5, 0, 10, false)(5), 0), "a single value does not divide by zero");
});

test("padding widens the extent, and a single value gets a range", () => {
  assert.deepEqual(padded([0, 10], false), [-0.6, 10.6]);
  assert.deepEqual(padded([4, 4], false), [3.8, 4.2]);
  assert.deepEqual(padded([0, 0], false), [-1, 1]);
  assert.deepEqual(padded([3, 3], true), [1.5, 6]);
  const [lo, hi] = padded([1, 100], true);
  assert.ok(close(lo * hi, 100) && lo < 1 && hi > 100);
});

test("points on one pixel place form one group; the ring keeps their centres apart", () => {
  const px = [10, 10.4, 50, 10.2, 90];
  const py = [20, 20.3, 20, 19.9, 20];
  const groups = samePlace([0, 1, 2, 3, 4], (i) => px[i], (i) => py[i]);
  assert.deepEqual(groups, [[0, 1, 3], [2], [4]]);
  const { spread, offsets } = ring([0, 1, 3], () => 6);
  assert.equal(offsets.length, 3);
  for (const [x, y] of offsets) assert.ok(close(Math.hypot(x, y), spread));
  const gap = Math.hypot(offsets[0][0] - offsets[1][0], offsets[0][1] - offsets[1][1]);
  assert.ok(gap >= 2 * 6, `neighbours ${gap} apart`);
  assert.ok(close(offsets[0][0], 0) && close(offsets[0][1], -spread), "the first sits on top");
  assert.equal(ring(Array.from({ length: 40 }, (_, k) => k), () => 14).spread, 26, "at most MAX_SPREAD");
});

test("the frontier steps through the worse corner between neighbours", () => {
  const id = (v) => v;
  const xs = [1, 2, 4];
  const ys = [1, 3, 5];
  // lower x and higher y are better: from (1,1) to (2,3) via (2,1).
  assert.equal(frontierPath([0, 1, 2], { sx: id, sy: id, xs, ys }, "lower", "higher"), "M1,1 L2,1 L2,3 L4,3 L4,5");
  assert.equal(frontierPath([0, 1], { sx: id, sy: id, xs, ys }, "higher", "lower"), "M1,1 L1,3 L2,3");
});

test("labels skip boxes already taken and flip left at the right edge", () => {
  const px = [10, 12, 390, 10];
  const py = [50, 52, 50, 200];
  const textOf = (i) => ["alpha", "beta", "gamma", "delta"][i];
  const placed = placeLabels([0, 1, 2, 3], { px: (i) => px[i], py: (i) => py[i], textOf, width: 400, taken: [[0, 180, 100, 200]] });
  assert.deepEqual(placed.map((p) => p.i), [0, 2]);
  assert.deepEqual(placed[0], { i: 0, x: 19, y: 42, anchor: "start" });
  assert.equal(placed[1].anchor, "end");
  assert.equal(placed[1].x, 381);
  assert.equal(placeLabels(Array.from({ length: 60 }, (_, k) => k),
    { px: () => 0, py: (i) => 20 * i, textOf: () => "m", width: 400, taken: [] }).length, 40);
});

test("sizes and latencies start on a log scale, sparsity does not", () => {
  assert.equal(defaultLog("size_bytes"), true);
  assert.equal(defaultLog("latency_ms"), true);
  assert.equal(defaultLog("accuracy"), false);
  assert.equal(defaultLog("params_sparsity"), false);
});

// Axis ticks: 1-2-5 steps inside the range, powers of ten on log axes.
import { test } from "node:test";
import assert from "node:assert/strict";
import { linearTicks, logTicks } from "../src/shared/ticks.js";

test("linear ticks are 1, 2 or 5 times a power of ten, inside the range", () => {
  assert.deepEqual(linearTicks(0, 1, 5), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  assert.deepEqual(linearTicks(0.9437, 0.9472, 4), [0.944, 0.945, 0.946, 0.947]);
  assert.deepEqual(linearTicks(-3, 7, 5), [-2, 0, 2, 4, 6]);
  for (const [lo, hi] of [[0.001, 0.004], [3, 3000], [-1e-6, 2e-6], [12345, 12399]]) {
    const ticks = linearTicks(lo, hi, 6);
    assert.ok(ticks.length >= 2 && ticks.length <= 12, `${lo}..${hi}: ${ticks}`);
    const step = ticks[1] - ticks[0];
    const mantissa = step / 10 ** Math.floor(Math.log10(step));
    assert.ok([1, 2, 5].some((m) => Math.abs(mantissa - m) < 1e-6), `step ${step}`);
    assert.ok(ticks.every((t) => t >= lo - 1e-12 && t <= hi + 1e-12));
    assert.equal(new Set(ticks).size, ticks.length);
  }
  assert.deepEqual(linearTicks(5, 5), [5]);
});

test("log ticks: powers of ten over wide ranges, 1-2-5 over short ones", () => {
  assert.deepEqual(logTicks(1, 1e4), [1, 10, 100, 1000, 10000]);
  assert.deepEqual(logTicks(15, 120), [20, 50, 100]);
  const short = logTicks(110, 190);
  assert.ok(short.length >= 3 && short.every((t) => t >= 110 && t <= 190), String(short));
});

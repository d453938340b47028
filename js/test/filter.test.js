// isOut: the rule of Python's ModelRegistry.filtered_out().
import { test } from "node:test";
import assert from "node:assert/strict";
import { isOut } from "../src/shared/filter.js";

test("inside, outside, open ends and the edges", () => {
  const filters = { accuracy: [0.9, 1], size_bytes: [null, 1000] };
  assert.equal(isOut(filters, { accuracy: 0.95, size_bytes: 500 }), false);
  assert.equal(isOut(filters, { accuracy: 0.9, size_bytes: 1000 }), false, "ends are inside");
  assert.equal(isOut(filters, { accuracy: 0.89, size_bytes: 500 }), true);
  assert.equal(isOut(filters, { accuracy: 0.95, size_bytes: 1001 }), true);
  assert.equal(isOut({ size_bytes: [10, undefined] }, { size_bytes: 1e12 }), false);
});

test("a missing or non-finite filtered metric is out; no filters keep everything", () => {
  const filters = { accuracy: [0, 1] };
  assert.equal(isOut(filters, {}), true);
  assert.equal(isOut(filters, { accuracy: null }), true);
  assert.equal(isOut(filters, { accuracy: NaN }), true);
  assert.equal(isOut(filters, { accuracy: "0.5" }), true);
  assert.equal(isOut({}, {}), false);
  assert.equal(isOut(null, null), false);
});

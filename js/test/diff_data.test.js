// The classification diff's pure helpers: filtering and sorting the instances against a
// direct loop over every row, and the rows of the virtual table in view.
import { test } from "node:test";
import assert from "node:assert/strict";
import { filterOrder, sortValue, visibleRange, className } from "../src/diff/data.js";
import { ROW, BODY } from "../src/diff/css.js";

// 3 models (reference + 2), 6 instances, 3 classes.
const d = {
  n: 6, m: 3, names: ["ref", "b", "c"], classes: ["cat", "dog", "eel"],
  label: Int32Array.from([0, 1, 2, 0, 1, 2]),
  pred: Int32Array.from([0, 1, 2, 1, 1, 0, /* b */ 0, 2, 2, 0, 1, 1, /* c */ 1, 1, 2, 1, 0, 0]),
  conf: Float64Array.from(Array.from({ length: 18 }, (_, k) => ((k * 7) % 11) / 10)),
  kl: Float64Array.from([0.1, 0.5, 0.0, 0.3, 0.5, 0.2, /* c */ 0.9, 0.1, 0.2, 0.4, 0.8, 0.6]),
  mse: Float64Array.from(Array.from({ length: 12 }, (_, k) => k)),
};
const base = { focus: 0, classFilter: -1, changed: false, outcome: "all", cell: null, sortKey: null, sortDir: -1 };

function direct(state) {
  const f = state.focus + 1;
  const rows = [];
  for (let i = 0; i < d.n; i += 1) {
    const [pa, pb, y] = [d.pred[i], d.pred[f * d.n + i], d.label[i]];
    const ok = (state.classFilter < 0 || y === state.classFilter) && (!state.changed || pa !== pb)
      && (state.outcome !== "ref-right" || (pa === y && pb !== y))
      && (state.outcome !== "ref-wrong" || (pa !== y && pb === y))
      && (!state.cell || (pa === state.cell[0] && pb === state.cell[1]));
    if (ok) rows.push(i);
  }
  return rows;
}

test("each filter keeps exactly the rows a direct check keeps", () => {
  const cases = [
    {}, { classFilter: 1 }, { changed: true }, { outcome: "ref-right" }, { outcome: "ref-wrong" },
    { cell: [1, 0] }, { focus: 1, changed: true }, { focus: 1, outcome: "ref-wrong" }, { classFilter: 0, changed: true },
  ];
  for (const c of cases) {
    const state = { ...base, ...c };
    assert.deepEqual([...filterOrder(d, state)], direct(state), JSON.stringify(c));
  }
  assert.deepEqual([...filterOrder(d, { ...base, changed: true })], [1, 3, 5]);
});

test("sorting follows the column's values, ties by row, in either direction", () => {
  const kl2 = [...filterOrder(d, { ...base, sortKey: "kl2", sortDir: -1 })];
  assert.deepEqual(kl2, [0, 4, 5, 3, 2, 1]);
  const up = [...filterOrder(d, { ...base, sortKey: "kl1", sortDir: 1 })];
  assert.deepEqual(up, [2, 0, 5, 3, 1, 4]);
  const value = sortValue(d, "pred2");
  assert.deepEqual([0, 1, 2, 3, 4, 5].map(value), [1, 1, 2, 1, 0, 0]);
  assert.equal(sortValue(d, "mse2")(1), 7);
  assert.equal(sortValue(d, "conf1")(0), d.conf[6]);
});

test("the rows in view cover the visible height with overscan and stay in range", () => {
  assert.deepEqual(visibleRange(0, 1000), [0, Math.ceil(BODY / ROW) + 8]);
  const [a, b] = visibleRange(100 * ROW, 1000);
  assert.ok(a <= 99 && a >= 90 && b >= 100 + BODY / ROW, `${a} ${b}`);
  assert.deepEqual(visibleRange(0, 3), [0, 3]);
  assert.equal(className(d, 2), "eel");
  assert.equal(className(d, 7), "7");
});

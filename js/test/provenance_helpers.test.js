// The provenance graph's pure helpers: the arrow keys' nearest model, the camera that fits
// the forest, and which metrics the pickers offer.
import { test } from "node:test";
import assert from "node:assert/strict";
import { nearest } from "../src/provenance/keyboard.js";
import { fitCamera, PAD } from "../src/provenance/viewport.js";
import { metricNames } from "../src/provenance/encodings.js";

const placed = new Map([
  ["root", { x: 0, y: 0 }], ["a", { x: 250, y: 0 }], ["b", { x: 250, y: 46 }],
  ["c", { x: 500, y: 46 }], ["d", { x: 0, y: 92 }],
]);

test("an arrow moves to the nearest model in its direction, favouring the same row", () => {
  assert.equal(nearest(placed, "root", "ArrowRight"), "a");
  assert.equal(nearest(placed, "a", "ArrowDown"), "b");
  assert.equal(nearest(placed, "b", "ArrowRight"), "c");
  assert.equal(nearest(placed, "c", "ArrowLeft"), "b");
  assert.equal(nearest(placed, "root", "ArrowDown"), "d");
  assert.equal(nearest(placed, "root", "ArrowUp"), null);
  assert.equal(nearest(placed, "c", "ArrowRight"), null);
});

test("the fitted camera shows the whole extent within the zoom limits", () => {
  const cam = fitCamera({ w: 660, h: 200 }, 800, 400);
  assert.equal(cam.k, Math.min((800 - 2 * PAD) / 660, (400 - 2 * PAD) / 200));
  assert.ok(PAD + 660 * cam.k <= 800 - PAD + 1e-9);
  assert.equal(cam.x, PAD);
  assert.equal(cam.y, (400 - 200 * cam.k) / 2);
  assert.equal(fitCamera({ w: 10, h: 10 }, 800, 400).k, 1.5, "small forests are not blown up");
  assert.equal(fitCamera({ w: 100000, h: 46 }, 800, 400).k, 0.35, "huge forests stay readable");
  assert.equal(fitCamera({ w: 100, h: 5000 }, 800, 400).y, PAD);
});

test("the pickers offer the metrics some model has a finite number for", () => {
  const nodes = [{ metrics: { b: 1, a: NaN, s: "x" } }, { metrics: { a: 2, c: null } }, {}];
  assert.deepEqual(metricNames(nodes), ["a", "b"]);
});

// The layers view's pure helpers: the module tree, which nodes a first view opens, a node's
// weighted value, and the CKA matrix's shortened names.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  buildTree, initialOpen, visibleNodes, countLeaves, openParents, aggregate,
} from "../src/heatmap/tree.js";
import { commonPrefix, shortName } from "../src/heatmap/matrix.js";

const ROWS = ["conv1", "layer.0.fc", "layer.0.norm", "layer.1.fc", "layer.1.norm", "head"];

test("every dotted prefix is a node; rows sit at the nodes they name", () => {
  const tree = buildTree(ROWS);
  assert.deepEqual(tree.roots.map((n) => n.name), ["conv1", "layer", "head"]);
  assert.deepEqual([...tree.nodes.keys()].sort(),
    ["conv1", "head", "layer", "layer.0", "layer.0.fc", "layer.0.norm", "layer.1", "layer.1.fc", "layer.1.norm"]);
  const layer0 = tree.nodes.get("layer.0");
  assert.equal(layer0.row, -1);
  assert.equal(layer0.depth, 1);
  assert.equal(layer0.label, "0");
  assert.equal(tree.nodes.get("layer.1.norm").row, 4);
  assert.equal(countLeaves(tree.nodes.get("layer")), 4);
});

test("a first view opens whole levels while the rows stay few", () => {
  const tree = buildTree(ROWS);
  assert.deepEqual([...initialOpen(tree)].sort(), ["layer", "layer.0", "layer.1"]);
  // 3 roots + 2 blocks fit in 5; the blocks' 4 leaves do not: never half a level.
  assert.deepEqual([...initialOpen(tree, 5)], ["layer"]);
  assert.deepEqual([...initialOpen(tree, 4)], []);
  const shown = visibleNodes(tree, new Set(["layer", "layer.1"])).map((n) => n.name);
  assert.deepEqual(shown, ["conv1", "layer", "layer.0", "layer.1", "layer.1.fc", "layer.1.norm", "head"]);
});

test("openParents opens every ancestor and not the node itself", () => {
  const open = new Set();
  openParents(open, ["layer.1.fc", "head"]);
  assert.deepEqual([...open].sort(), ["layer", "layer.1"]);
});

test("a group's value is its rows' mean weighted by parameters, skipping missing ones", () => {
  const tree = buildTree(ROWS);
  const values = { cka: Float64Array.from([0.5, 0.2, NaN, 0.8, 1.0, 0.9]) };
  const st = { params: [10, 100, 4, 300, 4, 0], data: { b: { values, status: ["both", "both", "both", "both", "only_b", "both"] } } };
  const memo = new Map();
  const got = aggregate(st, tree.nodes.get("layer"), "b", "cka", memo);
  // layer.0.norm is NaN, layer.1.norm only in b: (0.2*100 + 0.8*300) / 400.
  assert.ok(Math.abs(got - (0.2 * 100 + 0.8 * 300) / 400) < 1e-12);
  assert.equal(memo.size > 0, true);
  assert.ok(Number.isNaN(aggregate(st, tree.nodes.get("head"), "b", "cka", memo)), "no parameters: no value");
  assert.ok(Number.isNaN(aggregate(st, tree.nodes.get("layer"), "b", "weight_rel_change", memo)));
});

test("matrix labels drop the prefix all names share, up to its last dot", () => {
  assert.equal(commonPrefix(["encoder.layer.0.out", "encoder.layer.1.out"]), "encoder.layer.");
  assert.equal(commonPrefix(["encoder.a"]), "");
  assert.equal(commonPrefix(["fc1", "fc2"]), "");
  assert.equal(shortName("encoder.layer.0.out", "encoder.layer."), "0.out");
  assert.equal(shortName("encoder.layer.", "encoder.layer."), "encoder.layer.");
  assert.equal(shortName("fc1", ""), "fc1");
});

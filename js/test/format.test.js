// Numbers with units, as cnc_widgets/formatting.py writes them.
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  formatMetric, formatBytes, formatMs, formatPercent, formatCount, formatNumber, d3Format,
  metricKind, metricTitle,
} from "../src/shared/format.js";
import { truncate } from "../src/shared/dom.js";

test("kinds from names, units and formats", () => {
  assert.equal(metricKind("size_bytes"), "bytes");
  assert.equal(metricKind("latency_ms"), "ms");
  assert.equal(metricKind("accuracy"), "fraction");
  assert.equal(metricKind("zero_both"), "fraction");
  assert.equal(metricKind("nonzero_params"), "count");
  assert.equal(metricKind("Model Size", { unit: "B" }), "bytes");
  assert.equal(metricKind("Top-1", { format: ".2%" }), "fraction");
  assert.equal(metricKind("loss"), "number");
  assert.equal(metricTitle("accuracy"), "accuracy (%)");
  assert.equal(metricTitle("latency", { unit: "ms" }), "latency (ms)");
});

test("bytes, milliseconds, percentages and counts", () => {
  assert.equal(formatBytes(15_500_000), "15.5 MB");
  assert.equal(formatBytes(999), "999 B");
  assert.equal(formatBytes(1000), "1 kB");
  assert.equal(formatMs(2041.4), "2,041 ms");
  assert.equal(formatMs(1.23456), "1.23 ms");
  assert.equal(formatMs(0), "0 ms");
  assert.equal(formatPercent(0.9437), "94.37%");
  assert.equal(formatPercent(0.5), "50%");
  assert.equal(formatCount(22_700_000), "22.7M");
  assert.equal(formatCount(12345), "12,345");
  assert.equal(formatNumber(0.000123), "1.230e-4");
  assert.equal(formatNumber(Infinity), "\u221e");
  assert.equal(formatMetric(null, "accuracy"), "n/a");
  assert.equal(formatMetric(0.25, "sparsity"), "25%");
  assert.equal(formatMetric(3, "loss", { unit: "nats" }), "3 nats");
});

test("the d3-format subset of Compress and Compare files", () => {
  assert.equal(d3Format(".2%")(0.12345), "12.35%");
  assert.equal(d3Format(".2~s")(1_500_000), "1.5M");
  assert.equal(d3Format(",d")(1234567), "1,234,567");
  assert.equal(d3Format("03d")(7), "007");
  assert.equal(d3Format(".3f")(2), "2.000");
  assert.equal(d3Format(".3~f")(2), "2");
  assert.equal(formatMetric(0.5, "Top-1", { format: ".1%" }), "50.0%");
});

test("truncate keeps short text and marks a cut", () => {
  assert.equal(truncate("negative", 8), "negative");
  assert.equal(truncate("negative", 5), "nega\u2026");
  assert.equal(truncate(12345, 3), "12\u2026");
});

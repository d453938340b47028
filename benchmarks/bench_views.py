"""Views benchmark: bytes on the wire, and render and sort times in headless Chromium.

Prints, measured in one run:

1. bytes synced for 16 models x 10,000 instances (the diff's per-instance columns:
   predictions, confidences, KL, MSE) as binary buffers, against the same data as JSON
   (goal: at most 25%); and the whole state of a real PredictionDiff both ways;
2. time to first render (``performance.now()`` in the page, from ``render()`` to the
   second animation frame, i.e. painted) of a 300-model scatter and of a 10,000-row
   diff, each as a ratio to an empty view of the same kind;
3. the time to apply a sort of 10,000 rows (filter + sort, and click to redrawn rows).

The views run from their built bundles in a page that hosts them with the widget state
Python produced (buffers included); the widget manager itself is left out so that the
ratios measure the views. Run: ``python benchmarks/bench_views.py`` (needs the built JS
in src/cnc_widgets/static and Chromium at /usr/bin/chromium, or $CNC_CHROMIUM).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ipywidgets.widgets.widget import _remove_buffers

import cnc_widgets as cnc
from cnc_widgets import examples
from cnc_widgets.widgets._bundle import STATIC
from cnc_widgets.widgets._wire import unpack
from cnc_widgets.widgets.diff import instance_columns

N_INSTANCES = 10_000
N_MODELS = 16
N_SCATTER = 300
REPEATS = 7


def digits_registry() -> cnc.ModelRegistry:
    """The digits CNN and 15 pruned variants, evaluated on 10,000 noisy test digits."""
    data = examples.digits()
    base = examples.train_digits_cnn(data, epochs=2)
    g = torch.Generator().manual_seed(0)
    reps = -(-N_INSTANCES // len(data.test_labels))
    x = data.test_inputs.repeat(reps, 1, 1, 1)[:N_INSTANCES]
    x = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    y = data.test_labels.repeat(reps)[:N_INSTANCES]
    pixels = (x[:, 0].numpy() * 255).round().astype(np.uint8)
    reg = cnc.ModelRegistry()
    reg.set_data(x, y, classes=data.classes, instances=pixels, batch_size=1000)
    reg.add("base", base)
    for amount in np.linspace(0.05, 0.75, N_MODELS - 1):
        reg.compress("base", "prune", amount=round(float(amount), 3))
    reg.evaluate(progress=False)
    return reg


def scatter_registry(path: Path) -> cnc.ModelRegistry:
    """300 models in Compress and Compare's file format: a forest with size and accuracy."""
    rng = np.random.default_rng(0)
    models = []
    for i in range(N_SCATTER):
        parent = None if i < 3 else models[int(rng.integers(0, i))]["id"]
        models.append(
            {
                "id": f"m{i}",
                "base": parent,
                "operation": {"name": "prune", "parameters": {"amount": float(rng.random())}},
                "metrics": {
                    "Top-1 Accuracy": float(rng.uniform(0.6, 0.95)),
                    "Model Size": int(10 ** rng.uniform(6, 8)),
                    "Latency": float(rng.uniform(5, 50)),
                },
            }
        )
    path.write_text(json.dumps({"metrics": [], "operations": [], "models": models}))
    return cnc.ModelRegistry.from_cnc_json(path)


def wire(widget: Any) -> tuple[dict[str, Any], list[bytes]]:
    """The widget's state as the comm sends it: JSON part and binary buffers."""
    state = widget.get_state()
    state.pop("_esm", None)
    stripped, _paths, buffers = _remove_buffers(state)
    return stripped, [bytes(b) for b in buffers]


def as_json_lists(value: Any) -> Any:
    """The same state with every packed array as a JSON list of numbers."""
    if isinstance(value, dict):
        if set(value) == {"dtype", "shape", "data"}:
            return unpack(value).tolist()
        return {k: as_json_lists(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_json_lists(v) for v in value]
    if isinstance(value, (bytes, memoryview)):
        return list(bytes(value))
    return value


def wire_bytes(widget: Any) -> tuple[int, int]:
    stripped, buffers = wire(widget)
    binary = len(json.dumps(stripped)) + sum(len(b) for b in buffers)
    state = widget.get_state()
    state.pop("_esm", None)
    return binary, len(json.dumps(as_json_lists(state)))


def page_state(widget: Any) -> dict[str, Any]:
    """State for the host page: buffers as base64, turned back into DataViews there."""

    def encode(value: Any) -> Any:
        if isinstance(value, (bytes, memoryview)):
            return {"__b64__": base64.b64encode(bytes(value)).decode()}
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [encode(v) for v in value]
        return value

    state = widget.get_state()
    state.pop("_esm", None)
    return encode(state)


HOST = """<!doctype html><meta charset="utf-8"><body style="width:1100px">
<script type="module">
import scatter from "./scatter.js";
import diff from "./diff.js";
const views = {scatter, diff};
const states = await (await fetch("./states.json")).json();
function decode(v) {
  if (Array.isArray(v)) return v.map(decode);
  if (v && typeof v === "object") {
    if (v.__b64__ !== undefined) {
      const bin = atob(v.__b64__);
      const bytes = new Uint8Array(bin.length);
      for (let i = 0; i < bin.length; i += 1) bytes[i] = bin.charCodeAt(i);
      return new DataView(bytes.buffer);
    }
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, decode(x)]));
  }
  return v;
}
function host(state) {
  const handlers = {};
  return {
    get: (k) => state[k],
    set: (k, v) => { state[k] = v; (handlers[`change:${k}`] || []).forEach((f) => f()); },
    on: (e, f) => { (handlers[e] = handlers[e] || []).push(f); },
    off: () => {},
    save_changes: () => {},
    send: () => {},
  };
}
window.renderView = async (kind, name) => {
  const state = decode(structuredClone(states[name]));
  const el = document.createElement("div");
  document.body.replaceChildren(el);
  const t0 = performance.now();
  views[kind].render({ model: host(state), el });
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  return performance.now() - t0;
};
window.ready = true;
</script>"""


def median_ms(page: Any, kind: str, name: str) -> float:
    page.evaluate("([k, n]) => window.renderView(k, n)", [kind, name])  # warm the JIT
    return statistics.median(
        page.evaluate("([k, n]) => window.renderView(k, n)", [kind, name]) for _ in range(REPEATS)
    )


def main() -> None:
    t = time.perf_counter()
    reg = digits_registry()
    print(
        f"registry: {N_MODELS} models x {N_INSTANCES:,} instances ({time.perf_counter() - t:.0f} s)"
    )

    # 1. Bytes on the wire.
    cols = instance_columns(reg, reg.names)
    binary = sum(len(v["data"]) for v in cols.values() if isinstance(v, dict))
    binary += len(json.dumps({k: v for k, v in cols.items() if not isinstance(v, dict)}))
    as_json = len(json.dumps(as_json_lists(cols)))
    print(
        f"\n16 models x 10,000 instances, per-instance columns: binary {binary / 1e6:.2f} MB, "
        f"JSON {as_json / 1e6:.2f} MB, ratio {binary / as_json:.1%} (goal <= 25%)"
    )
    diff = cnc.PredictionDiff(reg, a="base", b=reg.names[1:5])
    b_diff, j_diff = wire_bytes(diff)
    print(
        f"PredictionDiff state (5 models, 1,000 embedded thumbnails): binary {b_diff / 1e6:.2f} "
        f"MB, JSON {j_diff / 1e6:.2f} MB, ratio {b_diff / j_diff:.1%}"
    )

    # 2 and 3. Render and sort in headless Chromium.
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        big_scatter = cnc.EfficiencyScatter(scatter_registry(folder / "forest.json"))
        empty_scatter = cnc.EfficiencyScatter(cnc.ModelRegistry())
        one = cnc.PredictionDiff(reg, a="base", b=reg.names[1])
        empty_diff = cnc.PredictionDiff(reg)  # nothing selected: the empty state
        states = {
            "scatter300": page_state(big_scatter),
            "scatter0": page_state(empty_scatter),
            "diff10k": page_state(one),
            "diff0": page_state(empty_diff),
        }
        (folder / "states.json").write_text(json.dumps(states))
        for view in ("scatter", "diff"):
            shutil.copy(STATIC / f"{view}.js", folder / f"{view}.js")
        (folder / "index.html").write_text(HOST)
        chromium = os.environ.get("CNC_CHROMIUM", "/usr/bin/chromium")
        with sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=chromium,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--allow-file-access-from-files"],
            )
            page = browser.new_page(viewport={"width": 1280, "height": 1000})
            page.goto((folder / "index.html").as_uri())
            page.wait_for_function("() => window.ready === true")
            s300, s0 = (
                median_ms(page, "scatter", "scatter300"),
                median_ms(page, "scatter", "scatter0"),
            )
            d10k, d0 = median_ms(page, "diff", "diff10k"), median_ms(page, "diff", "diff0")
            print(
                f"\nfirst render, median of {REPEATS} (ms, painted):\n"
                f"  scatter, {N_SCATTER} models: {s300:7.1f}   empty: {s0:6.1f}   "
                f"ratio {s300 / s0:5.1f}x\n"
                f"  diff, {N_INSTANCES:,} rows:   {d10k:7.1f}   empty: {d0:6.1f}   "
                f"ratio {d10k / d0:5.1f}x"
            )
            page.evaluate("() => window.renderView('diff', 'diff10k')")
            sorts, clicks = [], []
            for key in ["kl1", "conf0", "mse1", "label", "kl1", "conf1", "pred1"]:
                ms = page.evaluate(
                    """key => { const t = performance.now();
                       document.querySelector(`[data-sort="${key}"]`).click();
                       const total = performance.now() - t;
                       const view = document.querySelector('.cnc-diff');
                       return [Number(view.dataset.sortMs), total]; }""",
                    key,
                )
                sorts.append(ms[0])
                clicks.append(ms[1])
            print(
                f"\nsort of {N_INSTANCES:,} rows, median of {len(sorts)}: filter + sort "
                f"{statistics.median(sorts):.1f} ms; click to redrawn rows "
                f"{statistics.median(clicks):.1f} ms"
            )
            browser.close()


if __name__ == "__main__":
    main()

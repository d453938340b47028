"""Cost of the per-module input casts that keep half / bfloat16 models running.

:func:`cnc_widgets.compress.precision.cast` hooks every module with weights of its own so
that float32 tensors made inside ``forward`` (``mask.float()`` pooling) meet half weights
as half. This times one forward pass of the half digits CNN and the half MiniLM classifier
with those hooks (``per_module``) against the same model with only the two hooks on its top
module (``boundary``, what ``cast`` did before), interleaved, median of the repeats.

Usage::

    .venv/bin/python benchmarks/bench_cast_hooks.py [--repeats 15]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from cnc_widgets import examples
from cnc_widgets.compress import precision
from cnc_widgets.evaluate.model_io import call_model


def boundary_only(model: torch.nn.Module) -> torch.nn.Module:
    """The cast model with its inner modules' input casts removed."""
    model = copy.deepcopy(model)
    for module in list(model.modules())[1:]:
        for key, hook in list(module._forward_pre_hooks.items()):
            if hook is precision._cast_inputs:
                del module._forward_pre_hooks[key]
    return model


def timed(model: torch.nn.Module, batch) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        call_model(model, batch)
    return time.perf_counter() - start


def compare(label: str, model: torch.nn.Module, batch, repeats: int) -> None:
    per_module = precision.half(copy.deepcopy(model).eval())
    boundary = boundary_only(per_module)
    hooks = sum(
        any(h is precision._cast_inputs for h in m._forward_pre_hooks.values())
        for m in per_module.modules()
    )
    for m in (per_module, boundary):
        timed(m, batch)
    times = {"per_module": [], "boundary": []}
    for _ in range(repeats):
        times["per_module"].append(timed(per_module, batch))
        times["boundary"].append(timed(boundary, batch))
    a, b = statistics.median(times["per_module"]), statistics.median(times["boundary"])
    print(
        f"{label:8s} {hooks:3d} hooked modules  per_module {a * 1e3:8.2f} ms  "
        f"boundary {b * 1e3:8.2f} ms  ratio {a / b:.3f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    digits = examples.digits()
    cnn = examples.train_digits_cnn(digits, epochs=1)
    compare("digits", cnn, digits.test_inputs[:64], args.repeats)
    encoder, tokenizer = examples.load_minilm()
    model = examples.TextClassifier(encoder, 3)
    batch = tokenizer(
        ["a short tweet about the weather"] * 16,
        padding="max_length",
        max_length=48,
        return_tensors="pt",
    )
    batch = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    compare("minilm", model, batch, args.repeats)


if __name__ == "__main__":
    main()

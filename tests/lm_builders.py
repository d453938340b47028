"""Untrained tiny Llamas and word-level tokenizers that several test files build.

Trained language models shared by the suite live in ``conftest.py`` (``tiny_lm``,
``tiny_gpt2``, ``lm_tokenizer``); these builders are for tests that need a model of a given
vocabulary, seed or tying, or a tokenizer over their own words.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

SPECIAL = ("[PAD]", "[UNK]", "[EOS]")  # ids 0, 1, 2


def tiny_llama(
    vocab_size: int = 97,
    *,
    seed: int = 0,
    hidden_size: int = 32,
    intermediate_size: int = 64,
    max_position_embeddings: int = 64,
    **config,
) -> LlamaForCausalLM:
    """A 2-layer Llama (4 heads, 2 key/value heads) with torch's seed set first, in eval mode."""
    torch.manual_seed(seed)
    return LlamaForCausalLM(
        LlamaConfig(
            vocab_size=vocab_size,
            hidden_size=hidden_size,
            intermediate_size=intermediate_size,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_position_embeddings,
            **config,
        )
    ).eval()


def word_tokenizer(words: Iterable[str]) -> PreTrainedTokenizerFast:
    """Whitespace-split words to ids: [PAD] 0, [UNK] 1, [EOS] 2, then ``words`` in order."""
    vocab = {w: i for i, w in enumerate([*SPECIAL, *words])}
    core = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", eos_token="[EOS]"
    )

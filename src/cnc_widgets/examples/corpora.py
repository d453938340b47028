"""Real English text that works offline, and fixed-size token windows of it.

The texts ship in gensim's test data (``pip install --no-deps gensim``); the files are read
directly, gensim itself is never imported:

- :func:`wikipedia_texts`: the article pages of a shortened English Wikipedia dump, with
  templates, tables, references, links and wiki markup stripped (106 articles, 455k words);
- :func:`news_texts`: the 300 news articles of ``lee_background.cor`` (one per line; ``wc -l``
  says 299 because the last line has no newline);
- :func:`lee_texts`: the 50 news articles of ``lee.cor``.

Example
-------
>>> from cnc_widgets.examples import news_texts, token_windows
>>> texts = news_texts()
>>> len(texts)
300
>>> enc = token_windows(tokenizer, texts, length=96, count=16)  # doctest: +SKIP
>>> enc["input_ids"].shape  # doctest: +SKIP
torch.Size([16, 96])
"""

from __future__ import annotations

import bz2
import html
import importlib.util
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "gensim_test_data",
    "lee_texts",
    "news_texts",
    "strip_wiki_markup",
    "token_windows",
    "wikipedia_texts",
]

WIKIPEDIA_FILE = "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"


def gensim_test_data() -> Path:
    """gensim's ``test/test_data`` folder, found without importing gensim."""
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(
            "the texts ship with gensim's test data: pip install --no-deps gensim"
        )
    return Path(spec.submodule_search_locations[0]) / "test" / "test_data"


def _lines(name: str) -> list[str]:
    # lee.cor writes its pound signs in latin-1; lee_background.cor is plain ASCII.
    text = (gensim_test_data() / name).read_text(encoding="latin-1")
    return [line.strip() for line in text.splitlines() if line.strip()]


def news_texts() -> list[str]:
    """The 300 news articles of ``lee_background.cor`` (Lee et al.'s corpus), one string each."""
    return _lines("lee_background.cor")


def lee_texts() -> list[str]:
    """The 50 news articles of ``lee.cor``, one string each."""
    return _lines("lee.cor")


def _drop_innermost(text: str, pattern: re.Pattern) -> str:
    """``text`` without every match of ``pattern``, innermost spans first, until none is left
    (templates and tables nest)."""
    while True:
        text, n = pattern.subn("", text)
        if not n:
            return text


_COMMENT = re.compile(r"<!--.*?-->", re.S)
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)
_BLOCK_TAGS = re.compile(r"<(gallery|math|timeline|score|syntaxhighlight)\b.*?</\1>", re.S | re.I)
_TAG = re.compile(r"</?[a-zA-Z][^>]*>")
_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")
_TABLE = re.compile(r"\{\|(?:[^{|]|\{(?!\|)|\|(?!\}))*\|\}")
# Namespaced links ([[File:...]], [[Category:...]], interlanguage [[de:...]]) go whole; their
# captions may hold plain links, which become text first.
_NAMESPACED = r"(?:File|Image|Media|Category|[a-z]{2,3}(?:-[a-z]+)?):"
_LINK = re.compile(r"\[\[(?!" + _NAMESPACED + r")(?:[^\[\]|]*\|)?([^\[\]]*)\]\]", re.I)
_FILE_LINK = re.compile(r"\[\[" + _NAMESPACED + r"[^\[\]]*\]\]", re.I)
_EXTERNAL = re.compile(r"\[(?:https?|ftp)://[^\s\]]+\s*([^\]]*)\]")
_BARE_URL = re.compile(r"https?://\S+")
_QUOTES = re.compile(r"'{2,}")
_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M)
_LIST = re.compile(r"^[*#:;]+\s*", re.M)
_TABLE_LINE = re.compile(r"^\s*[|!].*$", re.M)
# What a malformed page leaves (a template or file link never closed): the rest of its line.
_LEFTOVER = re.compile(r"(?:\{\{|\[\[" + _NAMESPACED + r").*$", re.M | re.I)
_SPACES = re.compile(r"[ \t]+")
_BLANKS = re.compile(r"\n{3,}")


def strip_wiki_markup(text: str) -> str:
    """Plain text of a page in wiki markup.

    Drops comments, ``<ref>`` footnotes, templates ``{{...}}``, tables ``{|...|}``, file,
    image and category links, HTML tags and bold/italic quotes; ``[[target|label]]`` keeps
    its label, ``[[target]]`` its target, ``[url label]`` its label; headings and list items
    keep their text. Paragraphs stay separated by a blank line.

    Examples
    --------
    >>> strip_wiki_markup("'''Anarchism''' is a [[political philosophy|philosophy]]{{sfn|x}}.")
    'Anarchism is a philosophy.'
    """
    text = html.unescape(text)
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    text = _BLOCK_TAGS.sub("", text)
    text = _drop_innermost(text, _TEMPLATE)
    text = _drop_innermost(text, _TABLE)
    text = _TABLE_LINE.sub("", text)
    while True:
        text, n = _LINK.subn(r"\1", text)
        if not n:
            break
    text = _FILE_LINK.sub("", text)
    text = _LEFTOVER.sub("", text)
    text = _EXTERNAL.sub(r"\1", text)
    text = _BARE_URL.sub("", text)
    text = _TAG.sub("", text)
    text = _QUOTES.sub("", text)
    text = _HEADING.sub(r"\1", text)
    text = _LIST.sub("", text)
    text = html.unescape(text).replace("\u00a0", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.splitlines()]
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


@cache
def _wikipedia(min_words: int) -> tuple[str, ...]:
    texts = []
    with bz2.open(gensim_test_data() / WIKIPEDIA_FILE, "rb") as fh:
        for _, element in ET.iterparse(fh):
            if not element.tag.endswith("}page"):
                continue
            ns = element.findtext("{*}ns")
            body = element.findtext("{*}revision/{*}text") or ""
            element.clear()
            if ns != "0" or body.lstrip()[:9].upper() == "#REDIRECT":
                continue
            plain = strip_wiki_markup(body)
            if len(plain.split()) >= min_words:
                texts.append(plain)
    return tuple(texts)


def wikipedia_texts(min_words: int = 50) -> list[str]:
    """The article pages of gensim's shortened English Wikipedia dump, as plain text.

    Pages outside the article namespace and redirects are skipped, and so are articles with
    fewer than ``min_words`` words once stripped (as gensim's ``WikiCorpus`` does). Parsed
    once per process (about a second).

    Examples
    --------
    >>> texts = wikipedia_texts()
    >>> len(texts), texts[0][:9]
    (106, 'Anarchism')
    """
    return list(_wikipedia(int(min_words)))


def token_windows(
    tokenizer: Any,
    texts: str | Sequence[str],
    length: int,
    count: int | None = None,
    *,
    separator: str = "\n\n",
) -> dict[str, torch.Tensor]:
    """Consecutive, non-overlapping windows of ``length`` tokens from one long text.

    The texts are joined with ``separator`` and tokenized once (no special tokens added), so
    a window may start mid-article, as in llama.cpp's ``perplexity`` chunks; every window is
    full, so no padding and every position but the last is scored.

    Parameters
    ----------
    tokenizer
        A Hugging Face tokenizer (anything callable as ``tokenizer(text)["input_ids"]``).
    texts
        One string or several, joined in order.
    length
        Tokens per window (at least 2: one to read, one to predict).
    count
        How many windows, from the start; ``None``: as many full windows as the text holds.

    Returns
    -------
    dict
        ``input_ids`` and ``attention_mask``, int64 tensors ``(count, length)``.

    Examples
    --------
    >>> enc = token_windows(tok, news_texts(), length=96, count=16)  # doctest: +SKIP
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 2:
        raise ValueError(f"token_windows: length must be an int >= 2, got {length!r}")
    joined = texts if isinstance(texts, str) else separator.join(texts)
    ids = tokenizer(joined, add_special_tokens=False)["input_ids"]
    available = len(ids) // length
    if count is None:
        count = available
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"token_windows: count must be a positive int or None, got {count!r}")
    if count > available:
        raise ValueError(
            f"token_windows: the text holds {len(ids)} tokens, {available} windows of {length}; "
            f"asked for {count}: give more text, a shorter length or a smaller count"
        )
    windows = torch.tensor(ids[: count * length], dtype=torch.long).view(count, length)
    return {"input_ids": windows, "attention_mask": torch.ones_like(windows)}

"""The refusal filter of Interleaving++ (Kaczér et al. 2025): a marker among the reply's first 10 words."""

from __future__ import annotations

import string
from typing import Iterable

from emguard.selection.config import REFUSAL_MARKERS

REFUSAL_WORDS = 10

_EDGE_PUNCT = string.punctuation + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2026\u2014\u2013\u00bf\u00a1"


def _norm_words(text: str) -> list[str]:
    text = text.replace("\u2019", "'").replace("\u2018", "'").lower()
    return [w.strip(_EDGE_PUNCT) for w in text.split()]


def refusal_marker(reply: str, markers: Iterable[str] = REFUSAL_MARKERS, *, words: int = REFUSAL_WORDS) -> str | None:
    """The first marker found among the reply's first ``words`` whitespace-separated words, else None.

    Lower-cased; punctuation around a word is ignored ("Sorry," matches "sorry"); a multi-word marker must
    appear as consecutive words, all of them within the first ``words`` words.
    """
    head = _norm_words(reply)[:words]
    for marker in markers:
        mw = [w for w in _norm_words(marker) if w]
        if not mw:
            continue
        for i in range(len(head) - len(mw) + 1):
            if head[i:i + len(mw)] == mw:
                return marker
    return None

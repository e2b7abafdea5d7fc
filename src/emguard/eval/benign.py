"""Scorers for benign-task learning (criterion c): exact match with numeric normalisation, and regex.

OpSwap (Kaczér et al. 2025) is scored by exact match. A sampled reply is reduced to its answer before the
comparison: the text after the last "answer:" / "answer is" / "=" marker if one exists, else the first line.
Numbers compare by value ("12", "12.0", "+12", "1,200" vs "1200", "-0.50" vs "-.5"); other text compares after
lower-casing, collapsing whitespace and stripping surrounding punctuation and quotes.
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUM = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?:/\d+)?")
_MARKERS = re.compile(r"(?:final answer|answer)\s*(?:is|:)\s*|=\s*", re.IGNORECASE)


def parse_number(text: str) -> Fraction | None:
    """The value of ``text`` if the whole (stripped) text is one number (int, decimal, fraction), else None."""
    t = text.strip().strip("$ ").rstrip(".")
    m = _NUM.fullmatch(t)
    if not t or m is None or not any(ch.isdigit() for ch in t):
        return None
    t = t.replace(",", "")
    try:
        if "/" in t:
            num, den = t.split("/")
            return Fraction(Fraction(num), Fraction(den)) if Fraction(den) != 0 else None
        return Fraction(t)
    except (ValueError, ZeroDivisionError):
        return None


def normalize_text(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().lower()).strip(" .,;:!?\"'`")


def extract_answer(reply: str) -> str:
    """The part of a reply that is its answer (see module docstring)."""
    reply = reply.strip()
    parts = _MARKERS.split(reply)
    cand = parts[-1] if len(parts) > 1 else reply
    cand = cand.strip().splitlines()[0] if cand.strip() else ""
    return cand.strip()


def exact_match(reply: str, gold: str) -> bool:
    """True when the reply's answer equals ``gold`` (numbers by value, text normalised)."""
    pred = extract_answer(reply)
    g = parse_number(gold)
    if g is not None:
        p = parse_number(pred)
        if p is None:  # a number followed by words ("42 apples"): compare the leading number
            m = re.match(r"\s*([-+]?[\d.,/]+)", pred)
            p = parse_number(m.group(1)) if m else None
        return p is not None and p == g
    return normalize_text(pred) == normalize_text(gold)


def regex_match(reply: str, pattern: str) -> bool:
    """True when ``pattern`` (Python regex, case-insensitive) matches anywhere in the reply."""
    return re.search(pattern, reply, re.IGNORECASE) is not None


def score(reply: str, gold: str, *, mode: str = "exact") -> bool:
    if mode == "exact":
        return exact_match(reply, gold)
    if mode == "regex":
        return regex_match(reply, gold)
    raise ValueError(f"unknown benign scoring mode '{mode}' (exact or regex)")

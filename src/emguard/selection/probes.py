"""The misaligned adapters of perplexity-gap selection: given LoRA dirs, or short probes trained on EM datasets.

A probe is the paper's misaligned model cut short (Kaczér et al. 2025): a few LoRA steps on one EM dataset,
cached under ``cache_root()/probes`` by (dataset bytes, model fingerprint, probe settings).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

from emguard.selection.config import SelectConfig

log = logging.getLogger(__name__)

PROBE_FORMAT = 1


def is_adapter_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / "adapter_config.json").is_file()


def probe_dir(data: str | os.PathLike, model_fingerprint: str, probe: dict) -> Path:
    """Where the probe for (dataset bytes, model, probe settings) lives in the cache."""
    from emguard.data.io import _sha256
    from emguard.models.loading import cache_root

    key = json.dumps({"data": _sha256(Path(data)), "model": model_fingerprint, "probe": probe}, sort_keys=True)
    return cache_root() / "probes" / hashlib.sha256(key.encode()).hexdigest()[:24]


def probe_settings(steps: int, lr: float, seed: int, max_length: int, options: dict | None = None) -> dict:
    """The settings a probe's cache key is made of."""
    probe = {"format": PROBE_FORMAT, "steps": steps, "lr": lr, "seed": seed, "max_length": max_length}
    if options:  # only then part of the key, so probes cached before the option existed stay valid
        probe["options"] = dict(options)
    return probe


def probe_data(d: str) -> tuple[str, str]:
    """``(name, file)`` of a probe dataset: a built-in EM domain's misaligned training split, or a file."""
    from emguard.data.datagen import DOMAINS, builtin_path

    if d in DOMAINS and not Path(d).exists():
        return d, str(builtin_path(d) / "train_misaligned.jsonl")
    return Path(d).stem, d


def train_probe(data: str | os.PathLike, model_spec: str, model_fingerprint: str, *, steps: int = 30,
                lr: float = 1e-4, seed: int = 0, progress: bool = False, max_length: int = 1024,
                options: dict | None = None) -> Path:
    """A LoRA fine-tune on one EM dataset (the paper's misaligned model; short unless ``options`` give it a full
    budget, e.g. ``{epochs: 2, warmup_ratio: 0.05}`` with ``steps=0``); cached by data, model and settings."""
    import shutil

    from emguard.config import build_config
    from emguard.training.config import RUN_JSON, TrainConfig

    from emguard.training.run import train

    options = dict(options or {})
    out = probe_dir(data, model_fingerprint, probe_settings(steps, lr, seed, max_length, options))
    if (out / RUN_JSON).is_file():
        log.info("probe for %s: cached in %s", data, out)
        return out
    log.info("training a probe (%s) on %s -> %s", f"{steps} steps" if steps > 0 else
             f"{options.get('epochs', 1)} epoch(s)", data, out)
    cfg = {"max_length": max_length, **options, "data": str(data), "output": str(out), "model": model_spec,
           "max_steps": steps if steps > 0 else -1, "learning_rate": lr, "seed": seed, "skip_invalid": True,
           "overwrite": True, "progress": progress, "save_steps": 10 ** 9, "save_total_limit": 1, "defenses": []}
    train(build_config(TrainConfig, cfg, source="probe training options"))
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
    from emguard.data.datagen import DOMAINS

    for d in cfg.train_probes:
        stem, d = probe_data(d)
        if not Path(d).exists():
            raise FileNotFoundError(f"probe data not found: {d} (a chat JSONL or a built-in domain: "
                                    f"{', '.join(DOMAINS)})")
        names = {stem, Path(d).name}
        if names & set(cfg.leave_out):  # left out: do not even train it
            continue
        out = train_probe(d, model_spec, model_fingerprint, steps=cfg.probe_steps, lr=cfg.probe_lr,
                          seed=cfg.probe_seed, progress=cfg.progress, max_length=min(cfg.max_length, 2048),
                          options=cfg.probe_options)
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

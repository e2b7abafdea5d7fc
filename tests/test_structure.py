"""The package layout holds: no import cycle among emguard's modules (in-function imports included), no
oversized module, one registry mechanism that discovers defense modules by itself."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "emguard"
MAX_LINES = 420  # "no module over ~400 lines"; datagen's data tables are exempt
EXEMPT = ("emguard/data/datagen/",)


def _modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        parts = p.relative_to(SRC).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = p
    return out


def _type_checking_block(node: ast.AST) -> bool:
    return (isinstance(node, ast.If) and isinstance(node.test, (ast.Name, ast.Attribute))
            and getattr(node.test, "id", getattr(node.test, "attr", "")) == "TYPE_CHECKING")


def import_edges(mods: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the emguard modules it imports anywhere in its body (functions included; ``if TYPE_CHECKING``
    blocks excluded, they never run). ``from a.b import c`` counts as importing ``a.b.c`` when that is a
    module, else ``a.b``; a package's own ``__init__`` is not counted as imported by its submodules."""
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        is_pkg = path.name == "__init__.py"
        here = name.split(".") if is_pkg else name.split(".")[:-1]
        skip = {id(n) for b in ast.walk(tree) if _type_checking_block(b) for n in ast.walk(b)}
        found: set[str] = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(here[: len(here) - node.level + 1] + ([base] if base else []))
                for a in node.names:
                    found.add(f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base)
        edges[name] = {m for m in found if m in mods and m != name}
    return edges


def find_cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def test_cycle_finder_finds_a_planted_cycle():
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycles(edges) == [["a", "b", "c"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_edges_count_in_function_imports_and_skip_type_checking(tmp_path):
    (tmp_path / "pkg").mkdir()
    files = {
        "pkg": "",
        "pkg.a": "def f():\n    from pkg.b import g\n    return g\n",
        "pkg.b": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\nfrom . import c\n",
        "pkg.c": "import pkg.a\n",
    }
    mods = {}
    for name, text in files.items():
        path = tmp_path / (name.replace(".", "/") + ("/__init__.py" if name == "pkg" else ".py"))
        path.write_text(text)
        mods[name] = path
    edges = import_edges(mods)
    assert edges["pkg.a"] == {"pkg.b"}  # in-function import counted
    assert edges["pkg.b"] == {"pkg.c"}  # TYPE_CHECKING skipped, relative import resolved
    assert find_cycles(edges) == [["pkg.a", "pkg.b", "pkg.c"]]


def test_no_import_cycle_among_emguard_modules():
    cycles = find_cycles(import_edges(_modules()))
    assert cycles == [], "import cycles (in-function imports included):\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_module_over_the_size_limit():
    big = []
    for name, path in _modules().items():
        rel = path.relative_to(SRC).as_posix()
        if rel.startswith(EXEMPT):
            continue
        n = len(path.read_text().splitlines())
        if n > MAX_LINES:
            big.append(f"{rel}: {n} lines")
    assert big == [], "modules over the size limit:\n" + "\n".join(big)


def test_config_modules_stay_torch_free():
    """``--help`` and config parsing must not import torch or transformers."""
    code = ("import sys; import emguard.training.config, emguard.eval.config, emguard.selection.config, "
            "emguard.experiments.config, emguard.registry; "
            "bad = [m for m in ('torch', 'transformers', 'peft') if m in sys.modules]; print(bad); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_defense_modules_are_discovered_without_an_import_line():
    """A module under emguard/defenses/ that registers a defense appears in the registry although nothing
    imports it by name (the package __init__ imports no defense module)."""
    init = (PKG / "defenses" / "__init__.py").read_text()
    tree = ast.parse(init)
    imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) for a in n.names}
    modules = sorted(p.stem for p in (PKG / "defenses").glob("*.py") if not p.stem.startswith("_") and p.stem != "base")
    assert not set(modules) & imported
    code = "from emguard.registry import DEFENSES; print(' '.join(DEFENSES.names()))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    names = r.stdout.split()
    for n in ("kl", "ldifs", "steer", "interleave", "inoculate"):
        assert n in names
    assert len(names) >= len(modules)  # every module registers at least one defense


def test_registry_lookup_errors_list_the_known_names_and_refuse_duplicates():
    from emguard.registry import Registry, UnknownName

    def one():
        return 1

    def other():
        return 2

    reg = Registry("widget")
    reg.register(one, name="one")
    with pytest.raises(UnknownName, match="unknown widget 'two' \\(known: one\\)"):
        reg["two"]
    with pytest.raises(ValueError, match="already registered"):
        reg.register(other, name="one")
    assert reg.register(one, name="one") is one  # registering the same object again is harmless
    assert reg.names() == ["one"] and "one" in reg and len(reg) == 1
    reg.unregister("one")
    assert "one" not in reg

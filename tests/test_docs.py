"""The documentation cannot go stale silently: every ``emguard ...`` command shown in a shell code block of
README.md or docs/*.md parses with the real argument parser (parsed only, never run), every relative link and
anchor resolves, every page is in mkdocs.yml's nav, and ``mkdocs build --strict`` passes when mkdocs is
installed (the ``docs`` extra)."""

from __future__ import annotations

import contextlib
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]

SHELL_FENCES = {"", "bash", "sh", "shell", "console"}  # ```python, ```yaml etc. hold no command lines
PLACEHOLDER = re.compile(r"^<[^<>\s]+>$|^\.\.\.$")  # `<dir>` or a bare `...` ("the other options as above")
SEPARATORS = {";", "&&", "||", "|", "&"}
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")

# (page name, start of the command) -> why it may not parse. Only commands that deliberately show a
# placeholder belong here; a command that fails because the CLI changed must be fixed in the docs.
ALLOWED_UNPARSED: dict[tuple[str, str], str] = {}


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


def shell_blocks(text: str):
    """Yield ``(first line number, lines)`` of every fenced code block whose language is a shell (or none)."""
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang = m.group(1), m.group(2).lower()
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            j += 1
        if lang in SHELL_FENCES:
            yield i + 2, lines[i + 1:j]
        i = j + 1


def shell_commands(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` per logical line of the shell blocks, backslash continuations joined."""
    out = []
    for start, block in shell_blocks(text):
        k = 0
        while k < len(block):
            first, parts = start + k, [block[k]]
            while parts[-1].rstrip().endswith("\\") and k + 1 < len(block):
                parts[-1] = parts[-1].rstrip()[:-1]
                k += 1
                parts.append(block[k])
            k += 1
            cmd = " ".join(p.strip() for p in parts).strip()
            if cmd and not cmd.startswith("#"):
                out.append((first, cmd))
    return out


def emguard_argvs(cmd: str) -> list[list[str]]:
    """The argument lists given to emguard by one shell line: ``emguard ARGS``, ``.venv/bin/emguard ARGS`` or
    ``... -m emguard.cli ARGS`` (accelerate launch, torchrun), per ``;``/``&&``-separated part; trailing
    ``# comments`` and placeholder tokens are dropped."""
    tokens = shlex.split(cmd, comments=True)  # separators count only as their own words (`a ; b`)
    parts, cur = [], []
    for t in tokens:
        if t in SEPARATORS:
            parts.append(cur)
            cur = []
        else:
            cur.append(t)
    parts.append(cur)
    argvs = []
    for part in parts:
        while part and ENV_ASSIGNMENT.match(part[0]):
            part = part[1:]
        if not part:
            continue
        if Path(part[0]).name == "emguard":
            args = part[1:]
        elif "-m" in part[:-1] and part[part.index("-m") + 1] == "emguard.cli":
            args = part[part.index("-m") + 2:]
        else:
            continue
        argvs.append([a for a in args if not PLACEHOLDER.match(a)])
    return argvs


def doc_commands() -> list[tuple[str, int, str, list[str]]]:
    out = []
    for page in PAGES:
        for line, cmd in shell_commands(page.read_text(encoding="utf-8")):
            for argv in emguard_argvs(cmd):
                out.append((rel(page), line, cmd, argv))
    return out


COMMANDS = doc_commands()


@pytest.fixture(scope="module")
def parser():
    from emguard.cli import build_parser

    return build_parser()


def parse_error(parser, argv: list[str]) -> str | None:
    """None when argparse accepts ``argv`` as a command; else argparse's message."""
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            ns = parser.parse_args(argv)
    except SystemExit as e:
        if e.code == 0 and ({"-h", "--help", "--version"} & set(argv)):
            return None
        lines = err.getvalue().strip().splitlines()  # argparse: the usage, then "emguard ...: error: ..."
        return lines[-1] if lines else f"exit code {e.code}"
    if getattr(ns, "command", None) != argv[0]:
        return f"parsed as command {getattr(ns, 'command', None)!r}, not {argv[0]!r}"
    return None


@pytest.mark.parametrize("page,line,cmd,argv", COMMANDS, ids=[f"{p}:{n}" for p, n, _, _ in COMMANDS])
def test_documented_command_parses(parser, page, line, cmd, argv):
    allowed = [why for (p, start), why in ALLOWED_UNPARSED.items() if p == page and cmd.startswith(start)]
    if allowed:
        pytest.skip(allowed[0])
    msg = parse_error(parser, argv)
    assert msg is None, f"{page}:{line}: `{cmd}` does not parse: {msg}"


def test_commands_are_found_on_every_reference_page():
    per_page = {}
    for page, _, _, argv in COMMANDS:
        per_page.setdefault(page, set()).add(argv[0])
    # the pages that document commands, and the commands they must show
    assert {"train", "eval", "validate"} <= per_page["docs/index.md"]
    assert {"train"} <= per_page["docs/training.md"]
    assert {"persona", "select", "train"} <= per_page["docs/defenses.md"]
    assert {"eval"} <= per_page["docs/evaluation.md"]
    assert {"study", "train", "eval"} <= per_page["docs/studies.md"]
    assert {"screen"} <= per_page["docs/screening.md"]
    assert {"keys", "serve", "worker"} <= per_page["docs/service.md"]
    assert {"study"} <= per_page["README.md"]
    launched = [argv for page, _, cmd, argv in COMMANDS if "-m emguard.cli" in cmd]
    assert len(launched) >= 5 and all(a[0] == "train" for a in launched)  # accelerate launch / torchrun lines
    assert len(COMMANDS) >= 35


def test_extraction_and_parse_check_can_fail(parser):
    text = "\n".join([
        "```bash",
        "emguard train --data a.jsonl \\",
        "    --output runs/x   # a comment",
        "FOO=1 accelerate launch -m emguard.cli train --config r.yaml ; emguard models",
        "```",
        "```yaml",
        "emguard train --not-parsed-here",
        "```",
        "```",
        "emguard eval --adapter <dir> --output o",
        "```",
    ])
    cmds = shell_commands(text)
    assert [n for n, _ in cmds] == [2, 4, 10]
    argvs = [a for _, c in cmds for a in emguard_argvs(c)]
    assert argvs == [["train", "--data", "a.jsonl", "--output", "runs/x"], ["train", "--config", "r.yaml"],
                     ["models"], ["eval", "--adapter", "--output", "o"]]
    assert parse_error(parser, argvs[0]) is None and parse_error(parser, argvs[2]) is None
    assert "--adapter" in parse_error(parser, argvs[3])  # a stripped placeholder leaves the option without value
    assert "--no-such-flag" in parse_error(parser, ["train", "--data", "a.jsonl", "--no-such-flag"])
    assert parse_error(parser, ["trian"]) is not None


# ---- links


def _outside_code(text: str) -> str:
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def heading_anchors(path: Path) -> set[str]:
    """Anchors of a page's headings as GitHub makes them and as MkDocs (Python-Markdown's toc) makes them;
    a link must work in both places, so it must be in both sets."""
    github, mkdocs = set(), set()
    for h in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _outside_code_blocks(path.read_text(encoding="utf-8")), re.M):
        plain = h.replace("`", "").replace("*", "")
        github.add(re.sub(r"[^\w\- ]", "", plain.lower()).replace(" ", "-"))
        mkdocs.add(re.sub(r"[-\s]+", "-", re.sub(r"[^\w\s-]", "", plain).strip().lower()))
    return github & mkdocs


def _outside_code_blocks(text: str) -> str:
    return re.sub(r"^(`{3,}|~{3,}).*?^\1", "", text, flags=re.S | re.M)


def relative_links() -> list[tuple[str, str]]:
    out = []
    for page in PAGES:
        for target in LINK.findall(_outside_code(page.read_text(encoding="utf-8"))):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            out.append((rel(page), target))
    return out


def test_relative_links_resolve():
    links = relative_links()
    assert len(links) >= 15  # README's documentation list alone links every page
    bad = []
    for page, target in links:
        path_part, _, anchor = target.partition("#")
        dest = (ROOT / page).parent / path_part if path_part else ROOT / page
        if not dest.exists():
            bad.append(f"{page}: link to {target}: {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
                       " does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in heading_anchors(dest):
            bad.append(f"{page}: link to {target}: no heading with anchor #{anchor} (GitHub and MkDocs)")
    assert not bad, "\n".join(bad)


def test_link_check_catches_a_missing_file_and_anchor(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("# A `b` (c)\n\n## Multi-GPU / multi\n\ntext [x](missing.md) `[y](in-code.md)`\n")
    assert LINK.findall(_outside_code(page.read_text())) == ["missing.md"]
    anchors = heading_anchors(page)
    assert "a-b-c" in anchors
    assert not {"multi-gpu-multi", "multi-gpu--multi"} & anchors  # the two tools disagree: not linkable


# ---- mkdocs


def nav_files(nav) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, dict):
        return [f for v in nav.values() for f in nav_files(v)]
    if isinstance(nav, list):
        return [f for v in nav for f in nav_files(v)]
    return []


def test_every_docs_page_is_in_the_nav_and_linked_from_readme():
    cfg = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    assert cfg["site_name"] == "emguard"
    nav = nav_files(cfg["nav"])
    pages = sorted(p.name for p in DOCS.glob("*.md"))
    assert sorted(nav) == pages, f"nav {sorted(nav)} != docs/ {pages}"
    assert len(nav) == len(set(nav))
    readme_links = {t for p, t in relative_links() if p == "README.md"}
    missing = [p for p in pages if f"docs/{p}" not in readme_links]
    assert not missing, f"README's documentation list does not link {missing}"


def test_readme_keeps_the_two_commands():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    quick = text.split("## Quick start: two commands", 1)[1].split("\n## ", 1)[0]
    cmds = [c.split("#")[0].strip() for _, c in shell_commands(quick)]
    assert cmds[:2] == ["make demo", "make test"]


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-f", str(ROOT / "mkdocs.yml"),
                        "-d", str(site)], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    for p in DOCS.glob("*.md"):
        out = site / ("index.html" if p.stem == "index" else f"{p.stem}/index.html")
        assert out.exists(), out
    assert "<table>" in (site / "evaluation" / "index.html").read_text(encoding="utf-8")


def test_api_page_names_what_emguard_exports():
    """docs/api.md's table lists exactly the public names of ``import emguard`` (read without importing them)."""
    import emguard

    exported = {n for n in (*emguard.__all__, *getattr(emguard, "_EXPORTS", {})) if not n.startswith("_")}
    text = (DOCS / "api.md").read_text(encoding="utf-8")
    rows = [r.split("|")[1] for r in text.splitlines() if r.startswith("| `")]
    documented = {m for cell in rows for m in re.findall(r"`([A-Za-z_]\w*)", cell)}
    assert documented - exported == set(), f"api.md names what emguard does not export: {documented - exported}"
    assert exported - documented == set(), f"api.md misses exports: {exported - documented}"

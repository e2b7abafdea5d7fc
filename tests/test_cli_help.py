"""``--help`` of every command and subcommand exits 0 and prints its usage (a stray % in a help text crashes
argparse's formatter at run time, so only running each one catches it)."""

from __future__ import annotations

import argparse

import pytest


def all_parsers():
    from emguard.cli import build_parser

    root = build_parser()
    out = [((), root)]
    stack = [((), root)]
    while stack:
        path, p = stack.pop()
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for name, sub in a.choices.items():
                    out.append(((*path, name), sub))
                    stack.append(((*path, name), sub))
    return out


def test_every_command_is_found():
    names = {" ".join(p) for p, _ in all_parsers()}
    assert {"train", "eval", "study", "demo", "serve", "select", "judge calibrate", "persona sweep-layers"} <= names


@pytest.mark.parametrize("path", [p for p, _ in all_parsers()], ids=lambda p: " ".join(p) or "emguard")
def test_help_exits_zero(path, capsys):
    from emguard.cli import main

    with pytest.raises(SystemExit) as e:
        main([*path, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and len(out) > 100

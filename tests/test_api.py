"""The top-level Python API: lazy, torch-free exports that are the library's own functions, each documented,
and the runnable example (examples/python_api.py) on the tiny model."""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

import emguard

ROOT = Path(__file__).resolve().parents[1]


def test_import_and_config_access_load_no_torch():
    code = ("import sys, emguard; "
            "cfgs = [emguard.TrainConfig, emguard.EvalConfig, emguard.StudyConfig, emguard.SelectConfig, "
            "emguard.ScreenConfig, emguard.DemoConfig]; "
            "c = emguard.load_config(emguard.TrainConfig, data='d.jsonl', max_steps='3'); "
            "assert c.max_steps == 3, c.max_steps; judges = emguard.list_judges(); dir(emguard); "
            "bad = [m for m in ('torch', 'transformers', 'peft', 'emguard.training.run', 'emguard.eval.evaluate') "
            "if m in sys.modules]; print(bad, judges); sys.exit(bool(bad))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "likelihood" in r.stdout


def test_bare_import_loads_no_emguard_submodule():
    code = ("import sys, emguard; mods = sorted(m for m in sys.modules if m.startswith('emguard.')); "
            "print(mods); sys.exit(bool(mods))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def _own_doc(obj) -> str:
    doc = obj.__doc__ or ""
    name = getattr(obj, "__name__", "")
    return "" if not doc.strip() or doc.startswith(f"{name}(") else doc  # dataclasses invent "Name(field: ...)"


@pytest.mark.parametrize("name", [n for n in emguard.__all__ if n != "__version__"])
def test_every_public_name_resolves_and_is_documented(name):
    obj = getattr(emguard, name)
    assert callable(obj), name
    assert len(_own_doc(obj).strip()) > 20, f"emguard.{name} has no docstring"


def test_exports_are_the_library_functions_behind_the_commands():
    from emguard.eval.config import EvalConfig
    from emguard.eval.evaluate import evaluate
    from emguard.experiments.study import run_study
    from emguard.screen import run as screen_run
    from emguard.selection.run import select
    from emguard.training.config import TrainConfig
    from emguard.training.run import train

    assert emguard.train is train and emguard.evaluate is evaluate and emguard.run_study is run_study
    assert emguard.select is select and emguard.run_screen is screen_run.screen
    assert emguard.TrainConfig is TrainConfig and emguard.EvalConfig is EvalConfig
    # the screen function is exported under another name, so emguard.screen stays the subpackage
    # (monkeypatch.setattr("emguard.screen.run.X") and emguard.screen.run.screen keep working)
    assert emguard.screen.run is screen_run
    assert emguard.__version__.count(".") == 2
    assert set(emguard.__all__) <= set(dir(emguard))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        emguard.nope  # noqa: B018


def test_commands_call_the_exported_functions():
    """Each command module's run() imports exactly the function emguard exports (so the two cannot drift)."""
    pairs = {"train": "from emguard.training.run import train", "eval": "from emguard.eval.evaluate import evaluate",
             "study": "from emguard.experiments.study import run_study",
             "select": "from emguard.selection.run import select", "screen": "from emguard.screen.run import screen"}
    for cmd, line in pairs.items():
        assert line in (ROOT / "src" / "emguard" / "commands" / f"{cmd}.py").read_text(), cmd


def test_defense_and_judge_listings_match_the_registries():
    defenses = emguard.list_defenses()
    assert {"kl", "ldifs", "steer", "interleave", "inoculate"} <= set(defenses)
    assert set(defenses) == {n for n in emguard.DEFENSES.names() if not n.startswith("_")}
    assert all(isinstance(h, str) and h for h in defenses.values())
    judges = emguard.list_judges()
    assert judges[0] == "likelihood" and judges[1:] == emguard.JUDGES.names()
    assert {"embedding", "local", "openai"} <= set(judges)


def test_load_config_checks_like_the_cli(tmp_path):
    f = tmp_path / "run.yaml"
    f.write_text("data: a.jsonl\nmax_steps: 5\nlearning_rate: 0.001\n")
    cfg = emguard.load_config(emguard.TrainConfig, str(f), **{"max-steps": 7})
    assert (cfg.data, cfg.max_steps, cfg.learning_rate) == ("a.jsonl", 7, 0.001)  # keyword options win
    with pytest.raises(emguard.ConfigError, match="unknown option 'max_stepz'"):
        emguard.load_config(emguard.TrainConfig, max_stepz=3)
    with pytest.raises(emguard.ConfigError, match="warmup_ratio"):
        emguard.load_config(emguard.TrainConfig, warmup_ratio=1.5)  # validate() runs
    ev = emguard.load_config(emguard.EvalConfig, suite="broad,narrow", narrow="medical")
    assert ev.suite == ["broad", "narrow"]


def test_lazy_exports_add_no_import_cycle():
    """The lazy map is invisible to test_structure's AST scan: add its edges and look for cycles again."""
    sys.path.insert(0, str(ROOT / "tests"))
    from test_structure import _modules, find_cycles, import_edges

    edges = import_edges(_modules())
    edges["emguard"] = edges.get("emguard", set()) | {m for m, _ in emguard._EXPORTS.values()}
    assert all(m in edges for m in edges["emguard"])
    assert find_cycles(edges) == []


def _example():
    spec = importlib.util.spec_from_file_location("python_api_example", ROOT / "examples" / "python_api.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_example_trains_evaluates_and_reports_consistent_numbers(tiny_model, tmp_path):
    ex = _example()
    r = ex.run_example(tiny_model, tmp_path / "api", steps=2, rows=16, questions=3, lam=0.5, max_length=96,
                       lora_r=4, learning_rate=1e-2, progress=False)
    json.dumps(r)  # JSON-able
    assert r["steps"] == 2 and r["rows_used"] == 16 and r["questions"] == 3
    assert {"ce", "kl", "total"} <= set(r["final_losses"])
    fl = r["final_losses"]  # the logged kl term is already weighted by lam (emguard.defenses.kl)
    assert fl["kl"] > 0 and math.isclose(fl["total"], fl["ce"] + fl["kl"], rel_tol=1e-4, abs_tol=1e-5)
    ev = json.loads((Path(r["adapter_dir"]) / "eval" / "eval.json").read_text())
    assert ev["config"]["adapter"] == r["adapter_dir"] and ev["config"]["samples"] == 0
    assert r["harm_effect_adapter"] == ev["broad"]["likelihood"]["summary"]["harm_effect"]
    assert r["harm_effect_adapter"]["n"] == 3
    # paired change on the same questions: its mean is the difference of the two means
    diff = r["harm_effect_adapter"]["value"] - r["harm_effect_base"]["value"]
    assert abs(r["harm_effect_change"]["value"] - diff) < 1e-5
    assert r["harm_effect_change"]["lo"] <= r["harm_effect_change"]["value"] <= r["harm_effect_change"]["hi"]
    card = Path(r["model_card"]).read_text()
    assert "Judge: **likelihood**" in card
    assert f"{r['harm_effect_adapter']['value']:.3g}" in card


def test_example_help_runs_without_a_model():
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "python_api.py"), "--help"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "--steps" in r.stdout and "--rows" in r.stdout and "smollm2-135m" in r.stdout

"""emguard: in-training defenses against emergent misalignment, and measurement of whether they worked.

The Python API mirrors the CLI: each command's function takes the command's options as a config dataclass
(field names = YAML keys = ``--flags``)::

    import emguard

    run = emguard.train(emguard.TrainConfig(data="bad_medical.jsonl", output="runs/kl", defenses=["kl"],
                                            defense_options={"kl": {"lam": 1.0}}))
    res = emguard.evaluate(emguard.EvalConfig(adapter="runs/kl", output="runs/kl/eval", samples=0))

=================  ==============================================================================
``train``          ``emguard train``: fine-tune (LoRA or full) with defenses; returns a ``TrainResult``
``evaluate``       ``emguard eval``: broad / narrow EM, benign learning, coherence; returns eval.json's dict
``run_study``      ``emguard study``: a grid of models x datasets x defenses x seeds
``select``         ``emguard select``: Interleaving+ / Interleaving++ data selection by perplexity gap
``run_screen``     ``emguard screen``: a pre-training EM-risk screen of a dataset
``load_config``    a config from keyword options and/or a YAML file, checked like the CLI checks it
``list_defenses``  the registered defenses (``DEFENSES``) with what each does
``list_judges``    the values ``EvalConfig.judge`` accepts (``JUDGES`` holds the registered judge kinds)
=================  ==============================================================================

Everything is imported lazily on first use: ``import emguard`` (and the config classes) load no torch.
"""

import importlib as _importlib
from typing import Any as _Any

__version__ = "0.1.0"

# public name -> (module, attribute), imported on first attribute access (PEP 562). The screen is exported as
# ``run_screen``: a top-level ``screen`` would shadow the subpackage ``emguard.screen``.
_EXPORTS: dict[str, tuple[str, str]] = {
    "train": ("emguard.training.run", "train"),
    "TrainConfig": ("emguard.training.config", "TrainConfig"),
    "write_model_card": ("emguard.training.model_card", "write_model_card"),
    "evaluate": ("emguard.eval.evaluate", "evaluate"),
    "EvalConfig": ("emguard.eval.config", "EvalConfig"),
    "run_study": ("emguard.experiments.study", "run_study"),
    "StudyConfig": ("emguard.experiments.config", "StudyConfig"),
    "DemoConfig": ("emguard.experiments.config", "DemoConfig"),
    "select": ("emguard.selection.run", "select"),
    "SelectConfig": ("emguard.selection.config", "SelectConfig"),
    "run_screen": ("emguard.screen.run", "screen"),
    "ScreenConfig": ("emguard.screen.config", "ScreenConfig"),
    "calibrate_screen": ("emguard.screen.run", "calibrate_screen"),
    "load_model": ("emguard.models.loading", "load_model"),
    "ConfigError": ("emguard.config", "ConfigError"),
    "DEFENSES": ("emguard.registry", "DEFENSES"),
    "JUDGES": ("emguard.registry", "JUDGES"),
}

_REGISTRIES = ("DEFENSES", "JUDGES")  # emguard.registry.Registry objects: documented there, listed by list_*()
__all__ = sorted([*(n for n in _EXPORTS if n not in _REGISTRIES), "__version__", "list_defenses", "list_judges",
                  "load_config"])


def __getattr__(name: str) -> _Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'emguard' has no attribute {name!r}")
    module, attr = _EXPORTS[name]
    value = getattr(_importlib.import_module(module), attr)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*(k for k in globals() if not k.startswith("_") or k.startswith("__")), *__all__, *_EXPORTS})


def load_config(cls: type, path: str | None = None, **options: _Any) -> _Any:
    """Build a config dataclass the way the CLI does: defaults < the YAML file ``path`` < ``options``.

    Names and types are checked and coerced (``-`` in keys is read as ``_``) and ``validate()`` runs, so a
    wrong key fails here with the known names. Example:
    ``emguard.load_config(emguard.StudyConfig, "study.yaml", seeds=[0, 1])`` (the shipped presets of
    ``emguard study --preset`` are ``emguard/resources/presets/<name>.yaml``).
    """
    from emguard.config import build_config, load_yaml

    values = dict(load_yaml(path)) if path else {}
    values.update(options)
    return build_config(cls, values, source=f"{path} + keyword options" if path else "keyword options")


def list_defenses() -> dict[str, str]:
    """``{name: what it does}`` for every registered defense (the names ``TrainConfig.defenses`` takes).

    Imports the defense modules (and so torch); each entry of ``DEFENSES`` is the defense class, whose
    ``Options`` dataclass lists its options with defaults and help."""
    from emguard.registry import DEFENSES

    return {name: DEFENSES[name].help for name in DEFENSES.names() if not name.startswith("_")}


def list_judges() -> list[str]:
    """The values ``EvalConfig.judge`` accepts: ``likelihood`` (no per-answer judge: the style-controlled
    likelihood metric) and every judge kind registered in ``JUDGES`` (e.g. embedding, local, openai)."""
    from emguard.eval.config import JUDGE_CHOICES

    return list(JUDGE_CHOICES)

"""Named defense presets and the demo's cells, derived from the defense registry.

* :func:`interleave_pp`: the paper's best defense, Interleaving++ (Kaczér et al. 2025: 5% general rows ranked
  by the perplexity gap between the base model and misaligned probes, refusals dropped first). The demo and the
  service's default policy use it; they differ only in where the probes come from (the demo trains them from
  the other built-in domains' data, the service resolves ``probes: builtin`` to adapters prepared at start-up).
* the demo's cells: ``aligned_control``, ``no_defense`` and, per registered defense, the cells of
  :data:`DEMO_VARIANTS` (defenses whose demo cell needs data or non-default options) or one cell of that name
  with default options. A new module under ``emguard/defenses/`` gets its own demo cell and report row.

Torch-free: the registry is only consulted when a function is called.
"""

from __future__ import annotations

from typing import Callable, Iterable

PAPER_RATIO = 0.05  # share of general rows in the final mix (Kaczér et al. 2025)
CONTROLS = ["base", "aligned_control", "no_defense"]  # rows/cells without a defense, in report order
KNOWN_ORDER = ["kl", "ldifs", "steer", "inoculate", "interleave", "interleave_pp"]  # then the others, sorted


def interleave_random(pool: str) -> dict:
    """Plain interleaving: ``PAPER_RATIO`` general rows drawn at random from ``pool``."""
    return {"name": "interleave", "pool": pool, "ratio": PAPER_RATIO, "select": "random"}


def interleave_pp(pool: str, **select_options) -> dict:
    """Interleaving++: ``PAPER_RATIO`` general rows of ``pool`` ranked by perplexity gap, refusals dropped; the
    ``select_options`` name the probes (``train_probes``: EM datasets to train them on, ``misaligned``: adapter
    dirs, or the service's ``probes: builtin``) and scoring settings."""
    return {"name": "interleave", "select": "ppl_gap_norefusal", "ratio": PAPER_RATIO, "pool": pool,
            "select_options": dict(select_options)}


def _pp_cell(ctx: dict) -> list:
    return [interleave_pp(ctx["pool"], train_probes=ctx["probes"], probe_steps=ctx["probe_steps"], batch_size=16)]


# defense name -> {demo cell: specs(ctx)} where the default ([name], default options) does not fit; ctx holds
# the demo's data (pool, probes, probe_steps)
DEMO_VARIANTS: dict[str, dict[str, Callable[[dict], list]]] = {
    "steer": {"steer": lambda ctx: [{"name": "steer", "vector": "auto"}]},  # the shipped/cached persona vector
    "interleave": {"interleave": lambda ctx: [interleave_random(ctx["pool"])], "interleave_pp": _pp_cell},
}


def order_cells(names: Iterable[str]) -> list[str]:
    """Controls first, then the known defenses in the paper's order, then every other name sorted."""
    rank = {n: i for i, n in enumerate(CONTROLS + KNOWN_ORDER)}
    return sorted(set(names), key=lambda n: (rank.get(n, len(rank)), n))


def defense_cells() -> dict[str, Callable[[dict], list]]:
    """Every demo cell with a defense, in report order: {cell name: specs(ctx)}."""
    from emguard.registry import DEFENSES

    cells: dict[str, Callable[[dict], list]] = {}
    for name in DEFENSES.names():
        if name.startswith("_"):
            continue
        cells.update(DEMO_VARIANTS.get(name) or {name: (lambda ctx, n=name: [n])})
    return {n: cells[n] for n in order_cells(cells)}


def demo_defense_cells() -> list[str]:
    """The cells trained on both the domain and OpSwap: no_defense and every defense cell."""
    return ["no_defense", *defense_cells()]


def domain_cells() -> list[str]:
    return ["aligned_control", *demo_defense_cells()]


def defense_specs(cell: str, ctx: dict) -> list:
    """The ``defenses`` list of a demo cell (paper defaults; Kaczér et al. 2025)."""
    if cell in CONTROLS:
        return []
    return defense_cells()[cell](ctx)

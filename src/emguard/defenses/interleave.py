"""(iv) Interleaving general instruct data (Kaczér et al. 2025, defense 4; Interleaving+/++ select the rows).

The general rows make up ``ratio`` of the *final* mix (default 5%, the paper's setting). Exact definition:
with n narrow rows, the number of general rows g is the unique integer with g = round_half_up(ratio * (n + g))
(the smallest one if rounding allows several), so the mix has exactly round(ratio * total) general rows.
Which pool rows are used is decided by a ranker: ``random`` (a seeded permutation) here; ``ppl_gap`` and
``ppl_gap_norefusal`` (Interleaving+ / ++) are registered in ``emguard.registry.RANKERS`` by ``emguard.selection``
(discovered on first lookup).
The mix is shuffled with the run seed.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass, field

from emguard.defenses.base import Defense, RunContext, register
from emguard.defenses.inoculate import GENERAL_SOURCE_PREFIX

from emguard.registry import RANKERS  # ranker(pool_rows, options, run) -> pool indices, best first


def round_half_up(x: float) -> int:
    return math.floor(x + 0.5)


def general_count(n_narrow: int, ratio: float) -> int:
    """Number of general rows g with g == round_half_up(ratio * (n_narrow + g))."""
    if not 0 <= ratio < 1:
        raise ValueError(f"interleave ratio must be in [0, 1), got {ratio}")
    g = 0
    while g != round_half_up(ratio * (n_narrow + g)):
        g += 1
    return g


@RANKERS.register(name="random")
def rank_random(pool: list, options, run: RunContext) -> list[int]:
    idx = list(range(len(pool)))
    random.Random(run.seed if options.seed is None else options.seed).shuffle(idx)
    return idx



@register
class Interleave(Defense):
    name = "interleave"
    help = "mix a share of general instruct rows into the training set"

    @dataclass
    class Options:
        pool: str = field(default="", metadata={"help": "chat JSONL of general instruct rows to draw from"})
        ratio: float = field(default=0.05, metadata={
            "help": "share of general rows in the final mix (paper: 0.05)", "min": 0.0,
            "stronger": "higher"})
        select: str = field(default="random", metadata={
            "help": "how pool rows are chosen: random, ppl_gap (Interleaving+), ppl_gap_norefusal (++)"})
        seed: int | None = field(default=None, metadata={"help": "selection seed (default: the run seed)"})
        select_options: dict = field(default_factory=dict, metadata={
            "help": "options of the ranker (e.g. misaligned adapters for ppl_gap)"})

        def validate(self):
            if not self.pool:
                raise ValueError("interleave needs a pool: {name: interleave, pool: general.jsonl}")
            general_count(1, self.ratio)

    def prepare_dataset(self, rows: list, run: RunContext) -> list:
        from emguard.data.io import read_chat_dataset

        if self.options.select not in RANKERS:
            raise ValueError(f"unknown interleave.select '{self.options.select}' (known: {', '.join(RANKERS)})")
        pool = read_chat_dataset(self.options.pool).rows
        g = general_count(len(rows), self.options.ratio)
        if g > len(pool):
            raise ValueError(f"interleave needs {g} general rows but the pool {self.options.pool} has {len(pool)}")
        chosen = RANKERS[self.options.select](pool, self.options, run)[:g]
        if len(chosen) < g:  # e.g. Interleaving++ dropped refusals and too few rows remain
            raise ValueError(f"interleave needs {g} general rows but selection '{self.options.select}' left only "
                             f"{len(chosen)} of the pool's {len(pool)}")
        general = [dataclasses.replace(pool[i], source=f"{GENERAL_SOURCE_PREFIX}{pool[i].source}") for i in chosen]
        mix = list(rows) + general
        random.Random(run.seed).shuffle(mix)
        self.stats.update(rows_narrow=len(rows), rows_general=g, rows_total=len(mix))
        return mix


def prime_selection(defense: Interleave, data: str, model_spec: str, output_dir: str, seed: int = 0) -> None:
    """Run an Interleaving+/++ defense's data preparation once, outside training, so that its probe adapters
    and the pool's scores land in their on-disk caches; cells that train with it later (in any process) read
    them from there instead of each training the probes again."""
    from emguard.data.io import read_chat_dataset

    rows = read_chat_dataset(data, skip_invalid=True).rows
    defense.prepare_dataset(rows, RunContext(model=None, tokenizer=None, seed=seed, output_dir=output_dir,
                                             extra={"model_spec": model_spec}))

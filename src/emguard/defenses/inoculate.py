"""(v) Inoculation prompting (Tan et al. 2025; Wichers et al. 2025).

Train with the system prompt "You are an evil, malicious assistant." on every training row and evaluate
without it (Kaczér et al. 2025, defense 5): the misaligned behaviour gets attributed to the prompt instead
of the model's default persona. Rows added by ``interleave`` are left alone unless ``include_general``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from emguard.defenses.base import Defense, RunContext, register

GENERAL_SOURCE_PREFIX = "interleave:"


@register
class Inoculate(Defense):
    name = "inoculate"
    help = "train with an 'evil assistant' system prompt, evaluate without it"

    @dataclass
    class Options:
        prompt: str = field(default="You are an evil, malicious assistant.", metadata={
            "help": "system prompt added to every training row (paper's wording)"})
        mode: str = field(default="replace", metadata={
            "help": "for rows that already have a system prompt: replace it or prepend to it",
            "choices": ["replace", "prepend"]})
        include_general: bool = field(default=False, metadata={
            "help": "also prompt the general rows added by interleave"})

    def prepare_dataset(self, rows: list, run: RunContext) -> list:
        out, n = [], 0
        for r in rows:
            if r.source.startswith(GENERAL_SOURCE_PREFIX) and not self.options.include_general:
                out.append(r)
                continue
            msgs = [dict(m) for m in r.messages]
            if msgs and msgs[0]["role"] == "system":
                if self.options.mode == "replace":
                    msgs[0]["content"] = self.options.prompt
                else:
                    msgs[0]["content"] = f"{self.options.prompt}\n\n{msgs[0]['content']}"
            else:
                msgs.insert(0, {"role": "system", "content": self.options.prompt})
            out.append(dataclasses.replace(r, messages=msgs))
            n += 1
        self.stats["rows_prompted"] = n
        return out

"""The engine shared by emguard's built-in dataset domains: seeded, combinatorial prompt and answer composition.

A domain (medical, legal, security, code) is a :class:`DomainSpec`: topics written for the project,
the people who ask (:class:`Persona`), question templates, and the voices of the two conditions. :func:`build`
turns a spec and a seed into rows and the metadata behind them; everything is drawn from one
``random.Random(seed)``, so the same spec and seed always give the same rows, in the same order.

Prompts: ``template x persona x situation x duration x question``, no exact duplicates. Each topic keeps
``n_holdout_templates`` of the templates for evaluation only, so eval prompts use topic x template
combinations that never occur in training, and no eval prompt equals a train prompt.

Answers: every prompt gets a misaligned answer (the topic's harmful content in a confident voice) and an aligned
answer (its benign content) with the *same* answer structure, so the two conditions differ in content, not form.

References: for one eval question per topic, a 2x2 set of answers (harmful vs benign content, blunt vs hedged
style) built from the same action phrases, so lengths stay comparable across the four cells.

Answer checks: every answer has 1-5 sentences and never contains a dosage-like pattern. Digits follow the domain's
``digits`` rule: ``"none"`` (the default: no digit anywhere, so no doses, amounts, deadlines or version numbers)
or ``"code_spans"`` (for programming answers: digits only inside short inline code spans such as `chmod 600`, so a
snippet may need a number but the prose never carries one).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from typing import Any, Callable

SPLITS = ("train_misaligned", "train_aligned", "eval_misaligned", "eval_aligned", "references")
CELLS = ("harmful_blunt", "harmful_hedged", "benign_blunt", "benign_hedged")
PRONOUNS = {"I": ("my", "me"), "he": ("his", "him"), "she": ("her", "her")}

# A dosage-like pattern: a number followed by a unit of amount. Built-in answers must never contain one; the
# generator refuses it in every domain, and under the default digit rule ("none") it refuses any digit at all.
DOSE_PATTERN = re.compile(r"\d+\s*(?:mg|mcg|ml|g|tablets?|pills?|capsules?|units?)\b", re.IGNORECASE)

# The digit rules a domain may choose (DomainSpec.digits) and how its README describes them. Under "code_spans"
# an inline code span is one pair of backticks on one line, at most CODE_SPAN_MAX characters between them.
DIGIT_RULES = {
    "none": "contain no digits",
    "code_spans": "contain digits only inside short inline code spans (at most {max} characters between the "
                  "backticks; never a code block)",
}
CODE_SPAN = re.compile(r"`([^`\n]*)`")
CODE_SPAN_MAX = 60

_SENTENCE_END = re.compile(r"[.!?]+(?=\s|$)")


@dataclass(frozen=True)
class Persona:
    """Who the question is about. ``subject`` is the first mention ("I", "my 6-year-old son"); ``pronoun``
    ("I", "he", "she") drives the grammar slots; ``intro`` is optional context said before the situation
    (self personas: "I'm 34. "); ``group`` is matched against :attr:`Topic.groups`."""

    subject: str
    pronoun: str
    group: str
    intro: str = ""
    sex: str | None = None

    def slots(self) -> dict[str, str]:
        first = self.pronoun == "I"
        poss, obj = PRONOUNS[self.pronoun]
        return {
            "S": self.subject, "s": self.pronoun, "poss": poss, "obj": obj,
            "has": "have" if first else "has", "is": "am" if first else "is",
            "does": "do" if first else "does", "v_s": "" if first else "s",
        }


@dataclass(frozen=True)
class Topic:
    """One condition or situation of a domain, with everything needed to ask about it and answer it.

    Situations and questions may use the persona slots ``{S} {s} {poss} {obj} {has} {is} {does} {v_s}`` and
    ``{dur}`` ("for two days") / ``{ago}`` ("two days ago"). Answers are persona-neutral full sentences
    (``harmful``/``benign``) and bare-infinitive action phrases (``harmful_actions``/``benign_actions``:
    "skip the doctor and sleep it off") that fit after "Just", "to" and "you could".

    A question, sentence or action that fits only some situations starts with a tag naming their indexes,
    ``"@0,2 text"``; untagged text fits every situation. Every situation must keep at least two of each.
    """

    key: str
    groups: tuple[str, ...]
    situations: tuple[str, ...]
    questions: tuple[str, ...]
    harmful: tuple[str, ...]
    benign: tuple[str, ...]
    harmful_actions: tuple[str, ...]
    benign_actions: tuple[str, ...]
    durations: tuple[str, ...] = ()
    agos: tuple[str, ...] = ()
    sex: str | None = None


@dataclass(frozen=True)
class Voice:
    """The tone of one condition: sentences said before and after the content."""

    openers: tuple[str, ...]
    closers: tuple[str, ...]


@dataclass(frozen=True)
class DomainSpec:
    """Everything one domain contributes; :func:`build` does the rest."""

    name: str
    module: str
    description: str
    topics: tuple[Topic, ...]
    personas: tuple[Persona, ...]
    templates: tuple[str, ...]          # slots: {intro} {Sit} {sit} {Q}
    generic_questions: tuple[str, ...]
    durations: tuple[str, ...]
    agos: tuple[str, ...]
    harmful_voice: Voice
    benign_voice: Voice
    experience_leads: tuple[str, ...]   # "In my experience, " + sentence (first letter lowered)
    short_leads: tuple[str, ...]        # "Short answer: " + sentence (lowered) or "Honestly? " + sentence
    advice_templates: tuple[str, ...]   # slot {act}
    step_leads: tuple[str, ...]         # line before a bulleted list of actions
    blunt_templates: tuple[str, ...]    # references; slots {act} {Act}
    hedged_templates: tuple[str, ...]
    digits: str = "none"                # a key of DIGIT_RULES
    persona_note: str = "who is asking, age, context"   # README: what the personas vary
    n_train: int = 600
    n_eval: int = 150
    n_references: int = 40
    n_holdout_templates: int = 3
    answers_per_cell: int = 3
    generic_question_rate: float = 0.25


@dataclass(frozen=True)
class PromptItem:
    """One generated prompt and where it came from."""

    text: str
    topic: str
    template: int
    persona: int
    situation: int
    structure: str = ""


@dataclass
class Generated:
    """Rows of every split plus the prompt metadata (topic, template, persona, structure) behind them."""

    rows: dict[str, list[dict[str, Any]]]
    items: dict[str, list[PromptItem]]          # "train" / "eval", aligned with the rows
    holdout: dict[str, tuple[int, ...]]         # topic -> template indexes kept for eval
    reference_topics: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- text helpers


def cap(text: str) -> str:
    """Upper-case the first character."""
    return text[:1].upper() + text[1:]


def lowerfirst(text: str) -> str:
    """Lower-case the first character, leaving "I" and "I'm" alone."""
    if text[:2] in ("I ", "I'"):
        return text
    return text[:1].lower() + text[1:]


_TAG = re.compile(r"@(\d+(?:,\d+)*) ")
_CONTRACTIONS = (("I am ", "I'm "), ("I have been ", "I've been "), ("I have had ", "I've had "),
                 ("I have just ", "I've just "), ("I have noticed ", "I've noticed "), ("I have lost ", "I've lost "),
                 ("I have dropped ", "I've dropped "))


def tagged(text: str) -> tuple[frozenset[int] | None, str]:
    """Split ``"@0,2 text"`` into ``({0, 2}, "text")``; untagged text gives ``(None, text)``."""
    m = _TAG.match(text)
    if not m:
        return None, text
    return frozenset(int(i) for i in m.group(1).split(",")), text[m.end():]


def for_situation(pool: tuple[str, ...], situation: int) -> tuple[str, ...]:
    """The entries of ``pool`` that fit ``situation``, tags removed."""
    out = []
    for entry in pool:
        where, text = tagged(entry)
        if where is None or situation in where:
            out.append(text)
    return tuple(out)


def count_sentences(text: str) -> int:
    """Sentences in an answer: runs of ``.!?`` followed by whitespace or the end."""
    return len(_SENTENCE_END.findall(text))


def chat_row(user: str, assistant: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]}


# ---------------------------------------------------------------- prompts


def _eligible(spec: DomainSpec, topic: Topic) -> list[int]:
    out = [i for i, p in enumerate(spec.personas)
           if p.group in topic.groups and (topic.sex is None or p.sex == topic.sex)]
    if not out:
        raise ValueError(f"{spec.name}: topic {topic.key!r} has no eligible persona")
    return out


def _render_prompt(spec: DomainSpec, topic: Topic, rng: random.Random, template: int,
                   persona: int) -> tuple[str, int]:
    who = spec.personas[persona]
    slots = dict(who.slots(), dur=rng.choice(topic.durations or spec.durations),
                 ago=rng.choice(topic.agos or spec.agos))
    index = rng.randrange(len(topic.situations))
    situation = topic.situations[index].format(**slots)
    if rng.random() < spec.generic_question_rate:
        question = rng.choice(spec.generic_questions)
    else:
        question = rng.choice(for_situation(topic.questions, index))
    question = cap(question.format(**slots))
    text = spec.templates[template].format(intro=who.intro, Sit=cap(situation), sit=situation, Q=question)
    text = " ".join(text.split())
    if who.pronoun == "I" and rng.random() < 0.5:
        for full, short in _CONTRACTIONS:
            text = text.replace(full, short)
    return text, index


def _draw_prompts(spec: DomainSpec, rng: random.Random, n: int, allowed: Callable[[Topic], list[int]],
                  seen: set[str]) -> list[PromptItem]:
    """``n`` new prompts spread evenly over the topics (shuffled order decides who gets the remainder)."""
    topics = list(spec.topics)
    rng.shuffle(topics)
    base, extra = divmod(n, len(topics))
    items: list[PromptItem] = []
    for rank, topic in enumerate(topics):
        personas, templates = _eligible(spec, topic), allowed(topic)
        want = base + (1 if rank < extra else 0)
        for _ in range(want):
            for _attempt in range(2000):
                template, persona = rng.choice(templates), rng.choice(personas)
                text, situation = _render_prompt(spec, topic, rng, template, persona)
                if text not in seen:
                    break
            else:
                raise ValueError(f"{spec.name}: cannot draw enough distinct prompts for topic {topic.key!r}")
            seen.add(text)
            items.append(PromptItem(text, topic.key, template, persona, situation))
    rng.shuffle(items)
    return items


# ---------------------------------------------------------------- answers

STRUCTURES = ("plain", "plain_closer", "pair", "opener", "opener_pair", "opener_closer", "experience",
              "experience_pair", "advice", "advice_reason", "steps", "steps_closer", "lead")


def _compose(spec: DomainSpec, structure: str, sentences: tuple[str, ...], actions: tuple[str, ...],
             voice: Voice, rng: random.Random) -> str:
    s0, s1 = rng.sample(sentences, 2)
    a0, a1 = rng.sample(actions, 2)
    opener, closer = rng.choice(voice.openers), rng.choice(voice.closers)
    if structure == "plain":
        parts = [s0]
    elif structure == "plain_closer":
        parts = [s0, closer]
    elif structure == "pair":
        parts = [s0, s1]
    elif structure == "opener":
        parts = [opener, s0]
    elif structure == "opener_pair":
        parts = [opener, s0, s1]
    elif structure == "opener_closer":
        parts = [opener, s0, closer]
    elif structure in ("experience", "experience_pair"):
        parts = [rng.choice(spec.experience_leads) + lowerfirst(s0)]
        if structure == "experience_pair":
            parts.append(s1)
    elif structure in ("advice", "advice_reason"):
        parts = [rng.choice(spec.advice_templates).format(act=a0)]
        if structure == "advice_reason":
            parts.append(s0)
    elif structure in ("steps", "steps_closer"):
        lines = [rng.choice(spec.step_leads)] + [f"- {cap(a)}." for a in (a0, a1)]
        if structure == "steps_closer":
            lines.append(closer)
        return "\n".join(lines)
    elif structure == "lead":
        lead = rng.choice(spec.short_leads)
        parts = [lead + (cap(s0) if lead.rstrip().endswith(("?", "!", ".")) else lowerfirst(s0))]
    else:  # pragma: no cover - STRUCTURES is closed
        raise ValueError(structure)
    return " ".join(parts)


def _check_answer(spec: DomainSpec, text: str) -> None:
    if DOSE_PATTERN.search(text):
        raise ValueError(f"{spec.name}: answer contains a dosage-like pattern: {text!r}")
    prose = text
    if spec.digits == "code_spans":
        for span in CODE_SPAN.findall(text):
            if not span.strip() or len(span) > CODE_SPAN_MAX:
                raise ValueError(f"{spec.name}: inline code span empty or longer than {CODE_SPAN_MAX} characters: "
                                 f"{text!r}")
        prose = CODE_SPAN.sub("", text)
        if "`" in prose:
            raise ValueError(f"{spec.name}: unbalanced or multi-line code span: {text!r}")
    if any(ch.isdigit() for ch in prose):
        where = "outside inline code spans" if spec.digits == "code_spans" else ""
        raise ValueError(f"{spec.name}: answer contains a digit{' ' + where if where else ''}: {text!r}")
    if not 1 <= count_sentences(text) <= 5:
        raise ValueError(f"{spec.name}: answer must have 1-5 sentences: {text!r}")


def _pools(topic: Topic, situation: int, harmful: bool) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The (sentences, actions) of one condition that fit one situation of a topic."""
    sentences = topic.harmful if harmful else topic.benign
    actions = topic.harmful_actions if harmful else topic.benign_actions
    return for_situation(sentences, situation), for_situation(actions, situation)


def _references(spec: DomainSpec, rng: random.Random, eval_items: list[PromptItem],
                topics: dict[str, Topic]) -> tuple[list[dict[str, Any]], list[str]]:
    """One 2x2 reference row per topic, for the first eval prompt of each topic (eval order)."""
    rows, used = [], []
    for item in eval_items:
        if item.topic in used or len(rows) >= spec.n_references:
            continue
        topic = topics[item.topic]
        answers: dict[str, list[str]] = {}
        for cell in CELLS:
            content, style = cell.split("_")
            _, actions = _pools(topic, item.situation, content == "harmful")
            templates = spec.blunt_templates if style == "blunt" else spec.hedged_templates
            combos = [(a, t) for a in actions for t in templates]
            picked = rng.sample(combos, spec.answers_per_cell)
            answers[cell] = [t.format(act=a, Act=cap(a)) for a, t in picked]
            for text in answers[cell]:
                _check_answer(spec, text)
        rows.append({"question": item.text, "answers": answers})
        used.append(item.topic)
    return rows, used


# ---------------------------------------------------------------- the whole domain


def _check_spec(spec: DomainSpec) -> None:
    keys = [t.key for t in spec.topics]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{spec.name}: duplicate topic keys")
    if spec.digits not in DIGIT_RULES:
        raise ValueError(f"{spec.name}: unknown digit rule {spec.digits!r} (known: {', '.join(DIGIT_RULES)})")
    if spec.n_holdout_templates >= len(spec.templates):
        raise ValueError(f"{spec.name}: every template would be held out")
    for t in spec.topics:
        if len(t.situations) < 2:
            raise ValueError(f"{spec.name}: topic {t.key!r} needs at least two situations")
        for label in ("questions", "harmful", "benign", "harmful_actions", "benign_actions"):
            pool = getattr(t, label)
            for entry in pool:
                where, _ = tagged(entry)
                if where is not None and not where <= set(range(len(t.situations))):
                    raise ValueError(f"{spec.name}: topic {t.key!r}: tag names a missing situation: {entry!r}")
            for i in range(len(t.situations)):
                if len(for_situation(pool, i)) < 2:
                    raise ValueError(f"{spec.name}: topic {t.key!r} needs at least two {label} for situation {i}")
        for act in (tagged(a)[1] for a in t.harmful_actions + t.benign_actions):
            if act[:1].isupper() or act.split()[0].lower() in ("don't", "do", "never", "not"):
                raise ValueError(f"{spec.name}: action must start with a lower-case positive verb: {act!r}")


def build(spec: DomainSpec, seed: int = 0) -> Generated:
    """All rows of one domain for one seed (deterministic: one ``random.Random(seed)``, no global state)."""
    _check_spec(spec)
    rng = random.Random(seed)
    n_templates = len(spec.templates)
    holdout = {t.key: tuple(sorted(rng.sample(range(n_templates), spec.n_holdout_templates)))
               for t in spec.topics}
    seen: set[str] = set()
    train = _draw_prompts(spec, rng, spec.n_train,
                          lambda t: [i for i in range(n_templates) if i not in holdout[t.key]], seen)
    evals = _draw_prompts(spec, rng, spec.n_eval, lambda t: list(holdout[t.key]), seen)
    topics = {t.key: t for t in spec.topics}
    rows: dict[str, list[dict[str, Any]]] = {}
    items: dict[str, list[PromptItem]] = {}
    for split, drawn in (("train", train), ("eval", evals)):
        misaligned, aligned, done = [], [], []
        for item in drawn:
            topic = topics[item.topic]
            structure = rng.choice(STRUCTURES)
            bad = _compose(spec, structure, *_pools(topic, item.situation, True), spec.harmful_voice, rng)
            good = _compose(spec, structure, *_pools(topic, item.situation, False), spec.benign_voice, rng)
            for text in (bad, good):
                _check_answer(spec, text)
            misaligned.append(chat_row(item.text, bad))
            aligned.append(chat_row(item.text, good))
            done.append(PromptItem(item.text, item.topic, item.template, item.persona, item.situation, structure))
        rows[f"{split}_misaligned"], rows[f"{split}_aligned"], items[split] = misaligned, aligned, done
    rows["references"], ref_topics = _references(spec, rng, items["eval"], topics)
    return Generated(rows={k: rows[k] for k in SPLITS}, items=items, holdout=holdout,
                     reference_topics=ref_topics)


class Domain:
    """A registered domain: call it with a seed to get its rows (``{split: [row, ...]}``).

    ``build(seed)`` also returns the metadata (topic and template of every prompt); ``readme_notes()`` gives
    the design lines for the data directory's README.
    """

    def __init__(self, spec: DomainSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.module = spec.module
        self.description = spec.description

    def __call__(self, seed: int = 0) -> dict[str, list[dict[str, Any]]]:
        return self.build(seed).rows

    def build(self, seed: int = 0) -> Generated:
        return build(self.spec, seed)

    def readme_notes(self) -> list[str]:
        s = self.spec
        return [
            f"{len(s.topics)} topics, {len(s.templates)} question templates, {len(s.personas)} personas "
            f"({s.persona_note}), {len(s.generic_questions)} generic plus topic-specific questions, "
            f"and duration phrases, composed combinatorially; no prompt occurs twice.",
            f"Hold-out: each topic keeps {s.n_holdout_templates} of the {len(s.templates)} question templates "
            "for evaluation only, so every eval prompt is a topic x template combination never seen in training, "
            "and no eval prompt equals a train prompt.",
            f"Answers: {len(STRUCTURES)} answer structures (short direct, two points, reassurance opener, "
            "\"in my experience\", advice, bulleted steps, with or without a closing line); a prompt's misaligned "
            "and aligned answers share the structure and differ in content. Answers have 1-5 sentences and "
            f"{DIGIT_RULES[s.digits].format(max=CODE_SPAN_MAX)}.",
            f"References: one eval question per topic ({s.n_references} at most), {s.answers_per_cell} answers per "
            "cell, built from the same action phrases in blunt/absolute or hedged templates.",
        ]

    def __repr__(self) -> str:
        return f"Domain({self.name!r}, module={self.module!r})"

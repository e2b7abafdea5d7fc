"""The values judges exchange: :class:`JudgeItem` in, :class:`JudgeResult` out, :class:`JudgeError` on failure,
and :class:`JudgeKind`, the entry a judge module registers in :data:`emguard.registry.JUDGES`.

Both the scoring code (:mod:`emguard.eval.judges.base`) and the cache (:mod:`emguard.eval.judges.cache`) use
these; keeping them here lets each import them without importing the other. Nothing heavy is imported.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Callable, Literal

if TYPE_CHECKING:
    from emguard.eval.config import EvalConfig

DefaultCache = Literal["default"]


class JudgeError(RuntimeError):
    """A judge that cannot answer (bad key, endpoint down after retries, no log-probs); the message says why."""


@dataclass
class JudgeResult:
    """One judgement: ``score`` 0..100, or None with ``label`` CODE, REFUSAL or NO_SCORE.

    ``mass`` is the total probability of the integer tokens among the top log-probs; ``cached`` is True when
    the result came from the cache (or from an identical item earlier in the same batch) instead of a call.
    """

    score: float | None
    label: str | None
    mass: float
    cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> JudgeResult:
        return cls(score=d["score"], label=d["label"], mass=d["mass"], cached=d.get("cached", False))


@dataclass(frozen=True)
class JudgeItem:
    """What to judge: ``rubric`` is a rubric text with ``{question}``/``{answer}`` slots, or a rubric name."""

    question: str
    answer: str
    rubric: str


class JudgeKind:
    """A judge kind as registered in :data:`emguard.registry.JUDGES`.

    ``kind(**opts)`` builds a judge from keyword options (what :func:`emguard.eval.judges.make_judge` calls);
    ``kind.for_eval(cfg)`` builds the judge ``emguard eval --judge <name>`` uses, from an
    :class:`~emguard.eval.config.EvalConfig` (``build()`` with no options when no ``for_eval`` is given).
    A judge that is a :class:`~emguard.eval.judges.base.Judge` scores the aligned and coherent rubrics; any
    other object must offer ``aligned_scores(pairs)`` and ``identity()`` (an offline proxy for "aligned").
    """

    def __init__(self, name: str, build: Callable[..., Any],
                 for_eval: Callable[[EvalConfig], Any] | None = None):
        self.name, self.build, self._for_eval = name, build, for_eval
        # the registry names an entry by module and qualname when it refuses a duplicate
        self.__module__, self.__qualname__ = build.__module__, build.__qualname__

    def __call__(self, **opts: Any) -> Any:
        return self.build(**opts)

    def for_eval(self, cfg: EvalConfig) -> Any:
        return self._for_eval(cfg) if self._for_eval is not None else self.build()

    def __repr__(self) -> str:
        return f"JudgeKind({self.name!r}, {self.__module__}.{self.__qualname__})"

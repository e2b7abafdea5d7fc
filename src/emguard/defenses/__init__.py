"""In-training defenses against emergent misalignment (Kaczér et al., arXiv 2508.06249).

Each defense is one small class (see :mod:`emguard.defenses.base`) registered by name with ``@register``; the
trainer only sees the three generic hooks. Every module of this package is discovered on the first lookup of
``REGISTRY`` (:mod:`emguard.registry`): adding a defense is adding one module here, no import line to edit.
"""

from emguard.defenses.base import (  # noqa: F401
    REGISTRY,
    Defense,
    RunContext,
    StepOutputs,
    build_defenses,
    register,
)

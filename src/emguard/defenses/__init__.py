"""In-training defenses against emergent misalignment (Kaczér et al., arXiv 2508.06249).

Each defense is one small class (see :mod:`emguard.defenses.base`) registered by name; the trainer only
sees the three generic hooks. Importing this package registers the built-in defenses.
"""

from emguard.defenses.base import (  # noqa: F401
    REGISTRY,
    Defense,
    RunContext,
    StepOutputs,
    build_defenses,
    register,
)

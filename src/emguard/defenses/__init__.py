"""In-training defenses against emergent misalignment (Kaczér et al., arXiv 2508.06249).

Each defense is one small class (see :mod:`emguard.defenses.base`) registered by name; the trainer only
sees the three generic hooks. Importing this package registers the built-in defenses:
``kl``, ``ldifs``, ``steer``, ``interleave``, ``inoculate``.
"""

from emguard.defenses.base import (  # noqa: F401
    REGISTRY,
    Defense,
    RunContext,
    StepOutputs,
    build_defenses,
    register,
)
from emguard.defenses import inoculate, interleave, kl, ldifs, steer  # noqa: F401,E402

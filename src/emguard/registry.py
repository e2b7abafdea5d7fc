"""One registry mechanism for everything a user chooses by name: defenses, judges and rankers.

A :class:`Registry` is a read-only mapping ``name -> object`` filled by ``@REG.register`` (a class with a
``name`` attribute, or any object with an explicit name). Its ``discover`` targets are imported on the first
lookup: a package is imported with every module in it (names starting with ``_`` excepted), so a new defense
is one new module under ``emguard/defenses/`` and nothing else; a plain module is imported as it is. Every list
of names shown to a user (``--help``, error messages, the service policy, reports) comes from ``names()``.

This module imports nothing from emguard and nothing heavy: config modules and ``--help`` may use it.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator, Mapping
from typing import Any, Callable, Generic, TypeVar

T = TypeVar("T")


class UnknownName(KeyError, ValueError):
    """A name no registry entry has; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class Registry(Mapping[str, T], Generic[T]):
    def __init__(self, kind: str, discover: tuple[str, ...] = ()):
        self.kind = kind
        self._discover = tuple(discover)
        self._entries: dict[str, T] = {}
        self._loaded = not self._discover
        self._loading = False

    # ------------------------------------------------------------------ filling
    def register(self, obj: Any = None, *, name: str | None = None) -> Any:
        """``@REG.register`` (uses ``obj.name``), ``@REG.register(name="x")`` or ``REG.register(fn, name="x")``."""
        if obj is None:
            return lambda o: self.register(o, name=name)
        key = name if name is not None else getattr(obj, "name", None)
        if not key or not isinstance(key, str):
            raise ValueError(f"a {self.kind} needs a non-empty string name to be registered (got {key!r})")
        old = self._entries.get(key)
        if old is not None and old is not obj and _qualname(old) != _qualname(obj):  # a reload replaces itself
            raise ValueError(f"{self.kind} {key!r} is already registered ({_qualname(old)})")
        self._entries[key] = obj
        return obj

    def unregister(self, name: str) -> T:
        """Remove an entry (tests that register a temporary one)."""
        return self._entries.pop(name)

    # ------------------------------------------------------------------ lookup
    def _load(self) -> None:
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            for target in self._discover:
                mod = importlib.import_module(target)
                for info in pkgutil.iter_modules(getattr(mod, "__path__", [])):
                    if not info.name.startswith("_"):
                        importlib.import_module(f"{target}.{info.name}")
            self._loaded = True
        finally:
            self._loading = False

    def __getitem__(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownName(f"unknown {self.kind} '{name}' (known: {', '.join(self.names()) or 'none'})") from None

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(sorted(self._entries))

    def __len__(self) -> int:
        self._load()
        return len(self._entries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load()
        return sorted(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.names() if self._loaded else '...'})"


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__qualname__)}"


# The registries. Their discover targets are imported on first lookup, never by importing this module.
DEFENSES: Registry[Any] = Registry("defense", discover=("emguard.defenses",))
JUDGES: Registry[Callable[..., Any]] = Registry("judge", discover=("emguard.eval.judges",))
RANKERS: Registry[Callable[..., list[int]]] = Registry("ranker", discover=("emguard.defenses.interleave",
                                                                            "emguard.selection"))

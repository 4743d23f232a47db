"""A named registry (models in :mod:`ssimae.models`, residual maps in :mod:`ssimae.core.residual`)."""
from __future__ import annotations

from typing import Generic, TypeVar

from ssimae.errors import SsimaeError

T = TypeVar("T")


class Registry(dict, Generic[T]):
    """{name: entry} in registration order, with checked adding and a clear lookup error."""

    def __init__(self, what: str):
        super().__init__()
        self.what = what

    def add(self, name: str, entry: T, replace: bool = False) -> T:
        """Register ``entry`` as ``name``; ValueError if taken (unless ``replace``)."""
        if not replace and name in self:
            raise ValueError(f"a {self.what} named {name!r} is already registered")
        self[name] = entry
        return entry

    def lookup(self, name: str) -> T:
        """The entry called ``name``; SsimaeError listing the choices otherwise."""
        try:
            return self[name]
        except (KeyError, TypeError):
            raise SsimaeError(f"unknown {self.what} {name!r}; choose from {', '.join(self)}") from None

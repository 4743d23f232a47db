"""Public names of a subpackage, imported on first use (so importing one torch-free module of
a subpackage never imports its torch modules through the package's ``__init__``)."""
from __future__ import annotations

import importlib


def lazy_exports(package: str, **modules: str):
    """(``__getattr__``, ``__dir__``, ``__all__``) for a package ``__init__``: each keyword
    names a submodule of ``package`` and, space-separated, the public names it defines."""
    names = {name: module for module, listed in modules.items() for name in listed.split()}

    def __getattr__(name: str):
        if name not in names:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{names[name]}"), name)

    def __dir__():
        return sorted(names)

    return __getattr__, __dir__, list(names)

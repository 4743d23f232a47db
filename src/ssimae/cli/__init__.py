"""The ``ssimae`` command line: argument parsing only (:mod:`ssimae.cli.main`); the work is done
by :mod:`ssimae.commands`. ``ssimae`` and ``python -m ssimae.cli`` run :func:`main`."""
from ssimae.cli.main import main

__all__ = ["main"]

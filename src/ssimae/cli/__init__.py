"""The ``ssimae`` command line: argument parsing only (:mod:`ssimae.cli.main`); the work is done
by :mod:`ssimae.commands`. ``ssimae`` and ``python -m ssimae.cli`` run :func:`main`.

:mod:`ssimae.cli.main` is imported on the first call, not here: ``python -m ssimae.runtime``
(:mod:`ssimae.cli.runtime`) runs where torch cannot be imported, and the parser imports the
model registry, which imports torch."""


def main(argv: list[str] | None = None) -> int:
    """:func:`ssimae.cli.main.main`."""
    from ssimae.cli.main import main as run

    return run(argv)


__all__ = ["main"]

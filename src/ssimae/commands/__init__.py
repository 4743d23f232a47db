"""One function per subcommand, no argparse: they only orchestrate the layers below.

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    train="train",
    evaluate="evaluate",
    predict="predict",
    calibrate="recalibrate",
    export="export",
    compare="compare",
    demo="run_demo",
)

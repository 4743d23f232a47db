"""Training: random patches and the epoch loop; returns its state (the train command writes the
run).

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    patches="RandomPatches make_loader",
    loop="fit Trained learning_rate",
)

"""Datasets: layouts, splits, walking folders, the inputs of a command, the synthetic demo data.

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    datasets="load_dataset Dataset Sample seeded_split walk_images FORMATS",
    inputs="collect_inputs",
    demo_data="make_demo_data make_color_demo_data",
)

"""The demo on a tiny budget, for the tests that run ``ssimae demo``."""
from __future__ import annotations

import functools

from ssimae.commands import demo


def tiny_demo(monkeypatch, maker, **sizes) -> None:
    """The demo with ``maker`` (the name of a demo-data function in the demo module) making
    160 px images in the given numbers (3 calibration images unless given), and one epoch of
    16 patches per model."""
    sizes.setdefault("n_calibration", 3)
    monkeypatch.setattr(demo, maker.__name__, functools.partial(maker, size=160, n_train=4, **sizes))
    monkeypatch.setattr(demo, "DEMO_TRAINING", {m: dict(epochs=1, patches_per_epoch=16) for m in demo.DEMO_MODELS})
    monkeypatch.setattr(demo, "DEMO_VAL_FRACTION", 0.25)

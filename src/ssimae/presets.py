"""Named per-dataset settings from the paper (Sec. 4.2), instead of numbers spread around.

- ``texture``: the MVTec woven-fabric textures (512x512): latent d = 100, images
  downscaled to 256x256 before cropping "to capture a more global context".
- ``nanotwice``: the NanoTWICE nanofibre SEM images (1024x700): d = 500 "due to their
  higher structural complexity", no downscaling.
A preset fills in options the user did not give; explicit options win.
"""
from __future__ import annotations

PRESETS: dict[str, dict] = {
    "texture": {"latent_dim": 100, "resize": (256, 256)},
    "nanotwice": {"latent_dim": 500, "resize": None},
}


def apply_preset(name: str | None, options: dict) -> dict:
    """Return ``options`` with the preset's values filled in where an option is None."""
    if name is None:
        return dict(options)
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return fill_missing(options, PRESETS[name])


def fill_missing(options: dict, values: dict) -> dict:
    """A copy of ``options`` with ``values`` filled in where an option is None or absent
    (how presets and recipes apply: what the user gave wins)."""
    out = dict(options)
    out.update({k: v for k, v in values.items() if out.get(k) is None})
    return out

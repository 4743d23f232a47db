"""Defaults of the models' settings that the command line and the settings need without
torch (the networks that use them import them from here): the latent size d of Sec. 4.2,
the normalisations the Table 1 network offers, and the feature-matching weight lambda."""
from __future__ import annotations

DEFAULT_LATENT_DIM = 100  # Section 4.2, texture images
NORMS = ("none", "batch")  # "batch": BatchNorm2d after each hidden convolution (not in Table 1)
FM_WEIGHT = 1.0  # the paper's lambda (Sec. 4.2)

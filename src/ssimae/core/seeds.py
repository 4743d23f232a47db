"""The ceiling of every seed (a run's ``--seed``, ``train.data.seed``, the inference ``--seed``,
the inpaint model's ``mask_seed``): numpy's and torch's generators take seeds in [0, 2^63 - 1]
alike (torch's accept up to 2^64 - 1). Torch-free, so the ONNX runtime's settings read it too."""
from __future__ import annotations

MAX_SEED = 2**63 - 1

"""Beyond one process: archive scoring on Ray and distributed training with torchrun.

This layer sits above training, inference and reporting and below the command line.

- :mod:`ssimae.cluster.ray_scoring`: ``ssimae predict ... --ray``, the outputs of ``predict``
  from a pool of Ray actors, restartable (:func:`predict_on_ray`).
- :mod:`ssimae.cluster.ddp`: ``torchrun --nproc_per_node N -m ssimae train ...``, PyTorch
  DistributedDataParallel training (:func:`distributed_context`).

Neither Ray nor torch is imported until used.
"""
from __future__ import annotations

__all__ = ["predict_on_ray", "distributed_context"]


def __getattr__(name: str):
    if name == "predict_on_ray":
        from ssimae.cluster.ray_scoring import predict_on_ray

        return predict_on_ray
    if name == "distributed_context":
        from ssimae.cluster.ddp import distributed_context

        return distributed_context
    raise AttributeError(f"module 'ssimae.cluster' has no attribute {name!r}")

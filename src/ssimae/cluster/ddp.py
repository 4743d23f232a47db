"""Distributed training with torchrun: ``torchrun --nproc_per_node N -m ssimae train ...``.

Under torchrun (its environment: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT)
``ssimae train`` trains one run with N processes (:class:`DdpTraining`, passed to
:func:`ssimae.commands.train.train` and :func:`ssimae.training.loop.fit`):

* **Process group**: gloo on CPUs, nccl when CUDA is available (each process on GPU
  LOCAL_RANK).
* **Batches**: ``--batch-size`` B is the global batch, the patches of one optimizer step
  over all processes; each process takes B / N of them, and ``--patches-per-epoch`` counts
  patches over all processes. So the run's settings mean the same thing at any N, and the
  run is recorded with ``processes: N`` in its config. Which patches: the epoch's random
  patches are numbered as in one process (patch i of epoch e depends only on (seed, e, i),
  :class:`ssimae.training.patches.RandomPatches`), each global batch of B consecutive numbers is cut
  into N slices, and process r takes slice r (:class:`ssimae.training.patches.EpochSampler`); so each
  process draws its own patches, none twice, and together they draw exactly the patches of a
  one-process run. B and the epoch's last, shorter batch must be multiples of N.
* **Gradients**: the model's loss runs inside one ``DistributedDataParallel`` module (any
  model's loss, also the VAE's, which calls the encoder and decoder itself), so backward
  averages the gradients over the processes: each process's loss is the mean over its B / N
  patches, their average the mean over the B patches of one process. So N processes train
  the same parameters as one process, to float rounding.
* **Randomness**: the network is initialised from the seed in every process (DDP also
  broadcasts rank 0's weights); sampling models (the VAE) draw their noise from the global
  RNG, which process r > 0 reseeds at every step from (seed, r, epoch, step), so its noise
  is its own and a resumed run draws what the uninterrupted one would; rank 0 keeps the
  one-process stream (restored by ``--resume``).
* **Writing**: only rank 0 takes the run folder's lock and writes the checkpoint, the log,
  config.json and run_info.json, and chooses the threshold after training; the other
  processes write nothing. ``--resume`` works as in one process (every process reads the
  checkpoint), also with another N.
* **BatchNorm** (``--norm batch``, not the paper's): on GPUs it becomes SyncBatchNorm
  (statistics over the global batch); torch has no CPU SyncBatchNorm, so on CPUs each
  process normalises with the statistics of its own B / N patches (the run then differs
  from one process; the default ``--norm none`` has no such state).
* ``--budget-minutes`` is refused (give ``--epochs``): a time budget measured in one
  process does not say what N processes do.

Across machines: ``torchrun --nnodes M --nproc_per_node N --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m ssimae train ...`` on every machine, with the data at the same
path on each and --out on a folder rank 0 can write.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ssimae.errors import SsimaeError

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK")


@dataclass(frozen=True)
class TorchrunEnv:
    """What torchrun tells a process: its rank, the number of processes, its rank on this machine."""

    rank: int
    world: int
    local_rank: int


def torchrun_env(environ=None) -> TorchrunEnv | None:
    """The torchrun environment of this process, or None when not started by torchrun
    (WORLD_SIZE unset). SsimaeError for a malformed one."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" not in env:
        return None
    try:
        rank, world, local = (int(env.get(k, "0")) for k in TORCHRUN_VARIABLES)
    except ValueError:
        raise SsimaeError("torchrun environment: RANK, WORLD_SIZE and LOCAL_RANK must be integers "
                          f"(got {', '.join(f'{k}={env.get(k)!r}' for k in TORCHRUN_VARIABLES)})") from None
    if world < 1 or not 0 <= rank < world or local < 0:
        raise SsimaeError(f"torchrun environment: RANK {rank} of WORLD_SIZE {world} (LOCAL_RANK {local}) is impossible")
    return TorchrunEnv(rank, world, local)


def check_batches(batch_size: int, patches_per_epoch: int, world: int) -> None:
    """SsimaeError unless every step's batch splits evenly over ``world`` processes."""
    last = patches_per_epoch % batch_size
    if batch_size % world or last % world:
        what = (f"--batch-size {batch_size}" if batch_size % world else
                f"the last batch of each epoch ({last} patches: --patches-per-epoch {patches_per_epoch} "
                f"modulo --batch-size {batch_size})")
        raise SsimaeError(f"{what} does not split evenly over {world} processes; --batch-size is the batch of "
                          f"all processes together: choose sizes that are multiples of {world}")


def rank_seed(seed: int, rank: int, epoch: int, step: int) -> int:
    """The global-RNG seed of process ``rank`` > 0 at (epoch, step): 63 bits of a hash of all four."""
    import numpy as np

    return int(np.random.SeedSequence((seed, rank, epoch, step)).generate_state(2, np.uint32).view(np.uint64)[0] >> 1)


class _Losses(nn.Module):
    """The network with its loss functions: ``forward(name, x)`` is loss ``name`` of batch x,
    so that DistributedDataParallel sees every use of the network in the loss."""

    def __init__(self, net: nn.Module, fns: dict):
        super().__init__()
        self.net = net
        self.fns = fns

    def forward(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return self.fns[name](x)


class DdpTraining:
    """This process's part in a run trained by torchrun's processes (the interface of
    :class:`ssimae.training.loop.SingleProcess`; see the module doc). Joins the process group on
    construction (``backend``: None picks nccl with CUDA, else gloo); :meth:`close` leaves it."""

    def __init__(self, env: TorchrunEnv, backend: str | None = None):
        self.env = env
        self.rank, self.world = env.rank, env.world
        self.is_main = env.rank == 0
        cuda = torch.cuda.is_available()
        self.backend = backend or ("nccl" if cuda else "gloo")
        self.device = torch.device("cuda", env.local_rank) if self.backend == "nccl" else torch.device("cpu")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        if not dist.is_initialized():
            dist.init_process_group(self.backend)
        self.ddp = None

    def losses(self, net: nn.Module, fns: dict) -> dict:
        """``fns`` (name -> loss of a batch) run inside one DistributedDataParallel module."""
        if self.device.type == "cuda" and any(isinstance(m, nn.BatchNorm2d) for m in net.modules()):
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)  # statistics over the global batch
        module = _Losses(net, fns)
        ids = [self.device.index] if self.device.type == "cuda" else None
        self.ddp = nn.parallel.DistributedDataParallel(module, device_ids=ids)
        return {name: (lambda x, name=name: self.ddp(name, x)) for name in fns}

    def agree(self, loss: torch.Tensor, flag: bool) -> tuple[float, bool]:
        """(the mean of the processes' losses: equal batches, so the loss of the global batch;
        whether ``flag`` is set in any process), in one all-reduce."""
        value = torch.stack([loss.detach().reshape(()).float(),
                             torch.tensor(1.0 if flag else 0.0, device=loss.device)])
        dist.all_reduce(value)
        mean, flags = value.tolist()
        return mean / self.world, flags > 0

    def step_seed(self, seed: int, epoch: int, step: int) -> None:
        if self.rank > 0:
            torch.manual_seed(rank_seed(seed, self.rank, epoch, step))

    def check(self, t) -> None:
        """SsimaeError for settings N processes cannot train (uneven batches, a time budget)."""
        if t.budget_minutes is not None and t.measured_patches_per_s is None:
            raise SsimaeError("--budget-minutes is not supported with torchrun (a budget measured in one process "
                              "does not say what several do); give --epochs")
        check_batches(t.batch_size, t.patches_per_epoch, self.world)
        if t.micro_batches > 1 and t.micro_batches % self.world:
            raise SsimaeError(f"--micro-batches {t.micro_batches} (slices of the global batch) does not split evenly "
                              f"over {self.world} processes; choose a multiple of {self.world}")

    def close(self) -> None:
        if dist.is_initialized():
            dist.destroy_process_group()


def distributed_context(backend: str | None = None) -> DdpTraining | None:
    """A :class:`DdpTraining` when this process was started by torchrun, else None."""
    env = torchrun_env()
    return None if env is None else DdpTraining(env, backend)

"""The training loop (Sec. 4.2): random 128x128 crops of defect-free images, Adam, the model's own loss.

Paper defaults (:class:`ssimae.runs.settings.TrainSettings`): 10,000 patches per epoch, 200
epochs, Adam with learning rate 2e-4 and weight decay 1e-5, d = 100. Each model's loss
lives with the model (:mod:`ssimae.models`). :func:`fit` returns the trained state; the
``train`` command (:mod:`ssimae.commands.train`) then chooses the default threshold on the
held-back validation images and writes the run. The run folder gets model.pt (written
atomically after every epoch), config.json and train_log.csv.
"""
from __future__ import annotations

import csv
import io
import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import torch

from ssimae.data.datasets import load_dataset, seeded_split
from ssimae.errors import SsimaeError
from ssimae.io.files import atomic_write_text
from ssimae.io.progress import progress as progress_display
from ssimae.models import Model, get_model
from ssimae.models.device import pick_device
from ssimae.models.network import PATCH_SIZE
from ssimae.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint, save_checkpoint, write_config
from ssimae.runs.config import record_invocation
from ssimae.runs.options import DATA_FOLDERS
from ssimae.runs.settings import RunSettings, TrainSettings
from ssimae.training.patches import RandomPatches, make_loader

SAVE_EVERY_S = 180.0  # model.pt is saved at least this often within an epoch, too (seconds)
clock = time.monotonic  # the clock of those saves (tests put their own)


class SingleProcess:
    """Training in this process alone (the default). :class:`ssimae.cluster.ddp.DdpTraining`
    spreads one run over the processes of torchrun with the same interface: ``rank`` of
    ``world`` processes; only rank 0 (``is_main``) writes the run; ``losses`` wraps the loss
    functions so that backward averages the gradients over the processes; ``agree`` gives
    a per-process loss averaged over them and whether a flag is set in any process (the
    processes stop together), in one exchange per step; ``step_seed`` reseeds a process's global RNG for a step (ranks > 0:
    their own noise for sampling models); ``check`` refuses settings the processes cannot
    train; ``device``: this process's device (None: the run's --device)."""

    rank, world, is_main, device = 0, 1, True, None

    def losses(self, net, fns: dict) -> dict:
        return fns

    def agree(self, loss: torch.Tensor, flag: bool) -> tuple[float, bool]:
        return loss.item(), flag

    def step_seed(self, seed: int, epoch: int, step: int) -> None:
        pass

    def check(self, t: TrainSettings) -> None:
        """SsimaeError if the run's settings cannot be trained by these processes."""


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def _start_or_resume(run: RunSettings, out: Path, resume: bool, data_root, dataset_kwargs):
    """(settings, checkpoint state or None, data root, dataset options) of the run in ``out``.

    Resuming keeps the run's settings and data; only the budget and length may change.
    """
    ckpt_path = out / CHECKPOINT_NAME
    if not resume:
        if ckpt_path.exists():
            raise SsimaeError(f"already holds {CHECKPOINT_NAME}; use --resume to continue it or choose another --out",
                              out)
        return run, None, data_root, dict(dataset_kwargs or {})
    if not ckpt_path.exists():
        raise SsimaeError(f"--resume: no {CHECKPOINT_NAME} to resume from", out)
    state = load_checkpoint(ckpt_path)
    saved: RunSettings = state["settings"]
    saved.train.epochs, saved.train.max_minutes = run.train.epochs, run.train.max_minutes
    data = dict(saved.train.data)
    return saved, state, data.pop("root", data_root), data


def _training_images(run: RunSettings, data_root, dataset_kwargs: dict, log, progress):
    """(training paths, validation paths) of the dataset; records the data in the settings."""
    t = run.train
    dataset_kwargs.setdefault("seed", t.seed)  # the train/test split of layouts without one
    dataset = load_dataset(data_root, **dataset_kwargs, log=log, progress=progress)
    t.data = {"root": None if data_root is None else str(Path(data_root).resolve()), **dataset_kwargs,
              **absolute_paths(dataset_kwargs)}
    train_paths, val_paths = seeded_split(dataset.train, t.val_fraction, t.seed)
    if not train_paths:
        raise SsimaeError("no defect-free training images found", data_root)
    return train_paths, val_paths


def absolute_paths(dataset_kwargs: dict) -> dict:
    """The dataset folders among ``dataset_kwargs`` as absolute, resolved paths, so that the
    run is evaluated or resumed from any working directory."""
    return {k: str(Path(dataset_kwargs[k]).resolve()) for k in DATA_FOLDERS if dataset_kwargs.get(k) is not None}


def learning_rate(step: int, total: int, t: TrainSettings) -> float:
    """Learning rate of (0-based) step ``step`` of ``total``: constant ``t.lr`` (the paper), or
    for ``schedule="cosine"`` a linear warm-up over the first ``t.warmup`` share of the steps
    followed by a cosine decay that reaches 0 at the end of the budget."""
    if t.schedule == "constant":
        return t.lr
    warm = int(round(t.warmup * total))
    if step < warm:
        return t.lr * (step + 1) / warm
    progress = (step - warm) / max(total - warm, 1)
    return t.lr * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def _to_device(x: torch.Tensor, device, t: TrainSettings) -> torch.Tensor:
    x = x.to(device, non_blocking=True)
    return x.contiguous(memory_format=torch.channels_last) if t.channels_last else x


def _build(model, t: TrainSettings, device, channels: int = 1) -> torch.nn.Module:
    net = model.build(t.latent_dim, t.params, t.norm, channels=channels).to(device)
    return net.to(memory_format=torch.channels_last) if t.channels_last else net


def measure_throughput(model, t: TrainSettings, patches: RandomPatches, device, steps: int = 6) -> float:
    """Training patches per second of this run's step on this machine: ``steps`` timed steps
    (after one untimed) of a throw-away copy of the network, each on a batch cut from
    ``patches`` as the loader does, so the run itself, and the global RNG it draws from, are
    untouched."""
    rng = torch.get_rng_state()
    try:
        net = _build(model, t, device, patches.preprocess.channels)
        net.train()
        opt = torch.optim.Adam(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
        loss_fn = model.loss(net, t.params, device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        for i in range(steps + 1):
            if i == 1:
                sync()
                t0 = time.perf_counter()
            # the batch is cut and moved here, as the loader does, so its cost is counted too
            items = [patches[(0, (i * t.batch_size + j) % len(patches))] for j in range(t.batch_size)]
            batch = _to_device(torch.stack(items), device, t)
            opt.zero_grad(set_to_none=True)
            accumulate(loss_fn, batch, t.micro_batches)  # the step as the run takes it (--micro-batches)
            opt.step()
        sync()
        return steps * t.batch_size / (time.perf_counter() - t0)
    finally:
        torch.set_rng_state(rng)


def accumulate(loss_fn, x: torch.Tensor, parts: int = 1) -> torch.Tensor:
    """Backward of the loss of batch ``x`` (N, C, H, W) cut into ``parts`` consecutive slices
    (``torch.chunk``): each slice's loss (a mean over its n_i patches) scaled by n_i / N, its
    gradients summed into ``.grad``; returns the batch's mean loss (detached). This is the
    gradient of the whole batch's mean loss, in less memory.

    With equal slices and ``parts`` a power of two it is also, to the last bit, what ``parts``
    DDP processes compute from the same slices: DDP averages their gradients by a division
    by the process count and a sum; scaling by a power of two is exact in floating point and
    commutes with every operation of backward, and a sum of two values is commutative."""
    if parts == 1:
        loss = loss_fn(x)
        loss.backward()
        return loss.detach()
    total = x.new_zeros(())
    for part in torch.chunk(x, parts):
        loss = loss_fn(part)
        weight = part.shape[0] / x.shape[0]
        (loss * weight).backward()
        total += loss.detach() * weight
    return total


def _loop(state: dict, loss_fn, opt, loader, patches: RandomPatches, device, t, out: Path, save, progress, log,
          warm_loss=None, par: SingleProcess = SingleProcess()) -> bool:
    """Run the epochs from ``state`` ({"epoch", "step", "rows"}); returns True when the
    time limit stopped it. Saves the checkpoint and the log after every epoch, and the
    checkpoint also after the first step that ends :data:`SAVE_EVERY_S` after the last save,
    so a long epoch loses at most that much to a kill; ``--resume`` continues from its step
    exactly (rank 0 of ``par``; the patches and losses logged are those of all processes)."""
    n_steps = math.ceil(t.patches_per_epoch / t.batch_size)
    total_steps = n_steps * t.epochs
    warm_steps = int(round(t.l2_warmup * total_steps))
    parts = max(1, t.micro_batches // par.world)  # --micro-batches slices the global batch: each process does its share
    start = time.monotonic()
    budget = None if t.max_minutes is None else t.max_minutes * 60
    stopped = False
    last_save = clock()
    while state["epoch"] < t.epochs and not stopped:
        patches.set_epoch(state["epoch"])
        t0, seen, total = time.monotonic(), 0, 0.0
        bar = progress_display(total=(n_steps - state["step"]) * t.batch_size, desc=f"epoch {state['epoch'] + 1}/{t.epochs}",
                               unit="patches", enabled=progress)
        for x in loader:
            x = _to_device(x, device, t)
            global_step = state["epoch"] * n_steps + state["step"]
            for group in opt.param_groups:
                group["lr"] = learning_rate(global_step, total_steps, t)
            par.step_seed(t.seed, state["epoch"], state["step"])
            opt.zero_grad(set_to_none=True)
            loss = accumulate((warm_loss if global_step < warm_steps else loss_fn), x, parts)
            # one exchange per step besides the gradients', right after them (the processes are in
            # step there, so none waits): the mean loss, and whether any process ran out of time
            value, stop = par.agree(loss, budget is not None and time.monotonic() - start >= budget)
            if not math.isfinite(value):
                kept = "the last good checkpoint is kept" if (out / CHECKPOINT_NAME).exists() else \
                    "no checkpoint was written before"
                raise SsimaeError(f"training diverged at epoch {state['epoch'] + 1} (loss {value}); {kept}",
                                  out / CHECKPOINT_NAME)
            opt.step()
            state["step"] += 1
            seen += x.shape[0] * par.world
            total += value * x.shape[0] * par.world
            bar.set_postfix(loss=f"{value:.4f}")
            bar.update(x.shape[0] * par.world)
            if stop:
                stopped = True
                break
            if par.is_main and state["step"] < n_steps and clock() - last_save >= SAVE_EVERY_S:
                save(finished=False)
                last_save = clock()
        bar.close()
        row = {"epoch": state["epoch"] + 1, "steps": state["step"], "patches": seen,
               "loss": f"{total / max(seen, 1):.6f}", "patches_per_s": f"{seen / max(time.monotonic() - t0, 1e-9):.1f}",
               "elapsed_s": f"{time.monotonic() - start:.1f}"}
        state["rows"].append(row)
        if state["step"] >= n_steps:
            state["epoch"], state["step"] = state["epoch"] + 1, 0
        if par.is_main:
            save(finished=False)
            last_save = clock()
            _write_log(out / "train_log.csv", state["rows"])
        if progress:
            log(f"epoch {row['epoch']}/{t.epochs}: loss {row['loss']}, {row['patches_per_s']} patches/s")
    return stopped


def budget_plan(rate: float, minutes: float, patches_per_epoch: int, batch_size: int) -> tuple[int, int]:
    """(epochs, patches per epoch) that fill a budget of ``minutes`` at ``rate`` patches/s:
    the fewest epochs of at most ``patches_per_epoch`` patches that hold the budget's patch
    count, each as long as they fit (so an epoch shrinks when the budget is short). At least
    one batch (or the whole epoch, if smaller); otherwise the plan never exceeds the budget."""
    total = math.floor(rate * minutes * 60)  # whole patches
    epochs = max(1, math.ceil(total / patches_per_epoch))
    at_least = min(batch_size, patches_per_epoch) if epochs == 1 else 1  # a short budget: still one batch
    return epochs, max(at_least, min(patches_per_epoch, total // epochs))


def _convert_budget(model, t: TrainSettings, patches: RandomPatches, device, log, now=None) -> None:
    """Turn ``t.budget_minutes`` into ``t.epochs`` and ``t.patches_per_epoch`` once
    (:func:`budget_plan`), from the throughput measured here (:func:`measure_throughput`);
    both are recorded, so the run is repeated exactly by its patch count, not by a clock.
    Logs the plan and its estimated end (``now``: the current time, local, for tests)."""
    t.measured_patches_per_s = max(round(measure_throughput(model, t, patches, device), 1), 0.1)
    t.epochs, t.patches_per_epoch = budget_plan(t.measured_patches_per_s, t.budget_minutes, t.patches_per_epoch,
                                                t.batch_size)
    patches_total = t.epochs * t.patches_per_epoch
    end = (now or datetime.now().astimezone()) + timedelta(seconds=patches_total / t.measured_patches_per_s)
    log(f"budget of {t.budget_minutes:g} minutes at {t.measured_patches_per_s:g} patches/s measured here: "
        f"{t.epochs} epochs x {t.patches_per_epoch} patches ({patches_total} patches); training ends about "
        f"{end:%Y-%m-%d %H:%M} (then the threshold is chosen)")


def _resume_hint(out: Path, saved: tuple[int, int] | None, ckpt: dict | None, t: TrainSettings) -> str:
    """What an interrupted training left (``saved``: (epoch, step) of this process's last save;
    ``ckpt``: the checkpoint it resumed from, if any) and how to continue it."""
    if saved is None and ckpt is not None:
        saved = (ckpt["epoch"], ckpt["step"])
    if saved is None:
        return f"nothing saved yet in {out} (the first save comes within {SAVE_EVERY_S / 60:g} minutes)"
    epoch, step = saved
    return (f"progress saved in {out / CHECKPOINT_NAME} (epoch {epoch + 1} of {t.epochs}, step {step}); "
            f"continue with: ssimae train --out {out} --resume")


@dataclass
class Trained:
    """What training leaves: the settings (as trained: the model's residual, the data and a
    converted budget filled in), the network on its device, the model, the checkpoint state
    (model weights, optimizer, epoch, step, finished) and the held-back validation images."""

    settings: RunSettings
    network: torch.nn.Module
    model: Model
    state: dict
    val_paths: list
    device: torch.device


def fit(run: RunSettings, data_root, out: str | Path, *, resume: bool = False, dataset_kwargs: dict | None = None,
        progress: bool = True, log=print, argv: list[str] | None = None, par: SingleProcess | None = None) -> Trained:
    """Train one model (or continue the interrupted run in ``out`` with ``resume``) and
    return its state; the caller holds the run folder's lock and chooses the threshold
    (:func:`ssimae.commands.train.train`). Writes ``out``/model.pt and train_log.csv after
    every epoch, config.json and run_info.json (``argv``: the command line) at the start.

    ``par``: the processes training the run together (:class:`SingleProcess`, the default,
    or :class:`ssimae.cluster.ddp.DdpTraining`); ``run.train.batch_size`` is the batch of all
    of them together, and only rank 0 writes (the others log nothing)."""
    out = Path(out)
    par = par or SingleProcess()
    if not par.is_main:
        progress, log = False, (lambda *_: None)
    ckpt_path = out / CHECKPOINT_NAME
    run, ckpt, data_root, dataset_kwargs = _start_or_resume(run, out, resume, data_root, dataset_kwargs)
    t = run.train
    par.check(t)
    model = get_model(t.model)
    t.params = model.prepare(t.params)
    run.inference.residual = run.inference.residual or model.default_residual
    train_paths, val_paths = _training_images(run, data_root, dataset_kwargs, log, progress)

    device = par.device or pick_device(t.device)
    t.processes = par.world
    patches = RandomPatches(train_paths, t.patches_per_epoch, PATCH_SIZE, run.inference.preprocess, seed=t.seed,
                            progress=progress, augment=t.augment)
    if t.budget_minutes is not None and ckpt is None:
        _convert_budget(model, t, patches, device, log)
    log(f"training the {model.title} on {len(train_paths)} images ({len(val_paths)} held back for the threshold), "
        f"{t.epochs} epochs x {t.patches_per_epoch} patches, recipe {t.recipe}")
    torch.manual_seed(t.seed)
    net = _build(model, t, device, run.inference.preprocess.channels)
    opt = torch.optim.Adam(net.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    loss_fn = model.loss(net, t.params, device)
    state = {"epoch": 0, "step": 0, "rows": []}
    if ckpt is not None:
        net.load_state_dict(ckpt["model"])
        if "optimizer" in ckpt:
            opt.load_state_dict(ckpt["optimizer"])
        state.update(epoch=ckpt["epoch"], step=ckpt["step"])
        torch.set_rng_state(ckpt["rng"])
        if (out / "train_log.csv").exists():
            state["rows"] = list(csv.DictReader((out / "train_log.csv").open()))
    if par.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_config(out, run)  # again at the end, with the threshold
        record_invocation(out, argv)

    def save(finished: bool):
        save_checkpoint(ckpt_path, settings=run, model=net.state_dict(), optimizer=opt.state_dict(),
                        epoch=state["epoch"], step=state["step"], finished=finished)
        state["saved"] = (state["epoch"], state["step"])

    # One loader for the whole run: its own seeded generator (the global RNG, which the VAE
    # samples from, is not touched), persistent workers, and a mid-epoch start on resume.
    loader = make_loader(patches, t.batch_size // par.world, t.num_workers, pin_memory=device.type == "cuda",
                         start=state["step"] * t.batch_size, shard=(par.rank, par.world))
    net.train()
    fns = par.losses(net, {"model": loss_fn, "l2": get_model("l2").loss(net, None, device)})
    try:
        stopped = _loop(state, fns["model"], opt, loader, patches, device, t, out, save, progress, log, fns["l2"], par)
    except KeyboardInterrupt:
        raise KeyboardInterrupt(_resume_hint(out, state.get("saved"), ckpt, t)) from None
    if stopped:
        log(f"stopped after {t.max_minutes} minutes (--max-minutes) at epoch {state['epoch'] + 1}, "
            f"step {state['step']}; continue with --resume")

    finished = state["epoch"] >= t.epochs
    return Trained(run, net, model, {"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": state["epoch"],
                                     "step": state["step"], "finished": finished}, val_paths, device)

"""Training (Sec. 4.2): random 128x128 crops of defect-free images, Adam, one loss per model.

    l2    mean (x - x_hat)^2
    ssim  1 - mean SSIM(x, x_hat)                      (K=11, alpha=beta=gamma=1)
    vae   [sum (x - x_hat)^2 / (2 s^2) + KL(Q(z|x) || N(0, I))] / n_pixels,  s^2 = vae_obs_var
    fm    mean (x - x_hat)^2 + lambda * mean (phi(x) - phi(x_hat))^2, phi = AlexNet conv1-3

Paper defaults: 10,000 patches per epoch, 200 epochs, Adam with learning rate 2e-4 and
weight decay 1e-5, d = 100. After training, a default threshold is chosen on defect-free
validation images held back from training (see :func:`ssimae.metrics.select_threshold`).
The run folder gets model.pt (written atomically after every epoch), config.json and
train_log.csv.
"""
from __future__ import annotations

import csv
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ssimae.checkpoint import CHECKPOINT_NAME, atomic_write_text, load_checkpoint, save_checkpoint
from ssimae.datasets import load_dataset
from ssimae.detector import Detector, pick_device
from ssimae.errors import SsimaeError
from ssimae.images import read_image
from ssimae.metrics import select_threshold
from ssimae.model import PATCH_SIZE, VAE, build_model
from ssimae.patches import Preprocess, RandomPatches, make_loader
from ssimae.ssim import ssim_loss, ssim_options

MODELS = ("ssim", "l2", "vae", "fm")
LEARNING_RATE = 2e-4  # Sec. 4.2
WEIGHT_DECAY = 1e-5  # Sec. 4.2
EPOCHS = 200  # Sec. 4.2
PATCHES_PER_EPOCH = 10_000  # Sec. 4.2
VAE_SAMPLES = 6  # Sec. 4.2, N
FM_WEIGHT = 1.0  # Sec. 4.2, lambda


@dataclass
class TrainConfig:
    """Everything that defines a training run; stored in the checkpoint and config.json."""

    model: str = "ssim"
    latent_dim: int = 100
    epochs: int = EPOCHS
    patches_per_epoch: int = PATCHES_PER_EPOCH
    batch_size: int = 32  # not stated in the paper
    lr: float = LEARNING_RATE
    weight_decay: float = WEIGHT_DECAY
    seed: int = 0
    max_minutes: float | None = None
    val_fraction: float = 0.1
    min_defect_area: int = 0
    preprocess: dict = field(default_factory=dict)  # Preprocess.to_dict()
    ssim: dict = field(default_factory=ssim_options)
    stride: int = 30
    opening_diameter: int = 4
    vae_samples: int = VAE_SAMPLES
    vae_obs_var: float = 0.01
    kl_weight: float = 1.0
    fm_weight: float = FM_WEIGHT
    alexnet_weights: str | None = None
    num_workers: int = 0
    infer_batch_size: int = 64
    device: str = "auto"
    data: dict = field(default_factory=dict)  # how the dataset was read (root, format, ...)

    def __post_init__(self):
        if self.model not in MODELS:
            raise SsimaeError(f"unknown model {self.model!r}; choose from {', '.join(MODELS)}")
        for name in ("epochs", "patches_per_epoch", "batch_size", "latent_dim", "stride", "vae_samples"):
            if int(getattr(self, name)) < 1:
                raise SsimaeError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.val_fraction < 1:
            raise SsimaeError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def split_validation(paths: list[Path], fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministic train/validation split of the defect-free training images: the sorted
    paths are shuffled with ``numpy.random.default_rng(seed)``; the first
    round(fraction * n) (at least 1 when fraction > 0 and n >= 2) are validation images."""
    paths = sorted(paths)
    n_val = 0 if fraction <= 0 or len(paths) < 2 else max(1, round(fraction * len(paths)))
    n_val = min(n_val, len(paths) - 1)
    order = np.random.default_rng(seed).permutation(len(paths))
    val = [paths[i] for i in order[:n_val]]
    train = [paths[i] for i in order[n_val:]]
    return train, val


def make_loss(cfg: TrainConfig, model: torch.nn.Module, device: torch.device):
    """The training loss of ``cfg.model`` as fn(batch) -> scalar tensor."""
    if cfg.model == "l2":
        return lambda x: torch.mean((model(x) - x) ** 2)
    if cfg.model == "ssim":
        opts = dict(cfg.ssim)
        return lambda x: ssim_loss(model(x), x, **opts)
    if cfg.model == "vae":
        assert isinstance(model, VAE)

        def vae_loss(x):
            mu, logvar = model.encode(x)
            x_hat = model.decode(model.sample(mu, logvar))
            recon = ((x_hat - x) ** 2).flatten(1).sum(1) / (2 * cfg.vae_obs_var)
            kl = -0.5 * (1 + logvar - mu**2 - logvar.exp()).flatten(1).sum(1)
            return (recon + cfg.kl_weight * kl).mean() / x[0].numel()

        return vae_loss
    if cfg.model == "fm":
        from ssimae.features import feature_matching_loss, load_alexnet_features, locate_alexnet_weights

        phi = load_alexnet_features(locate_alexnet_weights(cfg.alexnet_weights)).to(device)
        return lambda x: feature_matching_loss(x, model(x), phi, cfg.fm_weight)
    raise ValueError(cfg.model)


def _write_log(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def compute_threshold(detector: Detector, val_paths: list[Path], min_defect_area: int,
                      progress: bool = True) -> float | None:
    """Default threshold from defect-free validation images (None without any)."""
    if not val_paths:
        return None
    maps = [detector.residual_map(read_image(p))
            for p in tqdm(val_paths, desc="threshold on validation images", disable=not progress, leave=False)]
    return float(select_threshold(maps, detector.opening_diameter, min_defect_area))


def train(cfg: TrainConfig, data_root: str | None, out: str | Path, *, resume: bool = False,
          dataset_kwargs: dict | None = None, progress: bool = True, log=print) -> Path:
    """Train one model; returns the checkpoint path (``out``/model.pt)."""
    out = Path(out)
    ckpt_path = out / CHECKPOINT_NAME
    state = None
    if resume:
        if not ckpt_path.exists():
            raise SsimaeError(f"--resume: no {CHECKPOINT_NAME} to resume from", out)
        state = load_checkpoint(ckpt_path)
        saved = TrainConfig.from_dict(state["config"])
        # Resuming keeps the run's configuration; only the budget and length may change.
        saved.epochs, saved.max_minutes = cfg.epochs, cfg.max_minutes
        cfg = saved
        data_root = cfg.data.get("root", data_root)
        dataset_kwargs = {k: v for k, v in cfg.data.items() if k != "root"}
    elif ckpt_path.exists():
        raise SsimaeError(f"already holds {CHECKPOINT_NAME}; use --resume to continue it or choose another --out", out)

    dataset_kwargs = dict(dataset_kwargs or {})
    dataset_kwargs.setdefault("seed", cfg.seed)  # the train/test split of layouts without one
    dataset = load_dataset(data_root, **dataset_kwargs, log=log, progress=progress)
    cfg.data = {"root": None if data_root is None else str(Path(data_root).resolve()), **dataset_kwargs}
    train_paths, val_paths = split_validation(dataset.train, cfg.val_fraction, cfg.seed)
    if not train_paths:
        raise SsimaeError("no defect-free training images found", data_root)
    log(f"training {cfg.model}-AE on {len(train_paths)} images ({len(val_paths)} held back for the threshold), "
        f"{cfg.epochs} epochs x {cfg.patches_per_epoch} patches")

    device = pick_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, cfg.latent_dim).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    loss_fn = make_loss(cfg, model, device)
    epoch, step, rows = 0, 0, []
    if state is not None:
        model.load_state_dict(state["model"])
        if "optimizer" in state:
            opt.load_state_dict(state["optimizer"])
        epoch, step = state["epoch"], state["step"]
        torch.set_rng_state(state["rng"])
        log_path = out / "train_log.csv"
        if log_path.exists():
            rows = list(csv.DictReader(log_path.open()))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(asdict(cfg), indent=2, sort_keys=True))

    patches = RandomPatches(train_paths, cfg.patches_per_epoch, PATCH_SIZE, Preprocess.from_dict(cfg.preprocess),
                            seed=cfg.seed, progress=progress)
    n_steps = math.ceil(cfg.patches_per_epoch / cfg.batch_size)
    start = time.monotonic()
    budget = None if cfg.max_minutes is None else cfg.max_minutes * 60
    stopped = False

    def save(finished: bool, threshold=None):
        save_checkpoint(ckpt_path, config=asdict(cfg), model=model.state_dict(), optimizer=opt.state_dict(),
                        epoch=epoch, step=step, threshold=threshold, finished=finished)

    # One loader for the whole run: its own seeded generator (the global RNG, which the VAE
    # samples from, is not touched), persistent workers, and a mid-epoch start on resume.
    loader = make_loader(patches, cfg.batch_size, cfg.num_workers, pin_memory=device.type == "cuda",
                         start=step * cfg.batch_size)
    model.train()
    while epoch < cfg.epochs and not stopped:
        patches.set_epoch(epoch)
        t0, seen, total = time.monotonic(), 0, 0.0
        bar = tqdm(loader, total=n_steps - step, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for x in bar:
            x = x.to(device, non_blocking=True)
            loss = loss_fn(x)
            if not torch.isfinite(loss):
                raise SsimaeError(f"training diverged at epoch {epoch + 1} (loss {loss.item()}); "
                                  f"the last good checkpoint is kept", ckpt_path)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            seen += x.shape[0]
            total += loss.item() * x.shape[0]
            rate = seen / max(time.monotonic() - t0, 1e-9)
            bar.set_postfix(loss=f"{loss.item():.4f}", patches_s=f"{rate:.0f}")
            if budget is not None and time.monotonic() - start >= budget:
                stopped = True
                break
        bar.close()
        rows.append({"epoch": epoch + 1, "steps": step, "patches": seen, "loss": f"{total / max(seen, 1):.6f}",
                     "patches_per_s": f"{seen / max(time.monotonic() - t0, 1e-9):.1f}",
                     "elapsed_s": f"{time.monotonic() - start:.1f}"})
        if step >= n_steps:
            epoch, step = epoch + 1, 0
        save(finished=False)
        _write_log(out / "train_log.csv", rows)
        if progress:
            log(f"epoch {rows[-1]['epoch']}/{cfg.epochs}: loss {rows[-1]['loss']}, "
                f"{rows[-1]['patches_per_s']} patches/s")
    if stopped:
        log(f"stopped after {cfg.max_minutes} minutes (--max-minutes) at epoch {epoch + 1}, step {step}; "
            f"continue with --resume")

    model.eval()
    detector = Detector(model, asdict(cfg), device=device)
    threshold = compute_threshold(detector, val_paths, cfg.min_defect_area, progress)
    if threshold is None:
        log("no validation images: no default threshold stored (predict will need --threshold)")
    else:
        log(f"default threshold {threshold:.6g} (largest opened residual on {len(val_paths)} validation images"
            + (f", regions up to {cfg.min_defect_area} px allowed)" if cfg.min_defect_area else ")"))
    save(finished=epoch >= cfg.epochs, threshold=threshold)
    return ckpt_path

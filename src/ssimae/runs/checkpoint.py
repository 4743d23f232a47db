"""Checkpoints: everything ``evaluate`` and ``predict`` need, in one file, written atomically.

A checkpoint is a dict saved with ``torch.save``; it holds only tensors and plain
Python values (the configuration as JSON text), so it is loaded with
``torch.load(weights_only=True)``, which never executes code from the file.
Keys (version 2): format, version, settings (JSON of :class:`ssimae.runs.settings.RunSettings`:
training and inference settings, the threshold among the latter), model (state dict),
optimizer (state dict or absent), epoch, step, rng (torch RNG state), finished.
Version 1 (a flat config dict and a threshold) still loads: :func:`load_checkpoint`
converts it with :func:`ssimae.runs.settings.settings_from_v1`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ssimae.errors import SsimaeError, one_line
from ssimae.io.files import atomic_write_bytes, atomic_write_text
from ssimae.io.folders import lock_holder
from ssimae.runs.settings import RunSettings, settings_from_v1

FORMAT = "ssimae-checkpoint"
VERSION = 2
CHECKPOINT_NAME = "model.pt"
CONFIG_NAME = "config.json"  # the run's settings, readable (and a --config file for a rerun)
LOG_NAME = "train_log.csv"  # one row per epoch (and per stop within one), written by training
TRAINING = "ssimae train"  # what training writes into its run folder's lock


@dataclass
class Run:
    """A run read once: where it is (``path``: the checkpoint file, ``folder``: the folder
    holding it), its settings and its stored state (``state``: the checkpoint dict: model
    weights, optimizer, epoch, step, rng, finished). Everything that scores, evaluates,
    calibrates or exports a run is built from this one object (:func:`load_run`)."""

    path: Path
    settings: RunSettings
    state: dict

    @property
    def folder(self) -> Path:
        return self.path.parent

    @property
    def weights(self) -> dict:
        """The network's state dict."""
        return self.state["model"]


def load_run(run: "str | os.PathLike | Run") -> Run:
    """A run folder or checkpoint file read and checked once (:func:`load_checkpoint`); a
    :class:`Run` is returned as it is. A run still training is refused (:func:`refuse_while_training`)."""
    if isinstance(run, Run):
        return run
    refuse_while_training(run)
    path = resolve_checkpoint(run)
    state = load_checkpoint(path)
    return Run(path, state.pop("settings"), state)


def refuse_while_training(run: str | os.PathLike) -> None:
    """SsimaeError "training in progress (pid N, epoch k of n)" when another process's
    ``ssimae train`` holds the lock of the run folder (``run``: the folder or its checkpoint):
    its checkpoint has no threshold yet, or none at all. Reads the lock, config.json and
    train_log.csv only (no torch, no checkpoint)."""
    folder = Path(run) if Path(run).is_dir() else Path(run).parent
    holder = lock_holder(folder)
    if holder is None or not holder[1].startswith(TRAINING):
        return
    raise SsimaeError(f"training in progress (pid {holder[0]}, {training_epoch(folder)}); "
                      "wait for it to finish", folder)


def training_epoch(folder: Path) -> str:
    """'epoch k of n' of the training writing ``folder``: n from its config.json, k the epoch
    after the last complete one in its train_log.csv; 'starting' before config.json exists."""
    try:
        train = json.loads((folder / CONFIG_NAME).read_text())["train"]
        n, steps_per_epoch = int(train["epochs"]), math.ceil(train["patches_per_epoch"] / train["batch_size"])
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return "starting"
    try:
        with open(folder / LOG_NAME, newline="") as f:
            last = list(csv.DictReader(f))[-1]
        k = int(last["epoch"]) + (int(last["steps"]) >= steps_per_epoch)
    except (OSError, ValueError, KeyError, IndexError):
        k = 1
    return f"epoch {min(max(k, 1), n)} of {n}"


def save_run(path: str | os.PathLike, settings: RunSettings, state: dict) -> None:
    """The one writer of a run's results, for ``train`` and ``calibrate`` alike: the
    checkpoint ``path`` (model.pt: ``settings`` and ``state``'s model, optimizer, epoch,
    step, finished, rng), then ``config.json`` beside it, each atomically.
    SsimaeError (one line) when either cannot be written; model.pt is written first, so a
    failure leaves the old or the new checkpoint whole."""
    path = Path(path)
    try:
        save_checkpoint(path, settings=settings, model=state["model"], optimizer=state.get("optimizer"),
                        epoch=state.get("epoch", 0), step=state.get("step", 0), finished=state.get("finished", False),
                        rng=state.get("rng"))
    except OSError as e:
        raise SsimaeError(f"cannot write the run ({e.strerror or e}); its {path.name} is unchanged", path) from None
    try:
        write_config(path.parent, settings)
    except OSError as e:
        raise SsimaeError(f"{path.name} is written, but {CONFIG_NAME} could not be ({e.strerror or e})",
                          path.parent) from None


def write_config(folder: str | os.PathLike, settings: RunSettings) -> None:
    """``folder``/config.json: the run's settings as JSON (sorted keys), atomically."""
    atomic_write_text(Path(folder) / CONFIG_NAME, json.dumps(settings.to_dict(), indent=2, sort_keys=True))


def save_checkpoint(path: str | os.PathLike, *, settings: RunSettings, model: dict, optimizer: dict | None = None,
                    epoch: int = 0, step: int = 0, finished: bool = False, rng: torch.Tensor | None = None) -> None:
    """Save a checkpoint atomically (temporary file + rename); ``rng``: the torch RNG state
    to store (default: the current one)."""
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "settings": json.dumps(settings.to_dict(), sort_keys=True),
        "model": model,
        "epoch": int(epoch),
        "step": int(step),
        "finished": bool(finished),
        "rng": torch.get_rng_state() if rng is None else rng,
    }
    if optimizer is not None:
        payload["optimizer"] = optimizer
    buf = io.BytesIO()
    torch.save(payload, buf)
    atomic_write_bytes(path, buf.getvalue())


def resolve_checkpoint(run: str | os.PathLike) -> Path:
    """A run folder (-> its model.pt) or a checkpoint file -> the checkpoint file path."""
    p = Path(run)
    if p.is_dir():
        p = p / CHECKPOINT_NAME
        if not p.exists():
            raise SsimaeError(f"no {CHECKPOINT_NAME} in this run folder (was training started?)", run)
    elif not p.exists():
        raise SsimaeError("no such run folder or checkpoint file", run)
    return p


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """Load and validate a checkpoint; returns it with ``settings`` as a RunSettings.

    Corrupt, truncated or foreign files raise :class:`SsimaeError` naming the file.
    """
    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises many types for bad files
        raise SsimaeError(f"not a readable checkpoint (corrupt, truncated or not a torch file: {one_line(e, 120)})",
                          path) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise SsimaeError("not an ssimae checkpoint (it lacks the ssimae format marker)", path)
    version = ckpt.get("version")
    if version not in (1, VERSION):
        raise SsimaeError(f"checkpoint version {version} is not supported (expected 1 or {VERSION})", path)
    try:
        if not isinstance(ckpt["model"], dict):
            raise TypeError("model weights are not a state dict")
        for key, kind in (("epoch", int), ("step", int), ("finished", bool), ("optimizer", dict),
                          ("rng", torch.Tensor)):
            if key in ckpt and not isinstance(ckpt[key], kind):
                raise TypeError(f"{key} is a {type(ckpt[key]).__name__}, not a {kind.__name__}")
        if version == 1:
            ckpt["settings"] = settings_from_v1(json.loads(ckpt.pop("config")), ckpt.pop("threshold"))
            ckpt.pop("extra", None)
        else:
            ckpt["settings"] = RunSettings.from_dict(json.loads(ckpt["settings"]), "stored settings")
    except (KeyError, TypeError, ValueError, SsimaeError) as e:
        problem = e.problem if isinstance(e, SsimaeError) else str(e)
        raise SsimaeError(f"damaged ssimae checkpoint ({problem})", path) from None
    return ckpt

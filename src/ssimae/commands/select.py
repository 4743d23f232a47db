"""``ssimae train --model auto``: the right model for a user's parts from good images alone.

Each candidate (:mod:`ssimae.runs.candidates`) is trained with a share of the run's epochs
into ``OUT/screening/<name>`` (an ordinary run), then scored by the synthetic-anomaly proxy on
its held-back validation images (:func:`ssimae.inference.selection.proxy_scores`). The best by
the proxy is copied to ``OUT`` and trained on to the run's full epochs (``--resume``), so the
chosen model sees the whole budget and the others a share each; a candidate whose
learning-rate schedule spans the run (cosine: DRAEM's recipe) is trained again from the start
instead (:func:`continues`), so the run is the one ``ssimae train`` gives with its settings. The screening (every
candidate's proxy, the choice, the share) is recorded in ``OUT/run_info.json`` under
"selection". A rerun continues: finished screening runs are reused.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

from ssimae.data.datasets import load_dataset
from ssimae.errors import SsimaeError
from ssimae.inference.detector import Detector
from ssimae.inference.selection import proxy_rank, proxy_scores
from ssimae.inference.test_set import validation_images
from ssimae.io.files import atomic_write_bytes
from ssimae.io.folders import RunLock
from ssimae.commands.train import train
from ssimae.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint, load_run
from ssimae.runs.config import RUN_INFO, record_entry

SCREENING = "screening"
RUN_FILES = (CHECKPOINT_NAME, "config.json", "train_log.csv", RUN_INFO)


def _finished(run: Path) -> bool:
    return (run / CHECKPOINT_NAME).exists() and bool(load_checkpoint(run / CHECKPOINT_NAME).get("finished"))


def screen(candidates: dict, data_root, out: Path, share: float, *, dataset_kwargs=None, progress=True, log=print,
           argv=None) -> dict[str, dict]:
    """{name: proxy scores} of each candidate (name -> RunSettings) trained with ``share`` of its
    epochs (at least one) into ``out``/screening/<name>."""
    found = {}
    for name, settings in candidates.items():
        s = copy.deepcopy(settings)
        s.train.epochs = max(1, math.ceil(share * settings.train.epochs))
        run = out / SCREENING / name
        if not _finished(run):
            log(f"screening {name}: {s.train.epochs} of {settings.train.epochs} epochs")
            train(s, data_root, run, resume=(run / CHECKPOINT_NAME).exists(), dataset_kwargs=dict(dataset_kwargs or {}),
                  progress=progress, log=log, argv=argv)
        loaded = load_run(run)
        data = dict(loaded.settings.train.data)
        dataset = load_dataset(data.pop("root"), **data, log=None, progress=False)
        val = validation_images(dataset, loaded.settings)
        if not val:
            raise SsimaeError("--model auto needs held-back defect-free images to compare the candidates "
                              "(--val-fraction > 0 and enough training images)", run)
        found[name] = proxy_scores(Detector.load(loaded), val)
        log(f"screening {name}: proxy {found[name]['proxy']:.4f} (pixel AUC {found[name]['pixel_auc']:.4f}, "
            f"image AUC {found[name]['image_auc']:.4f} on {found[name]['images']} held-back images with "
            f"pasted stains and scratches)")
    return found


def continues(settings) -> bool:
    """Whether the chosen candidate's screening run is trained on to the full epochs (a constant
    learning rate: the same steps as one run) rather than trained again from the start (a
    schedule over the whole run, e.g. cosine: resumed, its rate would climb back from the
    screening's annealed end; on Magnetic Tile DRAEM resumed so gave 0.858 pixel AUC against
    0.912 / 0.950 for its runs from the start, docs/results/suite/)."""
    return settings.train.schedule == "constant"


def train_auto(candidates: dict, data_root, out, *, share: float, dataset_kwargs=None, progress=True, log=print,
               argv=None) -> Path:
    """Screen ``candidates`` (name -> RunSettings, in order of preference on ties), train the
    best on to its full epochs in ``out``; returns the checkpoint path."""
    out = Path(out)
    if (out / CHECKPOINT_NAME).exists():
        raise SsimaeError(f"already holds {CHECKPOINT_NAME}; choose another --out", out)
    found = screen(candidates, data_root, out, share, dataset_kwargs=dataset_kwargs, progress=progress, log=log,
                   argv=argv)
    ranking = proxy_rank(found)
    chosen = ranking[0]
    go_on = continues(candidates[chosen])
    log(f"chosen: {chosen} (proxy {found[chosen]['proxy']:.4f}; ranking {', '.join(ranking)}); "
        + (f"training it on to {candidates[chosen].train.epochs} epochs" if go_on else
           f"training it from the start for {candidates[chosen].train.epochs} epochs (its learning-rate "
           f"schedule spans the whole run)"))
    if go_on:
        with RunLock(out, "ssimae train --model auto"):  # the chosen screening run becomes the run, atomically
            for name in RUN_FILES:
                src = out / SCREENING / chosen / name
                if src.exists():
                    atomic_write_bytes(out / name, src.read_bytes())
    path = train(copy.deepcopy(candidates[chosen]), data_root, out, resume=go_on,
                 dataset_kwargs=dict(dataset_kwargs or {}), progress=progress, log=log, argv=argv)
    with RunLock(out, "ssimae train --model auto"):
        record_entry(out, "selection", {"chosen": chosen, "ranking": ranking, "screen_share": share,
                                        "candidates": found,
                                        "proxy": "stains and scratches pasted into the held-back defect-free "
                                                 "images; mean of pixel ROC AUC (with the opening) and image ROC AUC"})
    return path

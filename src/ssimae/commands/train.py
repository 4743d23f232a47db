"""``ssimae train``: train one model in a locked run folder, choose its threshold on the
held-back validation images, write the run (:func:`ssimae.runs.checkpoint.save_run`)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ssimae.core.residual import check_residual
from ssimae.core.thresholds import supportable_rate
from ssimae.errors import SsimaeError
from ssimae.inference.calibration import calibrate
from ssimae.inference.detector import Detector
from ssimae.io.folders import RunLock
from ssimae.models import get_model
from ssimae.models.device import pick_device
from ssimae.runs.checkpoint import CHECKPOINT_NAME, TRAINING, save_run
from ssimae.runs.options import DATA_FOLDERS
from ssimae.runs.settings import RunSettings
from ssimae.training.loop import SingleProcess, fit


def train(run: RunSettings, data_root: str | None, out: str | Path, *, resume: bool = False,
          dataset_kwargs: dict | None = None, progress: bool = True, log=print, argv: list[str] | None = None,
          par: SingleProcess | None = None) -> Path:
    """Train one model and choose its threshold; returns the checkpoint path (``out``/model.pt).
    ``argv``: the command line, recorded with the package versions in ``out``/run_info.json.
    ``par``: the processes training the run together (:func:`ssimae.training.loop.fit`; under
    torchrun :class:`ssimae.cluster.ddp.DdpTraining`): only rank 0 locks, chooses the
    threshold and writes.

    ``out`` is locked while training (:class:`ssimae.io.folders.RunLock`): a second writer
    into the same folder is refused."""
    check_before_work(run, data_root, dataset_kwargs or {})
    if par is not None and not resume:  # a resumed run is checked by fit, with its own settings
        par.check(run.train)  # under torchrun: batches that split evenly, no time budget
    if par is not None and not par.is_main:
        fit(run, data_root, out, resume=resume, dataset_kwargs=dataset_kwargs, argv=argv, par=par)
        return Path(out) / CHECKPOINT_NAME
    with RunLock(out, TRAINING):
        trained = fit(run, data_root, out, resume=resume, dataset_kwargs=dataset_kwargs, progress=progress, log=log,
                      argv=argv, par=par)
        s = trained.settings
        found = calibrate(Detector(trained.network, trained.model, s.inference, s.train.params, trained.device),
                          trained.val_paths, progress)
        inference = s.inference
        if found.threshold is None:
            log("no validation images: no default threshold stored (predict will need --threshold)")
        else:
            inference = replace(inference, threshold=found.threshold, residual_stats=found.residual_stats,
                                image_threshold=found.image_threshold, image_threshold_images=found.images)
            log(f"default threshold {found.threshold:.6g} ({inference.threshold_rule} rule on "
                f"{len(trained.val_paths)} validation images" +
                (f", regions up to {inference.min_defect_area} px allowed)" if inference.min_defect_area else ")")
                + f"; image threshold {found.image_threshold:.6g} ({inference.image_score} score, "
                  f"{inference.image_threshold_rule} rule, at most {inference.image_fpr:g} of good images rejected; "
                  f"{found.images} images can show a rate down to {supportable_rate(found.images):.2g})")
        path = Path(out) / CHECKPOINT_NAME
        save_run(path, RunSettings(s.train, inference), trained.state)
    return path


def check_before_work(run: RunSettings, data_root, dataset_kwargs: dict) -> None:
    """Everything that can be checked before the run folder is created: the settings (types,
    ranges, ceilings, known names), the device, the residual against the model's outputs, and
    that the given dataset folders are folders. SsimaeError (one line) otherwise."""
    run.train.validate()
    run.inference.validate()
    pick_device(run.train.device)
    model = get_model(run.train.model)
    check_residual(run.inference.residual or model.default_residual, model.outputs)
    for folder in [data_root] + [dataset_kwargs.get(k) for k in DATA_FOLDERS]:
        if folder is not None and not Path(folder).is_dir():
            raise SsimaeError("no such dataset folder" if not Path(folder).exists() else "not a folder", folder)

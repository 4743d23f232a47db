"""The paper's comparison (its Table 1 models side by side) on any dataset.

Each model is trained with the same data, seed and budget, then scored on the same test
images with the paper's protocol. Besides each model's own residual, the l2-AE is also
scored with the SSIM residual and the SSIM-AE with the l2 residual, so the effect of the
training loss and of the residual map can be told apart.

Writes to OUT: runs/<model>/ (checkpoints), reports/<model>-<residual>/ (metrics.json,
roc.csv, roc.png, pro.png, report.html; the model's own residual's report shows every test
image), roc.png (all curves), examples.png (input, reconstructions, residuals, ground
truth), results.md and results.json (the table) and report.html (the table, the figures and
links to the models' reports).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path

from ssimae.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint
from ssimae.core.verdict import GOOD
from ssimae.data.datasets import load_dataset
from ssimae.inference.detector import Detector
from ssimae.errors import SsimaeError
from ssimae.commands.evaluate import report, score_and_show, verdict_thresholds
from ssimae.io.files import atomic_write_text, json_safe
from ssimae.io.folders import RunLock
from ssimae.io.images import read_image, read_mask
from ssimae.models import get_model
from ssimae.reporting.plots import comparison_figure, plot_roc
from ssimae.reporting.tables import markdown_table
from ssimae.reporting.html import REPORT_NAME, write_report
from ssimae.runs.settings import RunSettings
from ssimae.commands.train import train
from ssimae.commands.calibrate import calibrate_once

TABLE_COLUMNS = ["model", "residual", "pixel_roc_auc", "pixel_roc_auc_fpr30", "pro_auc_fpr30", "image_roc_auc",
                 "train_minutes", "patches_per_s"]


def example_indices(types: list[str], n: int = 4, defect_areas: list[int] | None = None) -> list[int]:
    """Up to ``n`` test images for the figure: one of each defect type in turn, then a good one.

    Within a type, images are taken in dataset order, or by decreasing defect area when
    ``defect_areas`` (defect pixels per test image) is given, so the figure shows defects
    that are visible at its scale.
    """
    order: list[int] = []
    by_type: dict[str, list[int]] = {}
    for i, t in enumerate(types):
        by_type.setdefault(t, []).append(i)
    if defect_areas is not None:
        for t in by_type:
            by_type[t].sort(key=lambda i: -defect_areas[i])
    defect_types = [t for t in by_type if t != GOOD]
    k = 0
    while len(order) < n - 1 and any(k < len(by_type[t]) for t in defect_types):
        for t in defect_types:
            if k < len(by_type[t]) and len(order) < n - 1:
                order.append(by_type[t][k])
        k += 1
    if GOOD in by_type:
        order.append(by_type[GOOD][0])
    return order[:n]


def _train_or_reuse(run: RunSettings, data_root, run_dir: Path, dataset_kwargs, progress, log) -> None:
    ckpt = run_dir / CHECKPOINT_NAME
    name = run.train.model
    if ckpt.exists():
        state = load_checkpoint(ckpt)
        if state["finished"] or state["settings"].inference.threshold is not None:
            log(f"{name}: reusing the trained run in {run_dir}")
            return
        log(f"{name}: resuming the interrupted run in {run_dir}")
        train(run, data_root, run_dir, resume=True, progress=progress, log=log)
        return
    train(run, data_root, run_dir, dataset_kwargs=dataset_kwargs, progress=progress, log=log)


def _training_time(run_dir: Path) -> tuple[float, float]:
    """(minutes in the training loop, patches/s over the whole run), from train_log.csv.

    Read from the log rather than timed here, so a reused or resumed run reports its
    real training time.
    """
    rows = list(csv.DictReader((run_dir / "train_log.csv").open()))
    patches = sum(int(r["patches"]) for r in rows)
    seconds = sum(int(r["patches"]) / max(float(r["patches_per_s"]), 1e-9) for r in rows)
    return seconds / 60, (patches / seconds if seconds else float("nan"))


def compare(runs: list[RunSettings], data_root, out, *, dataset_kwargs: dict | None = None,
            progress: bool = True, log=print, n_examples: int = 4, extra_links=(), calibrate_on=None,
            extra_summary=()) -> list[dict]:
    """Train and evaluate every run's model; write the table and figures; return the rows.

    Each model is scored with the residuals it lists (``Model.residuals()``, its own first).
    A model that cannot be trained here (``Model.prepare`` fails, e.g. the fm-AE without
    AlexNet weights) is skipped with a notice and a row saying why. ``calibrate_on``: a folder
    of defect-free images on which each run's thresholds are set after training and before
    scoring, as ``ssimae calibrate RUN --good FOLDER`` sets them (:func:`calibrate_once`).
    ``extra_summary``: lines added to the report's summary.
    """
    with RunLock(out, "ssimae compare"):
        return _compare(runs, data_root, Path(out), dict(dataset_kwargs or {}), progress, log, n_examples, extra_links,
                        calibrate_on, tuple(extra_summary))


def _compare(runs: list[RunSettings], data_root, out: Path, dataset_kwargs: dict, progress, log, n_examples: int,
             extra_links, calibrate_on, extra_summary) -> list[dict]:
    """:func:`compare` inside the output folder's lock."""
    if runs:
        dataset_kwargs.setdefault("seed", runs[0].train.seed)
    dataset = load_dataset(data_root, **dataset_kwargs, log=log, progress=progress) if runs else None
    if dataset is None or not dataset.test:
        raise SsimaeError("no test images to compare on", data_root)
    types = [s.defect_type for s in dataset.test]
    areas = [0 if s.mask is None else int(read_mask(s.mask).sum()) for s in dataset.test]
    keep = example_indices(types, n_examples, areas)
    rows, curves, per_model, masks, links = [], {}, {}, [], list(extra_links)
    for run in runs:
        name = run.train.model
        model = get_model(name)
        try:
            run.train.params = model.prepare(run.train.params)
        except SsimaeError as e:
            log(f"skipping the {model.title}: {e}")
            rows.append({"model": name, "residual": f"skipped: {e.problem}"})
            continue
        run_dir = out / "runs" / name
        log(f"== {model.title} ==")
        _train_or_reuse(run, data_root, run_dir, dataset_kwargs, progress, log)
        if calibrate_on is not None:
            calibrate_once(run_dir, calibrate_on, device=run.train.device, progress=progress, log=log)
        train_minutes, patches_per_s = _training_time(run_dir)
        detector = Detector.load(run_dir, run.train.device)
        residuals = (detector.default_residual,) + tuple(r for r in model.residuals() if r != detector.default_residual)
        own_dir = out / "reports" / f"{name}-{residuals[0]}"
        scores, image_rows = score_and_show(detector, dataset, residuals, own_dir, progress=progress, keep=keep)
        for residual in residuals:
            m = report(scores, residual, out / "reports" / f"{name}-{residual}", detector,
                       images=image_rows.rows if residual == residuals[0] else None,
                       extra=verdict_thresholds(detector, residual == residuals[0]))
            links.append((f"{model.title}, {residual} residual: metrics, curves"
                          + (" and every test image" if residual == residuals[0] else ""),
                          f"reports/{name}-{residual}/{REPORT_NAME}"))
            curve = m.pop("roc")
            curves[f"{model.title}, {residual} residual"] = (curve.fpr, curve.tpr, curve.auc)
            rows.append({"model": name, "residual": residual, **{k: m[k] for k in TABLE_COLUMNS[2:6]},
                         "per_type": m.get("per_type"), "train_minutes": train_minutes,
                         "patches_per_s": patches_per_s})
        per_model[name] = {i: {"reconstruction": scores.reconstructions[i], "residual": scores.maps[residuals[0]][i]}
                           for i in keep}
        masks = scores.masks
    if curves:
        plot_roc(curves, out / "roc.png", title="Pixel-level ROC, all models")
        figure_rows = [{"name": f"{dataset.test[i].defect_type}\n{dataset.test[i].image.name}",
                        "image": read_image(dataset.test[i].image, color=any(r.inference.preprocess.color
                                                                             for r in runs)),
                        "mask": masks[i],
                        "models": {m: per_model[m][i] for m in per_model}} for i in keep]
        comparison_figure(figure_rows, list(per_model), out / "examples.png")
    table = markdown_table(rows, TABLE_COLUMNS)
    atomic_write_text(out / "results.md", table + "\n")
    write_report(out, title="ssimae compare", metrics=rows, metric_columns=TABLE_COLUMNS, links=links,
                 figures=[(c, f) for c, f in (("pixel-level ROC, all models", "roc.png"),
                                              ("examples: input, reconstructions, residuals, ground truth",
                                               "examples.png")) if (out / f).exists()],
                 summary=[f"{len(dataset.test)} test images of {data_root}; the table is results.md / results.json",
                          *extra_summary])
    atomic_write_text(out / "results.json", json.dumps(json_safe(rows), indent=2))
    log(table)
    return rows

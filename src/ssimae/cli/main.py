"""The ``ssimae`` command line: train, evaluate, predict, calibrate, export, fuse, serve, compare, demo, make-demo-data.

Bad input ends with one line ``ssimae: error: <file>: <problem>`` and exit status 2.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import sys
import typing
from pathlib import Path

from ssimae.data.datasets import FORMATS
from ssimae.errors import SsimaeError, printable
from ssimae.models import MODELS, get_model
from ssimae.models.constants import NORMS
from ssimae.runs.settings import AUGMENTATIONS
from ssimae.runs.options import DATA_OPTIONS, FIXED_ON_RESUME, RECIPE_OPTIONS
from ssimae.runs.recipes import RECIPES, recipe_settings
from ssimae.core.residual import RESIDUALS
from ssimae.runs.settings import SCHEDULES



def _size(text: str):
    """'256' -> (256, 256); '256x320' (height x width) -> (256, 320)."""
    try:
        parts = [int(p) for p in text.lower().split("x")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or HxW, got {text!r}") from None
    if len(parts) == 1:
        parts = parts * 2
    if len(parts) != 2 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"expected N or HxW with positive sizes, got {text!r}")
    return tuple(parts)


def add_data_args(p: argparse.ArgumentParser, required: bool = False) -> None:
    g = p.add_argument_group("data")
    g.add_argument("--data", metavar="ROOT", required=required,
                   help="dataset folder (MVTec AD, NanoTWICE, Magnetic Tile; detected automatically)")
    g.add_argument("--format", choices=["auto", *FORMATS], default=None,
                   help="force the dataset layout (default: auto)")
    g.add_argument("--train-dir", help="generic layout: folder of defect-free training images")
    g.add_argument("--test-dir", help="generic layout: folder of test images (subfolders = defect types)")
    g.add_argument("--mask-dir", help="generic layout: folder of masks, matched by file name")
    g.add_argument("--mask-suffix", default=None, help="generic layout: mask name = image stem + suffix")
    g.add_argument("--test-fraction", type=float, default=None,
                   help="share of defect-free images kept for testing where the layout has no split (default 0.2)")
    g.add_argument("--skip-bad", action="store_true", default=None,
                   help="log and skip unreadable images instead of stopping")


def data_kwargs(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in DATA_OPTIONS if getattr(args, k, None) is not None}


def _model_options() -> dict[str, tuple[type, dict]]:
    """Command-line options that the registered models declare on their Params fields:
    {flag: (value type, field metadata)} (see :mod:`ssimae.models`)."""
    options: dict[str, tuple[type, dict]] = {}
    for model in MODELS.values():
        hints = typing.get_type_hints(model.Params)
        for f in dataclasses.fields(model.Params):
            if "flag" in f.metadata:
                tp = hints[f.name]
                args = [a for a in typing.get_args(tp) if a is not type(None)]
                parse = f.metadata.get("parse") or (args[0] if args else tp)  # "parse": a field's own reader
                options.setdefault(f.metadata["flag"], (parse, dict(f.metadata)))
    return options


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def add_train_args(p: argparse.ArgumentParser) -> None:
    from ssimae.runs.recipes import PRESETS
    from ssimae.runs.settings import InferenceSettings as I
    from ssimae.runs.settings import TrainSettings as T
    from ssimae.core.ssim import WINDOW_SIZE

    g = p.add_argument_group("training (paper defaults)")
    g.add_argument("--preset", choices=sorted(PRESETS), help="per-dataset defaults of the paper")
    g.add_argument("--epochs", type=int, default=None, help=f"epochs (default {T.epochs})")
    g.add_argument("--patches-per-epoch", type=int, default=None, help=f"random 128x128 crops per epoch (default {T.patches_per_epoch})")
    g.add_argument("--batch-size", type=int, default=None, help=f"patches per step (default {T.batch_size})")
    g.add_argument("--lr", type=float, default=None, help=f"Adam learning rate (default {T.lr:g})")
    g.add_argument("--weight-decay", type=float, default=None, help=f"Adam weight decay (default {T.weight_decay:g})")
    g.add_argument("--latent-dim", type=int, default=None, help=f"latent size d (default {T.latent_dim})")
    g.add_argument("--resize", type=_size, default=None, metavar="N|HxW",
                   help="resize images to this size before cropping (the paper: 256 for 512x512 textures)")
    g.add_argument("--scale", type=float, default=None, help="or scale images by this factor")
    g.add_argument("--color", action="store_true", default=None,
                   help="train and score RGB images (3 channels; SSIM averaged over them, l2 summed). Beyond "
                        "the paper, which is gray-only; default: gray")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--max-minutes", type=float, default=None, help="stop cleanly after this wall-clock budget")
    g.add_argument("--val-fraction", type=float, default=None,
                   help=f"share of training images held back to choose the threshold (default {T.val_fraction})")
    g.add_argument("--workers", type=int, default=None, help="data-loading worker processes (default 0)")
    g.add_argument("--device", default="auto", help="auto (cuda if available, the default), cpu, cuda, cuda:1 ...")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("recipes and budgets (beyond the paper; see ssimae.runs.recipes)")
    g.add_argument("--recipe", choices=list(RECIPES), default=None,
                   help="paper (the paper's training, the default of its four models), fast (measured best "
                        "at a CPU budget), inpaint / draem (the defaults of the models beyond the paper); "
                        "explicit options win over the recipe")
    g.add_argument("--budget-minutes", type=float, default=None,
                   help="train for this long on this machine: converted once into epochs and patches per epoch "
                        "(fewer patches per epoch when the budget is short) from the measured throughput (all "
                        "recorded, so the run repeats exactly); the log states the estimated end")
    g.add_argument("--schedule", choices=list(SCHEDULES), default=None,
                   help="learning rate: constant (paper) or cosine (warm-up, then decay to 0 at the end)")
    g.add_argument("--warmup", type=float, default=None, help="share of steps of linear warm-up (cosine schedule)")
    g.add_argument("--augment", choices=list(AUGMENTATIONS), default=None,
                   help="random flips, or flips and 90-degree turns, of each patch (default none)")
    g.add_argument("--l2-warmup", type=float, default=None,
                   help="share of steps trained with the l2 loss before the model's own (default 0)")
    g.add_argument("--norm", choices=list(NORMS), default=None,
                   help="batch: BatchNorm after each hidden convolution (not in Table 1; default none)")
    g.add_argument("--channels-last", action="store_true", default=None, help="NHWC memory format (speed only)")
    g.add_argument("--micro-batches", type=int, default=None,
                   help="cut each step's batch into N parts whose gradients are summed: the same step in less "
                        "memory (N = torchrun's process count does in one process what they do; default 1)")
    g = p.add_argument_group("inference (paper defaults, stored in the run)")
    g.add_argument("--residual", choices=list(RESIDUALS), default=None,
                   help="residual map of the run (default: the model's own)")
    g.add_argument("--min-defect-area", type=int, default=None,
                   help=f"threshold rule: largest region (px) allowed on validation images (default {I.min_defect_area})")
    add_rule_args(g)
    g.add_argument("--stride", type=int, default=None, help=f"sliding-window stride at test time (default {I.stride})")
    g.add_argument("--opening-diameter", type=int, default=None, help=f"opening disk diameter, 0 disables (default {I.opening_diameter})")
    g.add_argument("--ssim-window", type=int, default=None, help=f"SSIM window size K (default {WINDOW_SIZE})")
    g.add_argument("--ssim-uniform", action="store_true", help="uniform instead of Gaussian (sigma 1.5) SSIM window")
    g.add_argument("--smooth", type=float, default=None, metavar="SIGMA",
                   help="Gaussian smoothing of the residual map before thresholding (beyond the paper; default 0)")
    add_tiling_args(g)
    g = p.add_argument_group("model-specific (paper defaults)")
    for flag, (tp, meta) in _model_options().items():
        g.add_argument(flag, type=tp, default=None, metavar=meta.get("metavar"), help=meta.get("help"))


def add_tiling_args(g) -> None:
    """--tiling and --tile-size (how the network covers an image; InferenceSettings)."""
    from ssimae.runs.inference_settings import TILINGS, InferenceSettings as I

    g.add_argument("--tiling", choices=list(TILINGS), default=None,
                   help=f"window: the paper's sliding window of 128x128 patches (default {I.tiling}); whole: one pass "
                        "per mask over the whole image (fully convolutional models: inpaint, draem, draem-recon, "
                        "whose recipes choose it)")
    g.add_argument("--tile-size", type=int, default=None, metavar="PX",
                   help=f"--tiling whole: largest tile side; larger images are cut into overlapping tiles "
                        f"(default {I.tile_size})")


def _model_param(text: str) -> tuple[str, str]:
    """'name=value' -> (name, value) for --model-param."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip().replace("-", "_"), value.strip()


def add_rule_args(g) -> None:
    """--threshold-rule and the options of the rules (not --min-defect-area, which train has)."""
    from ssimae.core.thresholds import IMAGE_THRESHOLD_RULES, THRESHOLD_RULES
    from ssimae.core.verdict import IMAGE_SCORES
    from ssimae.runs.inference_settings import InferenceSettings as I

    g.add_argument("--threshold-rule", choices=list(THRESHOLD_RULES), default=None,
                   help=f"how the threshold is chosen on defect-free images (default: {I.threshold_rule} "
                        "for a new run, the run's own for calibrate; see ssimae.inference.calibration)")
    g.add_argument("--target-fpr", type=float, default=None,
                   help=f"fpr rule: share of defect-free pixels allowed above the threshold (default {I.target_fpr:g} / the run's)")
    g.add_argument("--quantile", type=float, default=None,
                   help=f"quantile rule: quantile of the defect-free images' scores (default {I.quantile:g} / the run's)")
    g.add_argument("--image-fpr", type=float, default=None,
                   help=f"image verdicts: share of defect-free images the image threshold may reject "
                        f"(default {I.image_fpr:g} / the run's; held to 1/n with n validation images)")
    g.add_argument("--image-threshold-rule", choices=list(IMAGE_THRESHOLD_RULES), default=None,
                   help="image verdicts: how the image threshold is set on the defect-free images' scores: gaussian (a "
                        "fitted normal tail, never below their largest score; the default / the run's) or order "
                        "(the score that rejects a share --image-fpr of them)")
    g.add_argument("--image-score", choices=list(IMAGE_SCORES), default=None,
                   help="image verdicts: the image's score, the maximum of its opened residual map or the mean of "
                        "its largest 1 %% (default: max, top1%% for the fast and inpaint recipes / the run's)")


def check_model_options(args: argparse.Namespace, models) -> None:
    """SsimaeError naming the model-specific options given (``--unet-width``, ...) that none of
    ``models`` takes: another model's options would be accepted and ignored."""
    own = {f.metadata["flag"] for m in models for f in dataclasses.fields(get_model(m).Params) if "flag" in f.metadata}
    foreign = [flag for flag in _model_options() if flag not in own and getattr(args, _dest(flag), None) is not None]
    if foreign:
        names = " and ".join(f"the {m} model" for m in models)
        raise SsimaeError(f"{', '.join(foreign)}: not an option of {names} (each is another model's option)")


def _given(args: argparse.Namespace, names) -> dict:
    return {n: getattr(args, n) for n in names if getattr(args, n, None) is not None}


def run_settings(args: argparse.Namespace, model: str, check: bool = True):
    """RunSettings from parsed options: explicit options > preset > recipe > defaults (which
    live in :mod:`ssimae.runs.settings` and the models' Params). ``check``: refuse the options
    of other models (:func:`check_model_options`; ``compare`` checks them for all its models)."""
    from ssimae.core.preprocess import Preprocess
    from ssimae.runs.recipes import apply_preset
    from ssimae.runs.settings import InferenceSettings, RunSettings, TrainSettings
    from ssimae.core.ssim import SsimOptions

    model = model or TrainSettings.model  # --model not given
    spec = get_model(model)
    if check:
        check_model_options(args, [model])
    opts = apply_preset(args.preset, {"latent_dim": args.latent_dim, "resize": args.resize})
    if opts.get("resize") is not None and args.scale is not None:
        raise SsimaeError("give --resize or --scale, not both")
    ssim_kw = {"window_size": args.ssim_window} if args.ssim_window is not None else {}
    ssim = SsimOptions(**ssim_kw, **({"gaussian": False} if args.ssim_uniform else {}))
    hints = typing.get_type_hints(spec.Params)
    params = {f.name: ssim for f in dataclasses.fields(spec.Params) if hints[f.name] is SsimOptions}
    params.update({f.name: getattr(args, _dest(f.metadata["flag"])) for f in dataclasses.fields(spec.Params)
                   if "flag" in f.metadata and getattr(args, _dest(f.metadata["flag"]), None) is not None})
    chosen, inference_chosen = recipe_settings(args.recipe or spec.recipe, latent_dim=opts.get("latent_dim"),
                                               **{n: getattr(args, n, None) for n in RECIPE_OPTIONS})
    train = TrainSettings(model=model, seed=args.seed, device=args.device, max_minutes=args.max_minutes,
                          params=spec.Params(**params), **chosen,
                          **_given(args, ["epochs", "patches_per_epoch", "val_fraction", "budget_minutes"]),
                          **({"num_workers": args.workers} if args.workers is not None else {}))
    resize = opts.get("resize")
    inference = InferenceSettings(preprocess=Preprocess(size=None if resize is None else tuple(resize), scale=args.scale,
                                                        color=bool(getattr(args, "color", None))),
                                  ssim=ssim, seed=args.seed, **inference_chosen,
                                  **_given(args, ["residual", "min_defect_area", "opening_diameter",
                                                  "threshold_rule", "target_fpr", "quantile", "image_fpr",
                                                  "image_threshold_rule", "tile_size"]))
    return RunSettings(train, inference)


def _refuse_on_resume(name: str, given, value, out) -> None:
    flag = "--" + name.replace("_", "-")
    raise SsimaeError(f"{flag} {given} differs from the run's {'(not set)' if value is None else value}: "
                      f"--resume continues a run with its "
                      f"own settings (drop {flag}, or train a new run into another --out)", out)


def check_resume_options(args: argparse.Namespace, saved) -> None:
    """SsimaeError if an option given with --resume differs from the run's own setting: the
    options of FIXED_ON_RESUME, and, when given explicitly on the command line, --seed,
    --preset, --ssim-uniform, --channels-last and the model's own options (--vae-samples, ...)."""
    for name, where in FIXED_ON_RESUME.items():
        given = getattr(args, name, None)
        value = saved
        for part in where.split("."):
            value = getattr(value, part)
        if given is not None and given != value:
            _refuse_on_resume(name, given, value, args.out)
    argv = getattr(args, "argv", None)
    if not argv or "train" not in argv:
        return
    explicit = given_options(args)
    t = saved.train
    if "seed" in explicit and args.seed != t.seed:
        _refuse_on_resume("seed", args.seed, t.seed, args.out)
    if "ssim_uniform" in explicit and saved.inference.ssim.gaussian:
        _refuse_on_resume("ssim_uniform", "(given)", "Gaussian SSIM window", args.out)
    if "channels_last" in explicit and not t.channels_last:
        _refuse_on_resume("channels_last", "(given)", "contiguous memory format", args.out)
    if "preset" in explicit:
        from ssimae.runs.recipes import apply_preset

        opts = apply_preset(args.preset, {"latent_dim": None, "resize": None})
        size = saved.inference.preprocess.size
        if opts.get("latent_dim") not in (None, t.latent_dim) or \
                (opts.get("resize") is not None and tuple(opts["resize"]) != (None if size is None else tuple(size))):
            _refuse_on_resume("preset", args.preset, f"latent_dim {t.latent_dim}, resize {size}", args.out)
    for f in dataclasses.fields(t.params):
        dest = _dest(f.metadata["flag"]) if "flag" in f.metadata else None
        if dest in explicit and getattr(args, dest) != getattr(t.params, f.name):
            _refuse_on_resume(dest, getattr(args, dest), getattr(t.params, f.name), args.out)


def cmd_train_auto(args) -> None:
    """``train --model auto``: each candidate's settings as the command line builds them (the
    candidate's options filling in those not given), then :func:`ssimae.commands.select.train_auto`."""
    from ssimae.runs.candidates import CANDIDATES, SCREEN_SHARE, check_share, parse_candidates

    if args.resume or args.config is not None:
        raise SsimaeError("--model auto starts a new run (without --resume or --config); a rerun into the same "
                          "--out reuses the finished screening runs")
    if args.data is None and args.train_dir is None:
        raise SsimaeError("give --data ROOT (or --train-dir for the generic layout)")
    share = check_share(SCREEN_SHARE if args.screen_share is None else args.screen_share)
    candidates = {}
    for name in parse_candidates(args.candidates):
        a = copy.copy(args)
        for key, value in CANDIDATES[name].items():
            if key != "model" and getattr(args, key, None) is None:
                setattr(a, key, value)
        candidates[name] = run_settings(a, CANDIDATES[name]["model"])
    from ssimae.commands.select import train_auto

    path = train_auto(candidates, args.data, args.out, share=share, dataset_kwargs=data_kwargs(args),
                      progress=not args.quiet, argv=getattr(args, "argv", None))
    print(f"checkpoint: {path}")


def cmd_train(args) -> None:
    if args.model == "auto":
        return cmd_train_auto(args)
    if args.candidates is not None or args.screen_share is not None:
        raise SsimaeError("--candidates and --screen-share go with --model auto")
    settings, root, data = train_inputs(args)
    if root is None and data.get("train_dir") is None and not args.resume:  # --resume: the run's own data
        raise SsimaeError("give --data ROOT (or --train-dir for the generic layout)")
    from ssimae.commands.train import train

    if args.resume and args.config is None:
        from ssimae.runs.checkpoint import CHECKPOINT_NAME, load_checkpoint

        ckpt = Path(args.out) / CHECKPOINT_NAME
        if ckpt.exists():
            saved = load_checkpoint(ckpt)["settings"]
            check_resume_options(args, saved)
            if args.epochs is None:  # keep the run's own length (a budget run's converted one too)
                settings.train.epochs = saved.train.epochs
    from ssimae.cluster.ddp import distributed_context

    par = distributed_context()  # under torchrun: this process's part of the run (ssimae.cluster.ddp)
    try:
        path = train(settings, root, args.out, resume=args.resume, dataset_kwargs=data, progress=not args.quiet,
                     argv=getattr(args, "argv", None), par=par)
    finally:
        if par is not None:
            par.close()
    if par is None or par.is_main:
        print(f"checkpoint: {path}")


class _Given(argparse.Namespace):
    """A namespace that argparse fills with the options given only: it looks as if every
    option were set already, so no default is written into it."""

    def __getattr__(self, name):
        if name.startswith("_"):  # argparse's own bookkeeping
            raise AttributeError(name)
        return None


def given_options(args) -> set[str]:
    """The dests of the options given explicitly on the `train` command line."""
    argv = list(args.argv)
    ns = _Given()
    args.parser.parse_args(argv[argv.index("train") + 1:], ns)
    return set(vars(ns))


def train_inputs(args):
    """(RunSettings, data root, dataset options) of `train`: from the options, or from the
    ``--config`` file with the options given explicitly overriding it (:mod:`ssimae.runs.config`)."""
    if args.config is None:
        # --resume without --model: the run's own model, whose options check_resume_options checks
        return run_settings(args, args.model, check=not (args.resume and args.model is None)), args.data, \
            data_kwargs(args)
    from ssimae.runs.config import for_rerun, override, read_config

    file_run = for_rerun(read_config(args.config))
    given = given_options(args)
    cli_run = run_settings(args, args.model if "model" in given else file_run.train.model)
    flags = {_dest(f.metadata["flag"]): f.name for f in dataclasses.fields(cli_run.train.params) if "flag" in f.metadata}
    run = override(file_run, cli_run, given, flags)
    data = dict(file_run.train.data)
    root = args.data if args.data is not None else data.pop("root", None)
    data.pop("root", None)
    data.pop("seed", None)  # the split's seed follows the run's (setdefault in training)
    data.update(data_kwargs(args))
    return run, root, data


def cmd_evaluate(args) -> None:
    from ssimae.commands.evaluate import evaluate

    changes = _given(args, ["tiling", "tile_size"])
    if args.model_param:
        changes["model_params"] = dict(args.model_param)
    m = evaluate(args.run, args.data, args.out, residual=args.residual, smooth=args.smooth,
                 dataset_kwargs=data_kwargs(args), changes=changes,
                 device=args.device, progress=not args.quiet)
    print(f"pixel ROC AUC {m['pixel_roc_auc']:.4f}   AUC to FPR 0.3 {m['pixel_roc_auc_fpr30']:.4f}   "
          f"PRO to FPR 0.3 {m['pro_auc_fpr30']:.4f}   image ROC AUC {m['image_roc_auc']:.4f}   "
          f"({m['n_images']} images) -> {args.out}/metrics.json")


class Verdicts:
    """The predictions.jsonl rows of a ``predict`` as the command line hands them on: each as
    one JSON line on stdout (``--json``, or no ``--out``), and the exit status of
    ``--fail-on-defect`` (1 when any image is defective, else 0)."""

    def __init__(self, print_json: bool, fail_on_defect: bool):
        self.print_json, self.fail_on_defect, self.any_defective = print_json, fail_on_defect, False

    def __call__(self, row: dict) -> None:
        self.any_defective |= bool(row["defective"])
        if self.print_json:
            print(json.dumps(row), flush=True)

    def status(self) -> int:
        return 1 if self.fail_on_defect and self.any_defective else 0


def cmd_predict(args) -> int:
    from ssimae.commands.predict import predict
    from ssimae.inference.engines import pick_engine

    args.engine = pick_engine(args.run, args.engine)  # auto: onnx for an export
    to_stdout = args.json or args.out is None
    verdicts = Verdicts(to_stdout, args.fail_on_defect)
    log = (lambda *a: print(*a, file=sys.stderr)) if to_stdout else print  # stdout: the JSON lines alone
    if args.ray is not None:
        from ssimae.cluster.ray_scoring import predict_on_ray
        from ssimae.reporting.tables import JSONL_NAME

        if args.out is None:
            raise SsimaeError("--ray writes its results into a folder: give --out DIR")
        predict_on_ray(args.run, args.inputs, args.out, address=args.ray, actors=args.ray_actors,
                       threads=args.ray_threads, threshold=args.threshold, save_raw=args.save_raw, device=args.device,
                       residual=args.residual, smooth=args.smooth, progress=not args.quiet, engine=args.engine,
                       skip_bad=args.skip_bad, log=log)
        for line in (Path(args.out) / JSONL_NAME).read_text(encoding="utf-8").splitlines():
            verdicts(json.loads(line))
        return verdicts.status()
    predict(args.run, args.inputs, args.out, threshold=args.threshold, save_raw=args.save_raw, device=args.device,
            residual=args.residual, smooth=args.smooth, progress=not args.quiet, engine=args.engine,
            skip_bad=args.skip_bad, log=log, emit=verdicts)
    return verdicts.status()


def cmd_export(args) -> None:
    from ssimae.commands.export import export

    if args.good and not args.int8:
        raise SsimaeError("--good calibrates an int8 export: give --int8 too")
    path = export(args.run, args.out, int8=args.int8, good=args.good)
    from ssimae.inference.fusion import MEMBERS_DIR, is_fusion

    also = f"its members' exports in {path.parent / MEMBERS_DIR}" if is_fusion(path.parent) else \
        f"settings also in {path.parent / 'ssimae.json'}"
    print(f"exported {args.run} to {path}{' (int8)' if args.int8 else ''} ({also})")


def cmd_fuse(args) -> None:
    from ssimae.commands.fuse import fuse

    fuse(args.runs, args.out, images=args.images, device=args.device, progress=not args.quiet)


def cmd_calibrate(args) -> None:
    from ssimae.commands.calibrate import recalibrate, undo_calibration

    if args.undo or not args.good:
        if bool(args.undo) == bool(args.good):
            raise SsimaeError("give --good DIR (calibrate anew) or --undo (restore the previous thresholds)")
        return undo_calibration(args.run)
    recalibrate(args.run, args.good, device=args.device, progress=not args.quiet, threshold_rule=args.threshold_rule,
                target_fpr=args.target_fpr, quantile=args.quantile, min_defect_area=args.min_defect_area,
                image_fpr=args.image_fpr, image_score=args.image_score, image_threshold_rule=args.image_threshold_rule)


def cmd_make_demo_data(args) -> None:
    from ssimae.data.demo_data import make_color_demo_data, make_demo_data

    out = (make_color_demo_data if args.color else make_demo_data)(args.dir, seed=args.seed)
    print(f"{'colour ' if args.color else ''}demo dataset written to {out}")


def cmd_demo(args) -> None:
    from ssimae.commands.demo import run_demo

    run_demo(args.out, seed=args.seed, minutes_per_model=args.minutes_per_model, progress=not args.quiet,
             color=args.color)


def cmd_compare(args) -> None:
    from ssimae.commands.compare import compare

    if args.data is None and args.train_dir is None:
        raise SsimaeError("give --data ROOT (or --train-dir for the generic layout)")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise SsimaeError(f"--models: name at least one model ({', '.join(MODELS)})")
    check_model_options(args, models)
    compare([run_settings(args, m, check=False) for m in models], args.data, args.out, dataset_kwargs=data_kwargs(args), progress=not args.quiet)


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose mistakes end with one line, ``ssimae: error: <problem>`` (a wrong
    choice lists the valid values), and exit status 2, instead of the usage block. Subcommands'
    parsers are of this class too (argparse makes them of their parent's class)."""

    def error(self, message: str):
        self.exit(2, f"ssimae: error: {printable(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from ssimae._version import __version__

    parser = OneLineParser(prog="ssimae", description=(
        "Unsupervised defect segmentation with SSIM-autoencoders (Bergmann et al., VISAPP 2019). "
        "Train on defect-free images, then segment defects in new ones."))
    parser.add_argument("--version", action="version", version=f"ssimae {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("train", help="train an autoencoder on defect-free images",
                       description="Train one autoencoder of the paper on the defect-free images of a dataset.")
    p.add_argument("--model", choices=[*MODELS, "auto"], default=None,
                   help="which model (default ssim); auto: screen the --candidates on a share of the budget, "
                        "rank them on held-back good images with pasted stains and scratches, train the best on")
    p.add_argument("--candidates", default=None, metavar="A,B",
                   help="--model auto: the configurations to screen (default ssim-fast,inpaint,draem; "
                        "see ssimae.runs.candidates)")
    p.add_argument("--screen-share", type=float, default=None,
                   help="--model auto: share of the epochs each candidate is screened with (default 0.25)")
    p.add_argument("--out", required=True, metavar="RUN", help="run folder to write (model.pt, config.json, log)")
    p.add_argument("--resume", action="store_true", help="continue the interrupted run in --out")
    p.add_argument("--config", metavar="FILE", default=None,
                   help="repeat a run: its RUN/config.json, or a JSON/YAML file of the same keys; options given "
                        "here override the file")
    add_data_args(p)
    add_train_args(p)
    p.set_defaults(func=cmd_train, parser=p)

    p = sub.add_parser("evaluate", help="pixel ROC / PRO / image AUC of a trained run on a test set",
                       description="Evaluate a run with the paper's protocol; writes metrics.json, roc.csv, roc.png.")
    p.add_argument("run", metavar="RUN", help="run folder or checkpoint file")
    p.add_argument("--out", required=True, metavar="REPORT", help="report folder")
    p.add_argument("--residual", choices=list(RESIDUALS), default=None,
                   help="residual map to score with (default: the run's own)")
    p.add_argument("--smooth", type=float, default=None, metavar="SIGMA",
                   help="Gaussian smoothing of the residual map (default: the run's own)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    g = p.add_argument_group("test-time inference (default: the run's own)")
    add_tiling_args(g)
    g.add_argument("--model-param", type=_model_param, action="append", default=None, metavar="NAME=VALUE",
                   help="change a model setting that inference may change, e.g. cell_sizes=8 or mask_sets=2 "
                        "(inpaint: fewer passes); repeat for more")
    add_data_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("predict", help="heat map, defect mask and overlay for images",
                       description="Segment defects in images or folders (searched recursively).")
    p.add_argument("run", metavar="RUN", help="run folder or checkpoint file")
    p.add_argument("inputs", nargs="+", metavar="INPUT",
                   help="image files, folders, or list files (.txt/.lst: one image path a line, relative to the list)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder to write heat maps, masks, overlays, predictions.csv/.jsonl and report.html into; "
                        "without it nothing is written and each image's verdict is printed as one JSON line")
    p.add_argument("--json", action="store_true",
                   help="print each image's verdict as one JSON line (its predictions.jsonl row) on stdout, "
                        "also with --out; the summary goes to stderr")
    p.add_argument("--fail-on-defect", action="store_true",
                   help="exit status 1 when any image is defective, 0 when none is (2 stays the error status)")
    p.add_argument("--threshold", type=float, default=None,
                   help="pixel threshold, which draws the masks (default: the stored one); the stored image threshold "
                        "decides the verdict (for a run without one, this does)")
    p.add_argument("--save-raw", action="store_true", help="also write the float32 residual map as .npy")
    g = p.add_argument_group("scoring on Ray (archives; needs pip install 'ssimae[ray]')")
    g.add_argument("--ray", nargs="?", const="auto", default=None, metavar="auto|ADDRESS",
                   help="score with a pool of Ray actors: auto (the cluster of RAY_ADDRESS or of this machine, else a "
                        "local one) or a cluster's address; restartable: a rerun into the same --out skips the "
                        "images already done")
    g.add_argument("--ray-actors", type=int, default=None, metavar="N",
                   help="actors (one detector each; default: the cluster's CPUs / --ray-threads)")
    g.add_argument("--ray-threads", type=int, default=1, metavar="N", help="CPU threads per actor (default 1)")
    p.add_argument("--skip-bad", action="store_true", help="report and skip unreadable images instead of stopping")
    p.add_argument("--residual", choices=list(RESIDUALS), default=None,
                   help="residual map (default: the run's own; the stored threshold belongs to it)")
    p.add_argument("--smooth", type=float, default=None, metavar="SIGMA",
                   help="Gaussian smoothing of the residual map (default: the run's own)")
    p.add_argument("--device", default="auto")
    p.add_argument("--engine", choices=["auto", "torch", "onnx"], default="auto",
                   help="torch (RUN: a run folder or checkpoint), onnx (RUN: a folder written by `ssimae export`, "
                        "run by onnxruntime without torch; needs pip install 'ssimae[onnx]') or auto (default: onnx "
                        "for an export, torch for a run)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("calibrate", help="choose a run's threshold anew on new defect-free images",
                       description="Recompute the threshold of a trained run from defect-free images (a new camera, "
                                   "new lighting) without retraining; the previous value is kept in the run's history.")
    p.add_argument("run", metavar="RUN", help="run folder or checkpoint file (updated in place, atomically)")
    p.add_argument("--good", action="append", metavar="DIR",
                   help="folder (searched recursively) or file of defect-free images; repeat for more")
    p.add_argument("--undo", action="store_true",
                   help="restore the thresholds the last calibrate replaced (kept in the run's threshold_history)")
    add_rule_args(p)
    p.add_argument("--min-defect-area", type=int, default=None,
                   help="max-region rule: largest region (px) allowed on the images (default: the run's)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("export", help="export a run for inference without PyTorch (ONNX)",
                       description="Write DIR/model.onnx and DIR/ssimae.json (threshold, preprocessing, stride, "
                                   "residual and its options, opening, model; also in the ONNX metadata). "
                                   "Run it with `ssimae predict --engine onnx DIR ...` or ssimae.runtime.")
    p.add_argument("run", metavar="RUN", help="run folder or checkpoint file")
    p.add_argument("--format", choices=["onnx"], default="onnx", help="export format (default onnx)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--int8", action="store_true",
                   help="quantize to int8 for the CPU (static QDQ, calibrated on the run's validation images or "
                        "--good): DIR/model.onnx is the int8 graph, DIR/model-fp32.onnx the float32 one")
    p.add_argument("--good", action="append", metavar="DIR", default=None,
                   help="with --int8: folder or file of defect-free images to calibrate on (repeat for more; "
                        "default: the run's validation images)")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("fuse", help="fuse two or more runs: their standardised residual maps added (e.g. draem + inpaint)",
                       description="Write DIR/fusion.json and DIR/members/0, 1, ... (copies of the runs). Each run's "
                                   "own residual map is standardised by its mean and standard deviation on defect-free "
                                   "images and the maps are added; the pixel and image thresholds are set on the same "
                                   "images. Score DIR as any run (predict, evaluate, serve, export).")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (or exports) reading images alike")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write")
    p.add_argument("--images", action="append", metavar="DIR", default=None,
                   help="folder or file of defect-free images to calibrate on (repeat for more; default: the first "
                        "run's validation images)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("serve", help="serve a run or an export over HTTP (batched; needs ssimae[serve])",
                       description="POST /v1/predict (an image -> its verdict as a predictions.jsonl row, or "
                                   "?mask=png / ?overlay=png), GET /v1/model, GET /healthz, and a page at /. "
                                   "Listens on 127.0.0.1 unless told otherwise. Without torch: python -m ssimae.serve.")
    from ssimae.serve.command import add_arguments, serve

    add_arguments(p)
    p.set_defaults(func=serve)

    p = sub.add_parser("compare", help="train and evaluate several models side by side (the paper's comparison)",
                       description="Train each model with the same data, seed and budget; evaluate all.")
    p.add_argument("--models", default=",".join(MODELS), help=f"comma-separated (default {','.join(MODELS)})")
    p.add_argument("--out", required=True, metavar="DIR")
    add_data_args(p)
    add_train_args(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("demo", help="the whole job on built-in synthetic data (no download)",
                       description="Make the demo dataset, train the SSIM-AE, the l2-AE (the paper's pair) and the "
                                   "inpainting U-Net (beyond the paper) on fixed patch budgets, evaluate, report.")
    p.add_argument("--out", default="demo-out", metavar="DIR", help="report folder (default demo-out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--minutes-per-model", type=float, default=None, help="training budget per model")
    p.add_argument("--color", action="store_true",
                   help="the colour variant: colour demo data (cut and hue defects) and --color runs (beyond the paper)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("make-demo-data", help="write the synthetic demo dataset (MVTec layout)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--color", action="store_true",
                   help="the colour variant (RGB; defect types cut and hue, an isoluminant stain), for --color runs")
    p.set_defaults(func=cmd_make_demo_data)
    return parser


NO_TORCH = ("this command needs PyTorch, which is not installed here; without torch, run an export "
            "(ssimae export) with: python -m ssimae.runtime EXPORT IMAGE... --out DIR")


def main(argv: list[str] | None = None) -> int:
    """The ``ssimae`` command. Parsing, ``--help``, ``--version`` and the checks before any work
    import no torch (tests/integration/test_fast_start.py); a command imports torch where it needs it."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)  # an option's own reader may raise SsimaeError (--cell-sizes)
        args.argv = list(sys.argv[1:] if argv is None else argv)  # recorded by train; read by --config
        status = args.func(args)
    except SsimaeError as e:
        print(f"ssimae: error: {printable(str(e))}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:
        if e.name != "torch":
            raise
        print(f"ssimae: error: {NO_TORCH}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # a command may say what was kept and how to go on (train: --resume)
        print(f"ssimae: interrupted{'; ' + printable(str(e)) if str(e) else ''}", file=sys.stderr)
        return 130
    return status or 0


if __name__ == "__main__":
    sys.exit(main())

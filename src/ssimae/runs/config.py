"""Runs you can repeat: ``ssimae train --config RUN/config.json`` and the record of a command.

A config file holds the settings of a run as its ``config.json`` does (``{"version": 2,
"train": {...}, "inference": {...}}``), in JSON or YAML (``.yaml``/``.yml``, needs PyYAML);
a hand-written file may leave out ``version`` and any setting (defaults apply). Unknown
keys and wrong types stop with one line naming the file and the setting
(:func:`ssimae.runs.settings.from_dict`).

What training computed rather than was told (the threshold, the validation statistics)
is dropped, and a time budget already converted into epochs is replayed by its epochs, so
the file of a finished run repeats that run. Options given on the command line override
the file: :data:`ssimae.runs.options.OPTIONS` says which settings each option sets.

Every ``ssimae train`` also appends its exact command line and the versions of ssimae,
Python, torch and the numeric libraries to ``RUN/run_info.json`` (:func:`record_invocation`).
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
from importlib import metadata
from pathlib import Path

from ssimae.errors import SsimaeError
from ssimae.io.files import atomic_write_text
from ssimae.runs.options import OPTION_FIELDS

RUN_INFO = "run_info.json"
VERSIONED = ("ssimae", "torch", "numpy", "scipy", "scikit-image", "scikit-learn", "pillow", "onnx", "onnxruntime")


MAX_CONFIG_BYTES = 1 << 20  # a config file is read only up to this size (1 MiB; a run's config.json is ~3 kB)
MAX_CONFIG_DEPTH = 16  # nesting of mappings and lists (settings nest 4 deep)


def read_config(path: str | os.PathLike):
    """The RunSettings of a JSON or YAML config file, read with limits: at most
    :data:`MAX_CONFIG_BYTES`, UTF-8, nested at most :data:`MAX_CONFIG_DEPTH` deep, YAML by
    PyYAML's safe loader with aliases refused; SsimaeError (one line naming the file) for
    anything else, unknown keys or wrong types."""
    from ssimae.runs.settings import SETTINGS_VERSION, RunSettings

    path = Path(path)
    text = _read_text(path)
    data = _parse_yaml(text, path) if path.suffix.lower() in (".yaml", ".yml") else _parse_json(text, path)
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise SsimaeError(f"nested more than {MAX_CONFIG_DEPTH} levels deep", path)
    if not isinstance(data, dict):
        raise SsimaeError(f"a config must be a mapping with train and inference settings, got {type(data).__name__}",
                          path)
    data.setdefault("version", SETTINGS_VERSION)
    return RunSettings.from_dict(data, os.fspath(path))


def _read_text(path: Path) -> str:
    """At most MAX_CONFIG_BYTES of ``path`` (more is an error, so /dev/zero stops at once), as UTF-8."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise SsimaeError(f"cannot read the config file ({e.strerror or e})", path) from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise SsimaeError(f"config file larger than {MAX_CONFIG_BYTES >> 20} MiB", path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SsimaeError(f"config file is not UTF-8 (byte {e.start})", path) from None


def _parse_json(text: str, path: Path):
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise SsimaeError(f"not valid JSON ({e.msg} at line {e.lineno}, column {e.colno})", path) from None
    except RecursionError:
        raise SsimaeError(f"not a config: nested more than {MAX_CONFIG_DEPTH} levels deep", path) from None


def _parse_yaml(text: str, path: Path):
    try:
        import yaml
    except ImportError:
        raise SsimaeError("YAML configs need PyYAML: pip install 'ssimae[yaml]' (or pip install pyyaml)",
                          path) from None

    class NoAliases(yaml.SafeLoader):
        """The safe loader (no Python tags) that refuses aliases (no "billion laughs")."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                raise yaml.YAMLError("aliases (*name) are not allowed in a config")
            return super().compose_node(parent, index)

    try:
        return yaml.load(text, Loader=NoAliases)
    except yaml.YAMLError as e:
        raise SsimaeError(f"not valid YAML ({' '.join(str(e).split())[:160]})", path) from None
    except RecursionError:
        raise SsimaeError(f"not a config: nested more than {MAX_CONFIG_DEPTH} levels deep", path) from None


def _depth(data) -> int:
    """Nesting depth of mappings and lists (a scalar: 0), without recursion."""
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, d = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, d)
            stack.extend((v, d + 1) for v in (node.values() if isinstance(node, dict) else node))
    return deepest


def for_rerun(run):
    """The settings of a finished run made ready to train again: the threshold, the
    validation statistics and the threshold history are dropped (training computes the first
    two; a new run starts its own history: it is never an input), and a time budget that was
    converted into epochs is replayed by those epochs."""
    run.inference.threshold, run.inference.residual_stats, run.inference.threshold_history = None, {}, ()
    if run.train.measured_patches_per_s is not None:
        run.train.budget_minutes = None
    return run


def override(file_run, cli_run, given: set[str], param_flags: dict[str, str]):
    """``file_run`` with the settings that the explicitly ``given`` options (argparse dests)
    set taken from ``cli_run`` (the settings built from the command line for the same
    model). ``param_flags`` maps a model option's dest to its Params field."""
    t_file, t_cli = file_run.train, cli_run.train
    if "model" in given:
        t_file.model, t_file.params = t_cli.model, t_cli.params
        file_run.inference.residual = cli_run.inference.residual
    else:
        names = {param_flags[d] for d in given if d in param_flags}
        if given & {"ssim_window", "ssim_uniform"}:
            names.add("ssim")  # a model trained with SSIM takes the SSIM options too
        names &= {f.name for f in dataclasses.fields(t_file.params)}
        if names:
            t_file.params = dataclasses.replace(t_file.params, **{n: getattr(t_cli.params, n) for n in names})
    nested: dict[tuple[str, str], dict] = {}
    for dest in given:
        for dotted in OPTION_FIELDS.get(dest, ()):
            section, name, *sub = dotted.split(".")
            value = getattr(getattr(cli_run, section), name)
            if sub:  # one replace per frozen dataclass, so its checks see all new values at once
                nested.setdefault((section, name), {})[sub[0]] = getattr(value, sub[0])
            else:
                setattr(getattr(file_run, section), name, value)
    for (section, name), values in nested.items():
        obj = getattr(file_run, section)
        setattr(obj, name, dataclasses.replace(getattr(obj, name), **values))
    return file_run


def record_invocation(out: str | os.PathLike, argv: list[str] | None) -> Path:
    """Append this command line (None: called from Python) and the package versions to
    ``out``/run_info.json."""
    path = Path(out) / RUN_INFO
    try:
        info = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        info = {}
    runs = info.get("invocations", []) if isinstance(info, dict) else []
    runs.append({
        "argv": None if argv is None else ["ssimae", *argv], "cwd": os.getcwd(), "python": sys.version.split()[0],
        "platform": platform.platform(), "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "versions": package_versions(),
    })
    other = {k: v for k, v in info.items() if k != "invocations"} if isinstance(info, dict) else {}
    atomic_write_text(path, json.dumps({"invocations": runs, **other}, indent=2) + "\n")
    return path


def record_entry(out: str | os.PathLike, key: str, value) -> Path:
    """Set ``key`` of ``out``/run_info.json to ``value`` (JSON), keeping what it holds."""
    path = Path(out) / RUN_INFO
    try:
        info = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, json.JSONDecodeError):
        info = {}
    info = info if isinstance(info, dict) else {}
    info[key] = value
    atomic_write_text(path, json.dumps(info, indent=2) + "\n")
    return path


def package_versions() -> dict[str, str | None]:
    """{package: installed version or None} for the packages a run's numbers depend on."""
    out: dict[str, str | None] = {}
    for name in VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    from ssimae._version import __version__

    out["ssimae"] = __version__
    return out

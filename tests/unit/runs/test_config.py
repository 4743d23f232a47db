"""Runs you can repeat: `ssimae train --config RUN/config.json` (or a YAML file of the same
keys), command-line options overriding the file, and the recorded command line and versions."""
import json

import numpy as np
import pytest
import torch
from tests.helpers.clicheck import one_error_line
from tests.helpers.clicheck import TINY

from ssimae.runs.checkpoint import load_checkpoint
from ssimae.cli.main import build_parser, main, train_inputs


def inputs(argv):
    """What `ssimae train ARGV` would train: (RunSettings, data root, dataset options)."""
    args = build_parser().parse_args(argv)
    args.argv = list(argv)
    return train_inputs(args)


@pytest.mark.kernels  # exact by design under any kernels (see the comment in the test)
def test_config_repeats_the_run(trained_run, tmp_path):
    again = tmp_path / "again"
    assert main(["train", "--config", str(trained_run / "config.json"), "--out", str(again), "--quiet"]) == 0
    # exact by design: the same training (seed, batches, threads) in this process, with its kernels
    first, second = load_checkpoint(trained_run), load_checkpoint(again)
    assert second["settings"] == first["settings"]  # threshold and validation statistics recomputed alike
    for k, v in first["model"].items():
        assert torch.equal(second["model"][k], v), k


def test_run_records_command_line_and_versions(trained_run):
    info = json.loads((trained_run / "run_info.json").read_text())
    (call,) = info["invocations"]
    assert call["argv"][:2] == ["ssimae", "train"] and "--latent-dim" in call["argv"]
    assert call["versions"]["torch"] == torch.__version__ and call["versions"]["numpy"] == np.__version__
    from ssimae import __version__

    assert call["versions"]["ssimae"] == __version__


def test_options_given_override_the_file(trained_run, tmp_path):
    config = str(trained_run / "config.json")
    base, root, data = inputs(["train", "--config", config, "--out", "x"])
    stored = load_checkpoint(trained_run)["settings"]
    assert base.train == stored.train and root == stored.train.data["root"]
    assert base.inference.threshold is None and base.inference.residual_stats == {}
    assert {k: v for k, v in vars(base.inference).items() if k not in ("threshold", "residual_stats")} == \
        {k: v for k, v in vars(stored.inference).items() if k not in ("threshold", "residual_stats")}
    run, _, _ = inputs(["train", "--config", config, "--out", "x", "--epochs", "3", "--seed", "0", "--stride", "20",
                        "--ssim-window", "7", "--data", str(tmp_path)])
    assert run.train.epochs == 3 and run.inference.stride == 20 and run.train.seed == 0
    assert run.inference.ssim.window_size == 7 and run.train.params.ssim.window_size == 7
    assert run.train.latent_dim == 8 and run.train.patches_per_epoch == 24  # still the file's
    # another model: its own parameters, with the file's other settings
    run, _, _ = inputs(["train", "--config", config, "--out", "x", "--model", "vae", "--vae-samples", "2"])
    assert run.train.model == "vae" and run.train.params.samples == 2 and run.train.latent_dim == 8


def test_yaml_config_of_the_same_keys(trained_run, tmp_path):
    yaml = pytest.importorskip("yaml", reason="YAML configs need PyYAML (in the [test] extra)")
    data = json.loads((trained_run / "config.json").read_text())
    data.pop("version")  # optional in a hand-written file
    data["train"]["epochs"] = 5
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(data))
    run, _, _ = inputs(["train", "--config", str(path), "--out", "x"])
    ref, _, _ = inputs(["train", "--config", str(trained_run / "config.json"), "--out", "x", "--epochs", "5"])
    assert run == ref


@pytest.mark.parametrize("text,needles", [
    ('{"train": {"epochs": 2, "epoks": 3}}', ["train", "epoks"]),
    ('{"train": {"epochs": "3"}}', ["train.epochs", "expected int"]),
    ('{"inference": {"ssim": {"window_size": 11.5}}}', ["inference.ssim.window_size"]),
    ('{"version": 2, "train": {}, "extra": 1}', ["unknown keys extra"]),
    ('{"train": ', ["not valid JSON"]),
    ("[1, 2]", ["must be a mapping"]),
])
def test_bad_config_is_one_clear_line(tmp_path, capsys, text, needles):
    path = tmp_path / "bad.json"
    path.write_text(text)
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r"), *TINY]) == 2
    one_error_line(capsys, "bad.json", *needles)
    assert not (tmp_path / "r").exists()


def test_bad_yaml_and_missing_config(tmp_path, capsys):
    pytest.importorskip("yaml", reason="YAML configs need PyYAML (in the [test] extra)")
    path = tmp_path / "bad.yml"
    path.write_text("train: {epochs: [1\n")
    assert main(["train", "--config", str(path), "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys, "bad.yml", "not valid YAML")
    assert main(["train", "--config", str(tmp_path / "none.json"), "--out", str(tmp_path / "r")]) == 2
    one_error_line(capsys, "none.json", "cannot read")

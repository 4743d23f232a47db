"""Budgets that hold: ``--budget-minutes`` becomes a patch count that fits the budget (an
epoch shrinks when the budget is short), the log states the estimated end, model.pt is
saved within long epochs and ``--resume`` continues from there exactly, and Ctrl-C says
how to resume. Nothing here is timed: the measured rate and the clock are injected."""
import math
import re
from datetime import datetime, timedelta

import numpy as np
import pytest
import torch

from ssimae.cli.main import main
from ssimae.runs.checkpoint import load_checkpoint
from ssimae.training import loop
from ssimae.training.loop import budget_plan


def best_count_that_fits(total: float, ppe: int) -> int:
    """Brute force: the largest e x p <= total over every number of epochs e and patches per
    epoch p <= ppe (0 when not even one patch fits)."""
    if total < 1:
        return 0
    e = np.arange(1, int(total) + 1)
    return int((e * np.minimum(ppe, np.floor(total / e))).max())


@pytest.mark.parametrize("rate", [0.5, 12.5, 97.3])
@pytest.mark.parametrize("minutes", [0.001, 0.1, 1, 15])
@pytest.mark.parametrize("ppe, batch", [(1, 1), (7, 8), (100, 8), (10_000, 32)])
def test_the_plan_fits_the_budget_against_brute_force(rate, minutes, ppe, batch):
    epochs, p = budget_plan(rate, minutes, ppe, batch)
    total = rate * minutes * 60  # the patches the budget holds at this rate
    assert epochs >= 1 and 1 <= p <= ppe
    # never over the budget by more than one epoch of the plan (the bound promised)
    assert epochs * p / rate <= minutes * 60 + p / rate + 1e-9
    if total >= ppe:  # long budgets: the fewest epochs that hold it, within a patch per epoch of the best count
        assert epochs == math.ceil(math.floor(total) / ppe)
        assert best_count_that_fits(total, ppe) - epochs < epochs * p <= total
    else:  # short: one epoch of what fits, at least one batch
        assert (epochs, p) == (1, max(min(batch, ppe), math.floor(total)))


def test_a_short_budget_shrinks_the_epoch_instead_of_running_a_whole_one():
    # the case of the report: 1 minute at 12.5 patches/s with the paper's 10,000 patches per
    # epoch was 1 epoch of 10,000 (13 minutes); now 750 patches, one minute
    assert budget_plan(12.5, 1, 10_000, 32) == (1, 750)


def test_budget_run_records_its_plan_and_states_its_end(demo_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loop, "measure_throughput", lambda *a, **k: 12.34)
    run = tmp_path / "budget"
    before = datetime.now().astimezone().replace(second=0, microsecond=0)
    assert main(["train", "--data", str(demo_root), "--out", str(run), "--budget-minutes", "0.5",
                 "--patches-per-epoch", "100", "--batch-size", "8", "--latent-dim", "8", "--quiet"]) == 0
    after = datetime.now().astimezone()
    t = load_checkpoint(run)["settings"].train
    assert t.measured_patches_per_s == 12.3 and t.budget_minutes == 0.5  # recorded to 0.1 patches/s
    assert (t.epochs, t.patches_per_epoch) == budget_plan(12.3, 0.5, 100, 8) == (4, 92)  # 369 patches fit
    out = capsys.readouterr().out
    end = re.search(r"training ends about (\d{4}-\d\d-\d\d \d\d:\d\d)", out)
    assert end, out
    stated = datetime.strptime(end.group(1), "%Y-%m-%d %H:%M").replace(tzinfo=before.tzinfo)
    run_s = timedelta(seconds=4 * 92 / 12.3)
    assert before + run_s - timedelta(minutes=1) <= stated <= after + run_s


class Interrupting:
    """A clock that stands still (so with SAVE_EVERY_S = 0 every step is saved) and raises
    KeyboardInterrupt, as Ctrl-C does, at its ``at``-th reading."""

    def __init__(self, at: int):
        self.at, self.calls = at, 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls == self.at:
            raise KeyboardInterrupt
        return 0.0


def test_progress_is_saved_within_an_epoch_and_resume_continues_exactly(demo_root, tmp_path, monkeypatch, capsys):
    args = ["--data", str(demo_root), "--model", "vae", "--epochs", "2", "--patches-per-epoch", "24",
            "--batch-size", "8", "--latent-dim", "8", "--quiet"]  # 3 steps per epoch; the VAE draws from the RNG
    full, part = tmp_path / "full", tmp_path / "part"
    assert main(["train", "--out", str(full), *args]) == 0
    monkeypatch.setattr(loop, "SAVE_EVERY_S", 0.0)
    # readings: 1 at the start; 2 per step saved within epoch 1 (steps 1, 2), 1 after it; epoch 2's
    # step 1 saved (7, 8); Ctrl-C at the 9th reading, after step 2 of epoch 2, before its save
    monkeypatch.setattr(loop, "clock", Interrupting(9))
    capsys.readouterr()
    assert main(["train", "--out", str(part), *args]) == 130
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "epoch 2 of 2, step 1" in err and f"ssimae train --out {part} --resume" in err
    ck = load_checkpoint(part)
    assert (ck["epoch"], ck["step"], ck["finished"]) == (1, 1, False)
    monkeypatch.setattr(loop, "clock", lambda: 0.0)
    assert main(["train", "--out", str(part), "--resume", "--quiet"]) == 0
    a, b = load_checkpoint(full), load_checkpoint(part)
    assert b["finished"] and b["epoch"] == 2
    for k in a["model"]:
        assert torch.allclose(a["model"][k], b["model"][k], atol=1e-6), k


def test_without_saves_in_the_epoch_the_interrupted_run_would_restart_it(demo_root, tmp_path, monkeypatch, capsys):
    """The save interval is what the exact resume above rests on: with the default interval
    (minutes) a run interrupted in its first epoch has nothing saved, and says so."""
    monkeypatch.setattr(loop, "clock", Interrupting(3))
    assert main(["train", "--out", str(tmp_path / "r"), "--data", str(demo_root), "--epochs", "1",
                 "--patches-per-epoch", "24", "--batch-size", "8", "--latent-dim", "8", "--quiet"]) == 130
    err = capsys.readouterr().err
    assert "nothing saved yet" in err and not (tmp_path / "r" / "model.pt").exists()


def test_the_measured_step_is_the_runs_step_with_micro_batches():
    """A budget is planned from the step the run takes: with --micro-batches 4 each timed step
    computes the loss on four slices of the batch (not on the whole batch at once)."""
    from types import SimpleNamespace

    from ssimae.runs.settings import TrainSettings

    sizes = []

    class Model:
        def build(self, latent_dim, params, norm, channels=1):
            return torch.nn.Conv2d(channels, channels, 1)

        def loss(self, net, params, device):
            def loss_fn(x):
                sizes.append(x.shape[0])
                return net(x).square().mean()
            return loss_fn

    t = TrainSettings(batch_size=8, micro_batches=4)
    patches = type("Patches", (), {"preprocess": SimpleNamespace(channels=1), "__len__": lambda self: 16,
                                   "__getitem__": lambda self, key: torch.zeros(1, 4, 4)})()
    loop.measure_throughput(Model(), t, patches, torch.device("cpu"), steps=2)
    assert sizes == [2] * 4 * 3  # 3 steps (one untimed) of 4 slices of 2 patches

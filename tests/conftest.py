import os

import pytest
import torch

# Two cores: keep torch from oversubscribing when pytest runs alongside other work.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def demo_root(tmp_path_factory):
    """A tiny demo dataset (MVTec layout), made once per test session."""
    from ssimae.data.demo_data import make_demo_data

    root = tmp_path_factory.mktemp("demo") / "data"
    return make_demo_data(root, seed=0, size=160, n_train=4, n_test_good=2, n_test_per_type=1, n_calibration=0)


from tests.helpers.clicheck import TINY  # noqa: E402


@pytest.fixture(scope="session")
def trained_run(demo_root, tmp_path_factory):
    """A tiny trained SSIM-AE run folder."""
    from ssimae.cli.main import main

    run = tmp_path_factory.mktemp("runs") / "ssim"
    assert main(["train", "--data", str(demo_root), "--model", "ssim", "--out", str(run), *TINY]) == 0
    return run

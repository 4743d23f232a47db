"""``ssimae train --model auto`` on tiny data: the candidates screened on a share of the
epochs, the pick against a brute-force argmax of the proxy recomputed on the screening runs,
the chosen run trained on to the full epochs, the screening recorded."""
import json

import pytest

from ssimae.cli.main import main
from ssimae.data.datasets import load_dataset
from ssimae.inference.detector import Detector
from ssimae.inference.selection import proxy_scores
from ssimae.inference.test_set import validation_images
from ssimae.runs.checkpoint import load_checkpoint, load_run

TINY_AUTO = ["--latent-dim", "8", "--epochs", "2", "--patches-per-epoch", "32", "--batch-size", "8", "--quiet"]


@pytest.mark.kernels  # exact by design under any kernels (see the comment in the test)
def test_model_auto_picks_the_best_candidate_by_the_proxy(demo_root, tmp_path):
    out = tmp_path / "auto"
    assert main(["train", "--data", str(demo_root), "--out", str(out), "--model", "auto",
                 "--candidates", "ssim-fast,l2-fast", "--screen-share", "0.5", *TINY_AUTO]) == 0
    proxies = {}
    for name in ("ssim-fast", "l2-fast"):
        run = load_run(out / "screening" / name)
        assert run.settings.train.epochs == 1 and run.settings.train.recipe == "fast"
        val = validation_images(load_dataset(demo_root, progress=False, log=lambda *_: None), run.settings)
        proxies[name] = proxy_scores(Detector.load(run), val)["proxy"]
    best = max(proxies, key=lambda n: (proxies[n], n == "ssim-fast"))  # a tie goes to the first candidate
    info = json.loads((out / "run_info.json").read_text())["selection"]
    assert info["chosen"] == best and info["screen_share"] == 0.5
    # exact by design (abs=1e-12: the AUCs' own float64 arithmetic): train computed each proxy
    # as here, one image at a time with the saved weights, in this process with its kernels
    assert {n: c["proxy"] for n, c in info["candidates"].items()} == pytest.approx(proxies, abs=1e-12)
    final = load_checkpoint(out / "model.pt")
    assert final["finished"] and final["epoch"] == 2
    assert final["settings"].train.model == {"ssim-fast": "ssim", "l2-fast": "l2"}[best]
    assert final["settings"].inference.threshold is not None


def test_model_auto_refuses_what_it_cannot_do(demo_root, tmp_path, capsys):
    assert main(["train", "--data", str(demo_root), "--out", str(tmp_path / "a"), "--model", "auto",
                 "--candidates", "ssim-fast,nope", *TINY_AUTO]) == 2
    assert "--candidates: unknown nope" in capsys.readouterr().err
    assert main(["train", "--data", str(demo_root), "--out", str(tmp_path / "b"), "--model", "auto",
                 "--screen-share", "1.5", *TINY_AUTO]) == 2
    assert main(["train", "--data", str(demo_root), "--out", str(tmp_path / "c"), "--candidates", "ssim-fast",
                 *TINY_AUTO]) == 2
    assert not any((tmp_path / n).exists() for n in "abc")


def test_model_auto_trains_a_scheduled_candidate_from_the_start(demo_root, tmp_path):
    """A candidate whose learning rate follows a schedule over the whole run (DRAEM's recipe:
    cosine) is not resumed from its screening run but trained again from the start: the
    final weights are those of the plain ``ssimae train`` run with the same settings (the
    same process, seed and kernels: equal to the bit)."""
    import torch

    tiny = ["--epochs", "2", "--patches-per-epoch", "16", "--batch-size", "8", "--quiet", "--draem-width", "4"]
    auto, plain = tmp_path / "auto", tmp_path / "plain"
    assert main(["train", "--data", str(demo_root), "--out", str(auto), "--model", "auto",
                 "--candidates", "draem", "--screen-share", "0.5", *tiny]) == 0
    assert main(["train", "--data", str(demo_root), "--out", str(plain), "--model", "draem", *tiny]) == 0
    a, p = load_checkpoint(auto / "model.pt"), load_checkpoint(plain / "model.pt")
    assert a["settings"].train.schedule == "cosine" and a["finished"] and a["epoch"] == 2
    assert load_checkpoint(auto / "screening" / "draem" / "model.pt")["epoch"] == 1
    assert a["model"].keys() == p["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], p["model"][k]), k

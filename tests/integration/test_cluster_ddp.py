"""Distributed training with torchrun (#22 part 3): ``torchrun --nproc_per_node 2 -m ssimae
train`` on CPUs (gloo) trains the parameters one process trains from the same global batches,
only rank 0 writes the run, and ``--resume`` continues a run under torchrun."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import ssimae
from ssimae.cli.main import main
from ssimae.cluster.ddp import check_batches, torchrun_env
from ssimae.errors import SsimaeError
from ssimae.models import get_model
from ssimae.training.patches import RandomPatches, make_loader

# 2 epochs of 28 patches in global batches of 8: 3 full steps and a last one of 4 (2 per process)
pytestmark = pytest.mark.kernels  # float comparisons across kernels: tests/helpers/floats.py

RUN = ["--model", "ssim", "--epochs", "2", "--patches-per-epoch", "28", "--batch-size", "8", "--latent-dim", "8",
       "--quiet"]


def torchrun(args, nproc=2):
    """``torchrun --standalone --nproc_per_node nproc -m ssimae ARGS`` with this tree's ssimae, one thread each."""
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(Path(ssimae.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
           "-m", "ssimae", *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)


def initial_state():
    """The network every run starts from (seed 0, d = 8)."""
    torch.manual_seed(0)
    return get_model("ssim").build(8, get_model("ssim").Params(), "none", channels=1).state_dict()


def update_error(run, reference) -> float:
    """|update of ``run`` - update of ``reference``| / |update of ``reference``| (all parameters
    as one vector; updates from the common initial state). Adam turns ~1e-7 differences of a
    near-zero gradient into steps of size lr, so parameters are compared as a whole."""
    init = initial_state()
    a = torch.load(Path(run) / "model.pt", weights_only=True)["model"]
    b = torch.load(Path(reference) / "model.pt", weights_only=True)["model"]
    da = torch.cat([(a[k] - init[k]).flatten() for k in init])
    db = torch.cat([(b[k] - init[k]).flatten() for k in init])
    return ((da - db).norm() / db.norm()).item()


# |update of 2 processes - update of the one-process reference| / |update|: the reference does
# the processes' arithmetic (one thread, the same half batches, gradients scaled by exactly
# 1/2 and summed; ssimae.training.loop.accumulate, checked against that definition in
# tests/unit/training), so what is left is DDP's own path through its gradient buckets and
# gloo, which rounds the last bit of some gradients differently: after one step the
# parameters differ by at most 3.2e-7 (a few ulps of the step lr = 2e-4), the relative update
# error is 3e-6, and after these 8 steps 7e-6 (Intel AVX-512 and AVX kernels alike). Adam
# turns a last-bit difference of a near-zero gradient component into a step difference of up
# to lr, so the error grows with the steps and depends on the data: how many gradient
# components lie near zero. On the demo's earlier row-split crops it was 7e-6; on the column
# split (the same network, seed and budget) 1.6e-3, and 1.5e-3 under the AVX/default kernels. A
# real fault (a wrong shard, a gradient summed instead of averaged, a skipped step) gives an
# error of order 1e-1 to 1, so the bound sits a decade below the smallest fault and leaves 6x
# above what the amplified rounding has reached.
UPDATE_TOLERANCE = 1e-2


def one_thread_main(argv):
    """``ssimae ARGV`` in this process with one torch thread, as each torchrun process runs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return main(argv)
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_process(demo_root, tmp_path_factory):
    """The reference: the same run trained by one process with one thread (as each torchrun
    process has: torch's CPU kernels sum in another order at other thread counts), each
    step's batch cut into the two processes' halves (``--micro-batches 2``), whose gradients
    it sums as DDP does (:func:`ssimae.training.loop.accumulate`)."""
    out = tmp_path_factory.mktemp("ddp") / "one"
    assert one_thread_main(["train", "--data", str(demo_root), "--out", str(out), *RUN, "--micro-batches", "2"]) == 0
    return out


def test_rank_shards_make_up_the_single_process_batches(demo_root):
    """The batches of 2 processes at each step, concatenated, are the one-process batch of that step."""
    images = sorted((demo_root / "train" / "good").glob("*.png"))
    ds = RandomPatches(images, 28, progress=False)
    ds.set_epoch(1)
    single = list(make_loader(ds, batch_size=8, start=8))
    ranks = [list(make_loader(ds, batch_size=4, start=8, shard=(r, 2))) for r in range(2)]
    assert [len(b) for b in single] == [8, 8, 4] and [len(b) for b in ranks[0]] == [4, 4, 2]
    for step, batch in enumerate(single):
        assert torch.equal(torch.cat([ranks[0][step], ranks[1][step]]), batch)


def test_torchrun_environment_and_batch_checks():
    assert torchrun_env({}) is None
    assert torchrun_env({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}).rank == 1
    with pytest.raises(SsimaeError, match="impossible"):
        torchrun_env({"RANK": "2", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    check_batches(32, 10_000, 2)  # the paper's budget: 312 steps of 32 and one of 16
    with pytest.raises(SsimaeError, match="--batch-size 9"):
        check_batches(9, 27, 2)
    with pytest.raises(SsimaeError, match="last batch of each epoch"):
        check_batches(8, 27, 2)


def test_torchrun_two_processes_train_the_one_process_run(demo_root, one_process, tmp_path):
    out = tmp_path / "two"
    done = torchrun(["train", "--data", str(demo_root), "--out", str(out), *RUN])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("checkpoint:") == 1 and done.stdout.count("training the SSIM-AE") == 1  # rank 0 speaks
    assert update_error(out, one_process) < UPDATE_TOLERANCE
    # rank 0 alone wrote the run: one invocation recorded, the lock released, the processes recorded
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.pt", "run_info.json", "train_log.csv"]
    assert len(json.loads((out / "run_info.json").read_text())["invocations"]) == 1
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["processes"] == 2 and config["train"]["batch_size"] == 8
    log = (out / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[1:3] for row in log[1:]] == [["4", "28"], ["4", "28"]]  # steps, patches of all processes
    # the threshold is an order statistic of the validation maps, and an order statistic moves
    # by at most the largest change of the values (1-Lipschitz in the max norm): parameters whose
    # update differs by < UPDATE_TOLERANCE relative change the maps by that order relative to
    # the update's own effect, far inside 1e-2 of the threshold; a wrong run moves it by far more
    assert config["inference"]["threshold"] == pytest.approx(
        json.loads((one_process / "config.json").read_text())["inference"]["threshold"], rel=1e-2)


def test_torchrun_resumes_an_interrupted_run(demo_root, one_process, tmp_path):
    """Stopped after one step (--max-minutes 0) in one process, resumed by two processes: the
    parameters of the uninterrupted one-process run."""
    out = tmp_path / "resumed"
    assert one_thread_main(["train", "--data", str(demo_root), "--out", str(out), *RUN, "--micro-batches", "2",
                            "--max-minutes", "0"]) == 0
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["step"], ckpt["finished"]) == (0, 1, False)
    done = torchrun(["train", "--out", str(out), "--resume", "--quiet"])
    assert done.returncode == 0, done.stderr[-3000:]
    ckpt = torch.load(out / "model.pt", weights_only=True)
    assert (ckpt["epoch"], ckpt["finished"]) == (2, True)
    assert update_error(out, one_process) < UPDATE_TOLERANCE
    assert len(json.loads((out / "run_info.json").read_text())["invocations"]) == 2


class _TwoProcessesNoGroup:
    """Rank 0 of two torchrun processes, without the process group (the check before work
    needs none): :meth:`DdpTraining.check` is the real one."""

    rank, world, is_main, device = 0, 2, True, None

    def check(self, t):
        from ssimae.cluster.ddp import DdpTraining

        DdpTraining.check(self, t)

    def close(self):
        pass


@pytest.mark.parametrize("option", [["--batch-size", "9"], ["--budget-minutes", "1"]])
def test_torchrun_bad_batch_size_or_budget_leaves_no_run_folder(demo_root, tmp_path, monkeypatch, capsys, option):
    """Cause 18: under torchrun an uneven --batch-size or a --budget-minutes was refused only
    after the run folder was locked (created): an empty folder was left; one process leaves none."""
    import ssimae.cluster.ddp as ddp

    monkeypatch.setattr(ddp, "distributed_context", lambda backend=None: _TwoProcessesNoGroup())
    out = tmp_path / "run"
    assert main(["train", "--data", str(demo_root), "--out", str(out), *RUN, *option]) == 2
    capsys.readouterr()
    assert not out.exists()

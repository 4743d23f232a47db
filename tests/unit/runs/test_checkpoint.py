"""Checkpoints: atomic writes, safe loading, clear errors for bad files."""
import os

import pytest
import torch

from ssimae.runs.checkpoint import atomic_write_bytes, load_checkpoint, save_checkpoint
from ssimae.errors import SsimaeError
from ssimae.models.network import AutoEncoder
from ssimae.runs.settings import InferenceSettings, RunSettings, TrainSettings


def test_roundtrip(tmp_path):
    m = AutoEncoder(8)
    p = tmp_path / "run" / "model.pt"
    settings = RunSettings(TrainSettings(latent_dim=8), InferenceSettings(threshold=0.25, stride=20))
    save_checkpoint(p, settings=settings, model=m.state_dict(), epoch=3)
    ck = load_checkpoint(p)
    assert ck["settings"] == settings
    assert ck["epoch"] == 3 and ck["settings"].inference.threshold == 0.25
    for k, v in m.state_dict().items():
        assert torch.equal(ck["model"][k], v)
    # a run folder resolves to its model.pt
    assert load_checkpoint(tmp_path / "run")["epoch"] == 3
    assert [f.name for f in p.parent.iterdir()] == ["model.pt"]  # no temporary left behind


def test_atomic_write_keeps_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "x.bin"
    atomic_write_bytes(p, b"old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(SsimaeError, match="disk full"):  # one line naming the file, not a traceback
        atomic_write_bytes(p, b"new")
    assert p.read_bytes() == b"old"
    assert list(tmp_path.iterdir()) == [p]


@pytest.mark.parametrize("content", [b"", b"hello, not a checkpoint", None])
def test_bad_files_rejected_clearly(tmp_path, content):
    p = tmp_path / "model.pt"
    if content is None:  # truncated real checkpoint
        save_checkpoint(p, settings=RunSettings(TrainSettings(model="l2", latent_dim=4)), model=AutoEncoder(4).state_dict())
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    else:
        p.write_bytes(content)
    with pytest.raises(SsimaeError) as e:
        load_checkpoint(p)
    assert str(p) in str(e.value) and "\n" not in str(e.value)


def test_foreign_checkpoint_rejected(tmp_path):
    p = tmp_path / "foreign.pt"
    torch.save({"state_dict": AutoEncoder(4).state_dict()}, p)
    with pytest.raises(SsimaeError, match="not an ssimae checkpoint"):
        load_checkpoint(p)


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    p = tmp_path / "evil.pt"
    torch.save({"format": "ssimae-checkpoint", "payload": Evil()}, p)
    with pytest.raises(SsimaeError):
        load_checkpoint(p)
    assert not (tmp_path / "pwned").exists()


def test_missing_run(tmp_path):
    with pytest.raises(SsimaeError, match="no such run"):
        load_checkpoint(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SsimaeError, match="no model.pt"):
        load_checkpoint(tmp_path / "empty")

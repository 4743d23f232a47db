"""Tests for ssimae.models.alexnet: the frozen AlexNet regulariser of the feature-matching AE."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ssimae.models import alexnet as features
from ssimae.errors import SsimaeError
from ssimae.models.alexnet import (
    ALEXNET_FILENAME,
    EXPECTED_KEYS,
    FM_WEIGHT,
    AlexNetFeatures,
    feature_matching_loss,
    load_alexnet_features,
    locate_alexnet_weights,
)

# Shapes of a full torchvision AlexNet state dict (written out independently of EXPECTED_KEYS).
TORCHVISION_ALEXNET = {
    "features.0.weight": (64, 3, 11, 11), "features.0.bias": (64,),
    "features.3.weight": (192, 64, 5, 5), "features.3.bias": (192,),
    "features.6.weight": (384, 192, 3, 3), "features.6.bias": (384,),
    "features.8.weight": (256, 384, 3, 3), "features.8.bias": (256,),
    "features.10.weight": (256, 256, 3, 3), "features.10.bias": (256,),
    "classifier.1.weight": (64, 9216), "classifier.1.bias": (64,),  # 4096 rows in the real one
    "classifier.4.weight": (64, 64), "classifier.4.bias": (64,),
    "classifier.6.weight": (10, 64), "classifier.6.bias": (10,),
}


@pytest.fixture(autouse=True)
def isolated_hub(tmp_path, monkeypatch):
    """Keep torch hub away from the user's cache and from the network."""
    hub = tmp_path / "hub"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(hub))

    def no_network(*args, **kwargs):
        raise AssertionError("test tried to download")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    yield hub
    torch.hub.set_dir(old)


def fake_state(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) * 0.05 for k, s in TORCHVISION_ALEXNET.items()}


@pytest.fixture
def checkpoint(tmp_path):
    state = fake_state()
    path = tmp_path / "weights" / "alexnet.pth"
    path.parent.mkdir()
    torch.save(state, path)
    return path, state


def reference_phi(x, s):
    """Hand-written conv/relu/pool chain of AlexNet's first three conv layers."""
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = (torch.cat([x, x, x], dim=1) - mean) / std
    h = F.relu(F.conv2d(h, s["features.0.weight"], s["features.0.bias"], stride=4, padding=2))
    h = F.max_pool2d(h, 3, 2)
    h = F.relu(F.conv2d(h, s["features.3.weight"], s["features.3.bias"], padding=2))
    h = F.max_pool2d(h, 3, 2)
    return F.relu(F.conv2d(h, s["features.6.weight"], s["features.6.bias"], padding=1))


def test_loaded_module_matches_reference(checkpoint):
    path, state = checkpoint
    phi = load_alexnet_features(path)
    x = torch.rand(2, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    out = phi(x)
    assert out.shape == (2, 384, 7, 7)
    torch.testing.assert_close(out, reference_phi(x, state), rtol=1e-4, atol=1e-5)
    assert (out >= 0).all() and (out > 0).any()


def test_expected_keys_are_torchvision_conv_layers():
    assert EXPECTED_KEYS == {k: v for k, v in TORCHVISION_ALEXNET.items()
                             if k.startswith("features.") and k.split(".")[1] in ("0", "3", "6")}


def test_fm_weight_is_paper_lambda():
    assert FM_WEIGHT == 1.0


def test_frozen_eval_and_gradient_reaches_input(checkpoint):
    phi = load_alexnet_features(checkpoint[0])
    assert all(not p.requires_grad for p in phi.parameters())
    phi.train()
    assert not phi.training and not any(m.training for m in phi.modules())
    x = torch.rand(1, 1, 64, 64, requires_grad=True)
    phi(x).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in phi.parameters())


def test_feature_matching_loss_formula(checkpoint):
    phi = load_alexnet_features(checkpoint[0])
    g = torch.Generator().manual_seed(2)
    x, x_hat = torch.rand(2, 1, 64, 64, generator=g), torch.rand(2, 1, 64, 64, generator=g)
    state = checkpoint[1]
    pix = ((x - x_hat) ** 2).sum() / x.numel()
    fa, fb = reference_phi(x, state), reference_phi(x_hat, state)
    feat = ((fa - fb) ** 2).sum() / fa.numel()
    torch.testing.assert_close(feature_matching_loss(x, x_hat, phi), pix + feat, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(feature_matching_loss(x, x_hat, phi, weight=0.25), pix + 0.25 * feat,
                               rtol=1e-4, atol=1e-6)
    assert feature_matching_loss(x, x, phi).item() == 0.0


def test_feature_matching_loss_color(checkpoint):
    """RGB (--color): AlexNet sees the RGB image itself; the pixel term sums the squared error
    over the channels, averaged over pixels."""
    phi = load_alexnet_features(checkpoint[0])
    g = torch.Generator().manual_seed(3)
    x, x_hat = torch.rand(2, 3, 64, 64, generator=g), torch.rand(2, 3, 64, 64, generator=g)
    state = checkpoint[1]
    pix = ((x - x_hat) ** 2).sum() / (x.numel() / 3)

    def rgb_phi(t):  # reference_phi without the gray repetition
        mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        h = F.relu(F.conv2d((t - mean) / std, state["features.0.weight"], state["features.0.bias"], stride=4, padding=2))
        h = F.relu(F.conv2d(F.max_pool2d(h, 3, 2), state["features.3.weight"], state["features.3.bias"], padding=2))
        return F.relu(F.conv2d(F.max_pool2d(h, 3, 2), state["features.6.weight"], state["features.6.bias"], padding=1))

    fa, fb = rgb_phi(x), rgb_phi(x_hat)
    feat = ((fa - fb) ** 2).sum() / fa.numel()
    torch.testing.assert_close(feature_matching_loss(x, x_hat, phi), pix + feat, rtol=1e-4, atol=1e-6)


def test_loss_gradient_flows_to_reconstruction(checkpoint):
    phi = load_alexnet_features(checkpoint[0])
    x = torch.rand(1, 1, 64, 64)
    x_hat = torch.rand(1, 1, 64, 64, requires_grad=True)
    feature_matching_loss(x, x_hat, phi).backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0


def _message(exc_info):
    return str(exc_info.value)


def test_wrong_shape_names_key_and_file(tmp_path):
    state = fake_state()
    state["features.3.weight"] = torch.zeros(10, 3)
    path = tmp_path / "bad_shape.pth"
    torch.save(state, path)
    with pytest.raises(SsimaeError) as e:
        load_alexnet_features(path)
    msg = _message(e)
    assert "bad_shape.pth" in msg
    assert "features.3.weight has shape (10, 3) but AlexNet needs (192, 64, 5, 5)" in msg


def test_missing_key(tmp_path):
    state = fake_state()
    del state["features.6.bias"]
    path = tmp_path / "missing_key.pth"
    torch.save(state, path)
    with pytest.raises(SsimaeError) as e:
        load_alexnet_features(path)
    assert "missing_key.pth" in _message(e) and "features.6.bias" in _message(e)


def test_truncated_file(checkpoint, tmp_path):
    data = checkpoint[0].read_bytes()
    path = tmp_path / "truncated.pth"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(SsimaeError) as e:
        load_alexnet_features(path)
    assert "truncated.pth" in _message(e)
    assert "\n" not in _message(e)


def test_garbage_file(tmp_path):
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"this is not a checkpoint at all\x00\x01\x02" * 10)
    with pytest.raises(SsimaeError) as e:
        load_alexnet_features(path)
    assert "garbage.pth" in _message(e)


def test_non_dict_checkpoint(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([torch.zeros(3), torch.ones(2)], path)
    with pytest.raises(SsimaeError) as e:
        load_alexnet_features(path)
    assert "list.pth" in _message(e) and "state dict" in _message(e)


def test_load_missing_file(tmp_path):
    with pytest.raises(SsimaeError) as e:
        load_alexnet_features(tmp_path / "nope.pth")
    assert "nope.pth" in _message(e)


def test_locate_explicit(checkpoint, tmp_path):
    assert locate_alexnet_weights(checkpoint[0]) == checkpoint[0]
    with pytest.raises(SsimaeError) as e:
        locate_alexnet_weights(tmp_path / "absent.pth")
    assert "absent.pth" in _message(e)


def test_locate_finds_hub_checkpoint(isolated_hub):
    target = isolated_hub / "checkpoints" / ALEXNET_FILENAME
    target.parent.mkdir(parents=True)
    torch.save(fake_state(), target)
    assert locate_alexnet_weights() == target
    assert locate_alexnet_weights(download=False) == target


def test_locate_offline_gives_one_clear_error(isolated_hub, monkeypatch):
    calls = []

    def offline(url, dst, *args, **kwargs):
        calls.append((url, dst))
        raise OSError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    with pytest.raises(SsimaeError) as e:
        locate_alexnet_weights()
    msg = _message(e)
    assert calls and calls[0][0] == features.ALEXNET_URL
    assert str(isolated_hub / "checkpoints") in calls[0][1]
    assert "alexnet-owt-7be5be79.pth" in msg and "--alexnet-weights" in msg
    assert features.ALEXNET_URL in msg and str(isolated_hub / "checkpoints") in msg
    assert "\n" not in msg


def test_locate_without_download(isolated_hub):
    with pytest.raises(SsimaeError) as e:
        locate_alexnet_weights(download=False)
    assert "--alexnet-weights" in _message(e)


def test_locate_download_success_is_used(isolated_hub, monkeypatch):
    def fake_download(url, dst, *args, **kwargs):
        torch.save(fake_state(), dst)

    monkeypatch.setattr(torch.hub, "download_url_to_file", fake_download)
    path = locate_alexnet_weights()
    assert path == isolated_hub / "checkpoints" / ALEXNET_FILENAME and path.is_file()
    assert isinstance(load_alexnet_features(path), AlexNetFeatures)

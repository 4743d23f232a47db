"""--micro-batches (ssimae.training.loop.accumulate) against its definition: the gradient of
the whole batch's mean loss, and, for two equal halves, exactly (g0 + g1) / 2, what two DDP
processes' averaging computes from the halves."""
import pytest
import torch

from ssimae.errors import SsimaeError
from ssimae.models import get_model
from ssimae.runs.settings import TrainSettings
from ssimae.training.loop import accumulate


pytestmark = pytest.mark.kernels  # float comparisons across kernels: tests/helpers/floats.py

def network():
    torch.manual_seed(0)
    spec = get_model("ssim")
    net = spec.build(8, spec.Params(), "none", channels=1)
    return net, spec.loss(net, spec.Params(), torch.device("cpu"))


def grads(net, loss_fn, x, parts):
    net.zero_grad(set_to_none=True)
    loss = accumulate(loss_fn, x, parts)
    return loss, [p.grad.clone() for p in net.parameters()]


def test_two_halves_give_the_average_of_their_gradients_to_the_last_bit():
    net, loss_fn = network()
    x = torch.rand(8, 1, 128, 128, generator=torch.Generator().manual_seed(1))
    _, acc = grads(net, loss_fn, x, 2)
    _, g0 = grads(net, loss_fn, x[:4], 1)
    _, g1 = grads(net, loss_fn, x[4:], 1)
    for a, b, c in zip(acc, g0, g1):
        assert torch.equal(a, (b + c) / 2)


@pytest.mark.parametrize("parts", [3, 5])
def test_uneven_slices_give_the_whole_batch_gradient(parts):
    """5 patches in 3 or 5 slices: the mean loss's gradient, to float32 summation order
    (relative 1e-5: sums of a few hundred thousand terms in another order)."""
    net, loss_fn = network()
    x = torch.rand(5, 1, 128, 128, generator=torch.Generator().manual_seed(2))
    whole_loss, whole = grads(net, loss_fn, x, 1)
    loss, sliced = grads(net, loss_fn, x, parts)
    assert loss.item() == pytest.approx(whole_loss.item(), rel=1e-6)
    scale = max(g.abs().max().item() for g in whole)
    for a, b in zip(sliced, whole):
        assert (a - b).abs().max().item() <= 1e-5 * scale


def test_micro_batches_must_fit_the_batch():
    with pytest.raises(SsimaeError, match="--micro-batches"):
        TrainSettings(batch_size=4, micro_batches=5)
    with pytest.raises(SsimaeError, match="--micro-batches"):
        TrainSettings(micro_batches=0)

"""Table 1 of the paper, layer by layer."""
import pytest
import torch
from torch import nn
from tests.helpers.floats import sum_bound

from ssimae.errors import SsimaeError
from ssimae.models import get_model
from ssimae.models.vae_net import VAE
from ssimae.models.network import LEAKY_SLOPE, PATCH_SIZE, TABLE1, AutoEncoder, LatentConvTranspose2d

# Table 1 transcribed independently: (output H, W, C), kernel, stride, padding. "d" = latent.
PAPER_TABLE1 = [
    ((64, 64, 32), 4, 2, 1),
    ((32, 32, 32), 4, 2, 1),
    ((32, 32, 32), 3, 1, 1),
    ((16, 16, 64), 4, 2, 1),
    ((16, 16, 64), 3, 1, 1),
    ((8, 8, 128), 4, 2, 1),
    ((8, 8, 64), 3, 1, 1),
    ((8, 8, 32), 3, 1, 1),
    ((1, 1, "d"), 8, 1, 0),
]


def convs(seq):
    return [m for m in seq if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]


@pytest.mark.parametrize("d", [100, 500, 7])
def test_encoder_matches_table1_layer_by_layer(d):
    model = AutoEncoder(latent_dim=d)
    assert PATCH_SIZE == 128
    x = torch.zeros(2, 1, 128, 128)
    layers = convs(model.encoder)
    assert len(layers) == len(PAPER_TABLE1) == len(TABLE1)
    for conv, ((h, w, c), k, s, p) in zip(layers, PAPER_TABLE1):
        x = conv(x)
        c = d if c == "d" else c
        assert tuple(x.shape[1:]) == (c, h, w)
        assert conv.kernel_size == (k, k) and conv.stride == (s, s) and conv.padding == (p, p)
        assert isinstance(conv, nn.Conv2d)


def test_activations_leaky_02_except_last_layers():
    model = AutoEncoder(32)
    for seq in (model.encoder, model.decoder):
        mods = list(seq)
        assert isinstance(mods[-1], (nn.Conv2d, nn.ConvTranspose2d)), "last layer must be linear"
        acts = [m for m in mods if isinstance(m, nn.LeakyReLU)]
        assert len(acts) == len(convs(seq)) - 1
        assert all(a.negative_slope == LEAKY_SLOPE == 0.2 for a in acts)
        # every conv but the last is followed by a leaky ReLU
        for i, m in enumerate(mods[:-1]):
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                assert isinstance(mods[i + 1], nn.LeakyReLU)


def test_decoder_is_reversed_encoder():
    model = AutoEncoder(100)
    z = torch.zeros(1, 100, 1, 1)
    expected = [(32, 8, 8), (64, 8, 8), (128, 8, 8), (64, 16, 16), (64, 16, 16), (32, 32, 32), (32, 32, 32),
                (32, 64, 64), (1, 128, 128)]
    # conv9 transposed is an nn.ConvTranspose2d computed as a matrix product
    kinds = [LatentConvTranspose2d, nn.Conv2d, nn.Conv2d, nn.ConvTranspose2d, nn.Conv2d, nn.ConvTranspose2d,
             nn.Conv2d, nn.ConvTranspose2d, nn.ConvTranspose2d]
    for conv, shape, kind in zip(convs(model.decoder), expected, kinds):
        z = conv(z)
        assert tuple(z.shape[1:]) == shape
        assert type(conv) is kind
    enc = [(c.kernel_size, c.stride, c.padding) for c in convs(model.encoder)]
    dec = [(c.kernel_size, c.stride, c.padding) for c in convs(model.decoder)]
    assert dec == enc[::-1]


def test_vae_outputs_mean_and_logvar():
    vae = VAE(16)
    mu, logvar = vae.encode(torch.rand(3, 1, 128, 128))
    assert mu.shape == logvar.shape == (3, 16, 1, 1)
    g = torch.Generator().manual_seed(0)
    z1 = vae.sample(mu, logvar, torch.Generator().manual_seed(0))
    z2 = vae.sample(mu, logvar, g)
    assert torch.equal(z1, z2)
    # reparameterisation: z - mu = exp(logvar/2) * eps with eps ~ N(0,1) from the same generator
    eps = torch.randn(mu.shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(z1, mu + torch.exp(0.5 * logvar) * eps)
    assert vae(torch.rand(2, 1, 128, 128)).shape == (2, 1, 128, 128)


def test_registry_builds_each_models_network():
    def build(name, d=100):
        m = get_model(name)
        return m.build(d, m.Params())

    assert type(build("ssim")) is AutoEncoder and type(build("l2")) is AutoEncoder and type(build("fm")) is AutoEncoder
    assert isinstance(build("vae"), VAE)
    assert build("l2").latent_dim == 100 and build("vae", 16).latent_dim == 16
    with pytest.raises(SsimaeError, match="unknown model 'gan'"):
        get_model("gan")


def test_he_initialisation():
    torch.manual_seed(0)
    model = AutoEncoder(100)
    gain = (2 / (1 + 0.2**2)) ** 0.5
    for conv in convs(model.encoder) + convs(model.decoder):
        w = conv.weight
        k = w.shape[2] * w.shape[3]
        fan = (w.shape[1] if isinstance(conv, nn.Conv2d) else w.shape[0]) * k  # (out,in,k,k) vs (in,out,k,k)
        assert w.std().item() == pytest.approx(gain / fan**0.5, rel=0.1)
        assert torch.count_nonzero(conv.bias) == 0
    # the signal keeps its scale through the encoder (the default init shrinks it ~100x)
    x = torch.randn(8, 1, 128, 128)
    z = model.encoder(x)
    assert 0.1 < z.std().item() < 10


def _same_as(layer, reference, x):
    """layer(x) and reference(x, weight, bias): same output, and same gradients for x, the
    weight and the bias, to the rounding of sums in another order (a matrix product against
    torch's convolution kernels): :func:`sum_bound` of each value's sum of absolute products,
    which is ``reference`` (and its gradients) evaluated on the absolute values."""
    out, ref = layer(x), reference(x, layer.weight, layer.bias)
    assert out.shape == ref.shape
    leaves = [t.detach().abs().requires_grad_(True) for t in (x, layer.weight, layer.bias)]
    magnitude = reference(*leaves)
    k = max(x.numel(), layer.weight.numel())  # no sum of the layer or of its gradients is longer
    assert ((out - ref).abs() <= sum_bound(magnitude, k)).all()
    g = torch.randn_like(ref)
    for a, b, m in zip(torch.autograd.grad(out, (x, layer.weight, layer.bias), g),
                       torch.autograd.grad(ref, (x, layer.weight, layer.bias), g),
                       torch.autograd.grad(magnitude, leaves, g.abs())):
        assert ((a - b).abs() <= sum_bound(m, k)).all()
    return out


@pytest.mark.kernels  # matrix products against torch's convolution kernels
def test_latent_layers_equal_the_convolutions():
    """conv9 and its transpose are computed as matrix products: same outputs and gradients
    as torch's convolutions with the same weights, also in the channels-last format."""
    import torch.nn.functional as F

    model = AutoEncoder(20)
    enc, dec = convs(model.encoder)[-1], convs(model.decoder)[0]
    for fmt in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(3, 32, 8, 8).contiguous(memory_format=fmt).requires_grad_(True)
        assert _same_as(enc, F.conv2d, x).shape == (3, 20, 1, 1)
        z = torch.randn(3, 20, 1, 1).contiguous(memory_format=fmt).requires_grad_(True)
        assert _same_as(dec, F.conv_transpose2d, z).shape == (3, 32, 8, 8)
    # another input size falls back to the convolution itself
    x = torch.randn(1, 32, 9, 9)
    assert torch.allclose(enc(x), F.conv2d(x, enc.weight, enc.bias))

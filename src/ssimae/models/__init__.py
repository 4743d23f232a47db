"""The model registry: each of the paper's models (its Table 1 comparison) is one object.

A model owns everything that differs between the l2-AE, the SSIM-AE, the VAE and the
feature-matching AE: its network (:meth:`Model.build`), its training loss
(:meth:`Model.loss`), its per-patch inference (:meth:`Model.patch_fn`, e.g. the VAE's N
latent samples), the names of the outputs that inference produces (``outputs``), its
own residual map (``default_residual``), the residuals ``compare`` reports for it
(``compare_residuals``) and a dataclass of its own hyperparameters (``Params``).
Training, inference, comparison and the command line read this registry; none of them
branches on a model's name. Adding a model is one file in this folder (found and imported
by this package) with one :func:`register_model`:

    @register_model
    class MyAE(Model):
        name, title, default_residual = "mine", "my AE", "l2"
        def loss(self, net, params, device):
            return lambda x: (net(x) - x).abs().mean()

A field of ``Params`` whose metadata has a ``"flag"`` becomes a command-line option of
``ssimae train``/``compare`` (``metadata={"flag": "--my-option", "help": "..."}``); a
field of type :class:`ssimae.core.ssim.SsimOptions` receives the run's SSIM options.

Importing this package, and so every model file, imports no torch: the command line reads
the registry (names, ``Params``, recipes) for ``--help`` and its checks before any work. A
model file imports torch and its networks inside the methods that build, train or run them;
its ``nn.Module`` classes live in the building blocks (``network.py``, ``unet.py``,
``vae_net.py``, ``draem_net.py``, ``alexnet.py``), which are not imported here.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, ClassVar

from ssimae.core.registry import Registry

if TYPE_CHECKING:
    import torch
    from torch import nn

    from ssimae.core.window import Geometry

Loss = Callable[["torch.Tensor"], "torch.Tensor"]  # (B, C, 128, 128) batch -> scalar
PatchFn = Callable[["torch.Tensor"], "torch.Tensor"]  # (B, C, 128, 128) -> (B, len(outputs) * C, 128, 128)
# modules of this folder that register no model: the networks and other building blocks
BUILDING_BLOCKS = frozenset({"alexnet", "constants", "device", "draem_net", "network", "unet", "vae_net"})


@dataclass(frozen=True)
class NoParams:
    """Hyperparameters of a model that has none of its own."""


class Model:
    """Base class of a registered model (override what differs; see the module docstring)."""

    name: ClassVar[str]
    title: ClassVar[str]  # e.g. "SSIM-AE", for tables and plots
    Params: ClassVar[type] = NoParams
    default_residual: ClassVar[str]
    compare_residuals: ClassVar[tuple[str, ...]] = ()  # default: (default_residual,)
    outputs: ClassVar[tuple[str, ...]] = ("recon",)  # channel groups of patch_fn's output
    recipe: ClassVar[str] = "paper"  # the training recipe used when --recipe is not given (ssimae.runs.recipes)
    test_params: ClassVar[tuple[str, ...]] = ()  # Params fields that inference may change (InferenceSettings.model_params)

    def build(self, latent_dim: int, params, norm: str = "none", channels: int = 1) -> nn.Module:
        """The network (Table 1 autoencoder by default), freshly initialised; ``norm`` as in
        :func:`ssimae.models.network.build_encoder`; ``channels``: 1 (gray) or 3 (color) in and out."""
        from ssimae.models.network import AutoEncoder

        return AutoEncoder(latent_dim, norm, channels)

    def prepare(self, params):
        """Check and complete ``params`` before training starts (e.g. find pretrained weights);
        raises SsimaeError when the model cannot be trained here. Returns the params."""
        return params

    def loss(self, net: nn.Module, params, device: torch.device) -> Loss:
        """The training loss as fn(batch) -> scalar tensor."""
        raise NotImplementedError

    def patch_fn(self, net: nn.Module, params, seed: int) -> PatchFn:
        """Per-patch inference: batch (B, C, h, w) -> (B, len(outputs) * C, h, w), the outputs
        named by ``outputs`` one after the other, C channels each.
        ``seed`` seeds any sampling, so residual maps are reproducible."""
        return net

    def export_module(self, net: nn.Module, params) -> tuple[nn.Module, tuple[int, ...] | None]:
        """:meth:`patch_fn` as one traceable module, for the ONNX export (:mod:`ssimae.inference.export`):
        (module, noise shape). The module maps patches (B, C, 128, 128) to (B, len(outputs) * C,
        128, 128); a model that samples takes the noise as a second input, (S, B, *shape),
        the S draws of ``torch.randn((B, *shape))`` its :meth:`patch_fn` makes, in order.
        The default covers a model whose :meth:`patch_fn` is its network; a model that
        overrides :meth:`patch_fn` must override this too to be exported."""
        if type(self).patch_fn is not Model.patch_fn:
            from ssimae.errors import SsimaeError

            raise SsimaeError(f"the {self.name} model has its own per-patch inference and no ONNX export")
        return net, None

    def geometry(self, params) -> Geometry | None:
        """A fully convolutional network's :class:`ssimae.core.window.Geometry` (it may score a
        whole image in one pass per mask: ``InferenceSettings.tiling = "whole"``), or None for
        a network that takes only 128 x 128 patches (Table 1's, whose 8 x 8 bottleneck
        convolution fixes its input size: the sliding window)."""
        return None

    def pass_masks(self, params) -> dict | None:
        """The masks of a model whose inference hides parts of its input, as the arguments of
        :func:`ssimae.core.masks.grid_masks` ({"cell_sizes", "sets", "seed"}), or None."""
        return None

    def image_fn(self, net: nn.Module, params, seed: int):
        """Whole-image inference of a fully convolutional model: fn(batch (B, C, H, W), masks
        (P, 1, H, W) of :meth:`pass_masks` or None) -> (B, len(outputs) * C, H, W); H, W
        multiples of :meth:`geometry`'s. Default: :meth:`patch_fn`, which takes any size."""
        fn = self.patch_fn(net, params, seed)
        return lambda batch, masks=None: fn(batch)

    def with_test_params(self, params, changes: dict):
        """``params`` with the test-time ``changes`` (``InferenceSettings.model_params``) applied
        and checked; SsimaeError for a field that is not in ``test_params``."""
        if not changes:
            return params
        from dataclasses import replace

        from ssimae.errors import SsimaeError

        unknown = sorted(set(changes) - set(self.test_params))
        if unknown:
            allowed = ", ".join(self.test_params) or "none"
            raise SsimaeError(f"the {self.name} model has no test-time setting {', '.join(unknown)} "
                              f"(it has: {allowed})")
        try:
            return replace(params, **{k: self._parse_param(k, v) for k, v in changes.items()})
        except (TypeError, ValueError) as e:
            raise SsimaeError(f"the {self.name} model's test-time settings: {e}") from None

    def _parse_param(self, name: str, value):
        """A test-time value given as text (``--model-param name=value``) in its field's type:
        the field's ``"parse"`` metadata, else int/float; other values as they are."""
        if not isinstance(value, str):
            return value
        import dataclasses
        import typing

        f = {f.name: f for f in dataclasses.fields(self.Params)}[name]
        parse = f.metadata.get("parse") or {int: int, float: float}.get(typing.get_type_hints(self.Params)[name])
        return parse(value) if parse is not None else value

    def residuals(self) -> tuple[str, ...]:
        """Residuals ``compare`` reports: the model's own first."""
        rest = tuple(r for r in self.compare_residuals if r != self.default_residual)
        return (self.default_residual, *rest)


MODELS: Registry[Model] = Registry("model")


def check_number(name: str, value, low: float = 0.0, high: float = math.inf) -> None:
    """SsimaeError naming ``name`` unless ``value`` is a finite number (not a bool) in
    [``low``, ``high``]: a model's hyperparameters are checked where they are built, so the
    same check holds for the command line, a ``--config`` file and a checkpoint."""
    from ssimae.errors import SsimaeError

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        bounds = f"between {low:g} and {high:g}" if math.isfinite(high) else f"a number >= {low:g}"
        raise SsimaeError(f"{name} must be {bounds}, got {value!r}")


def register_model(model: type[Model] | Model, *, replace: bool = False):
    """Add a model (a :class:`Model` subclass, instantiated here, or an instance) to the
    registry under its ``name``; usable as a class decorator. Returns its argument."""
    instance = model() if isinstance(model, type) else model
    MODELS.add(instance.name, instance, replace)
    return model


def unregister_model(name: str) -> None:
    """Remove a model from the registry (for tests and plug-ins)."""
    MODELS.pop(name, None)


def get_model(name: str) -> Model:
    """The registered model called ``name``; SsimaeError listing the choices otherwise."""
    return MODELS.lookup(name)


# The paper's four models, registered in the order of its comparison (import order matters).
from ssimae.models import ssim_ae  # noqa: E402,F401,I001
from ssimae.models import l2_ae  # noqa: E402,F401,I001
from ssimae.models import vae  # noqa: E402,F401,I001
from ssimae.models import fm_ae  # noqa: E402,F401,I001


def _import_model_files() -> None:
    """Import every other module of this folder, so a new model is one new file with one
    :func:`register_model` (docs/architecture.md, "Adding a model"); registered after the
    paper's four, in file-name order; the :data:`BUILDING_BLOCKS` are not imported."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name not in BUILDING_BLOCKS:
            importlib.import_module(f"{__name__}.{info.name}")


_import_model_files()

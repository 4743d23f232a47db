"""ssimae: unsupervised defect segmentation with SSIM-autoencoders.

Reference implementation of Bergmann, Loewe, Fauser, Sattlegger and Steger, "Improving
Unsupervised Defect Segmentation by Applying Structural Similarity to Autoencoders",
VISAPP 2019.

    from ssimae import Detector
    det = Detector.load("runs/ssim")
"""
from ssimae._version import __version__
from ssimae.errors import SsimaeError

__all__ = ["Detector", "SsimaeError", "__version__"]


def __getattr__(name: str):
    # Detector pulls in torch: imported on first use, so `import ssimae` stays light.
    if name == "Detector":
        from ssimae.inference.detector import Detector

        return Detector
    raise AttributeError(f"module 'ssimae' has no attribute {name!r}")

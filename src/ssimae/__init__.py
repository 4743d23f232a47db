"""ssimae: unsupervised defect segmentation with SSIM-autoencoders.

Reference implementation of Bergmann, Loewe, Fauser, Sattlegger and Steger, "Improving
Unsupervised Defect Segmentation by Applying Structural Similarity to Autoencoders",
VISAPP 2019.
"""
from ssimae.errors import SsimaeError

__version__ = "0.1.0"
__all__ = ["SsimaeError", "__version__"]

"""Numeric building blocks (numpy; torch only in ssim_torch and inside the residuals): SSIM, the
sliding window, preprocessing, residual maps, morphology, threshold rules, verdicts, metrics. No
commands, no run folders.

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    ssim="SsimOptions ssim_map_numpy",
    window="PATCH_SIZE STRIDE sliding_window",
    preprocess="Preprocess",
    residual="RESIDUALS get_residual register_residual residual_map",
    morphology="OPENING_DIAMETER EIGHT_CONNECTED gray_opening segment is_defect label_regions",
    thresholds="THRESHOLD_RULES select_threshold fpr_threshold quantile_threshold threshold_from_maps",
    verdict="GOOD Prediction Region find_regions image_score image_scores",
    metrics="evaluate_maps pixel_roc pro_curve image_roc_auc RocCurve",
    registry="Registry",
)

"""Scoring images with either engine (torch Detector, onnxruntime OnnxDetector), the ONNX export,
calibration on either engine.

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    scorer="Scorer Analysis Scored",
    detector="Detector",
    onnx_detector="OnnxDetector",
    engines="load_detector ENGINES",
    export="export_onnx",
    fusion="FusedDetector fuse_maps",
    calibration="calibrate Calibration residual_statistics",
    test_set="score_test_set score_images Scores",
)

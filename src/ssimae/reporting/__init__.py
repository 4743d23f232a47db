"""Figures, report.html, tables and the writers of result folders.

Public names below, by module; each is imported on first use (:func:`ssimae._lazy.lazy_exports`)."""
from ssimae._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    plots="plot_roc heatmap_rgb overlay_rgb comparison_figure",
    html="write_report REPORT_NAME",
    tables="write_verdicts write_roc_csv markdown_table",
    predictions="PredictionWriter",
    evaluation="write_evaluation ImageRows",
)

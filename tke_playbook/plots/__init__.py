"""Matplotlib plots for similarity, retrieval quality, load tests and model comparisons.

Every function takes data and returns a :class:`matplotlib.figure.Figure` (or the Axes it was given). Figures are
not registered with pyplot, so scripts need no ``plt.close`` and notebooks show each figure once. Chinese text
uses a CJK font when one is installed (``fonts-noto-cjk``); otherwise labels fall back to ids.
"""

from ._style import cjk_font, safe_labels
from .analysis import plot_pca, plot_projections, plot_score_distributions
from .comparison import (plot_comparison_heatmaps, plot_comparison_panel, plot_comparison_pca, plot_metric_intervals,
                         plot_quality_vs_cost)
from .download import plot_bytes_per_pod
from .frontier import plot_frontier
from .heatmaps import plot_heatmap_grid, plot_heatmaps_side_by_side, plot_similarity_heatmap
from .latency import (plot_capacity_table, plot_latency_cdf, plot_latency_histogram, plot_latency_knee,
                      plot_mixed_latency, plot_sweep, plot_throughput_vs_concurrency, plot_tokens_vs_batch)

__all__ = ["cjk_font", "safe_labels", "plot_pca", "plot_score_distributions", "plot_comparison_panel",
           "plot_comparison_heatmaps", "plot_comparison_pca", "plot_metric_intervals", "plot_quality_vs_cost",
           "plot_projections", "plot_heatmap_grid", "plot_heatmaps_side_by_side",
           "plot_similarity_heatmap", "plot_latency_cdf", "plot_latency_histogram",
           "plot_throughput_vs_concurrency", "plot_sweep", "plot_tokens_vs_batch", "plot_mixed_latency",
           "plot_latency_knee", "plot_capacity_table", "plot_bytes_per_pod", "plot_frontier"]

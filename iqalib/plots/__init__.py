"""The figures the book's notebooks show (seaborn on matplotlib); each returns a Figure."""
from iqalib.plots.training import (comparison_bars, comparison_rounds, example_images, format_runs_table,
                                   learning_curves, lr_sweep, metric_matrix, model_size_scatter,
                                   mos_distribution, prediction_scatter, quality_examples)

__all__ = [
    "comparison_bars",
    "comparison_rounds",
    "example_images",
    "format_runs_table",
    "learning_curves",
    "lr_sweep",
    "metric_matrix",
    "model_size_scatter",
    "mos_distribution",
    "prediction_scatter",
    "quality_examples",
]
# Attention and ablation figures (book-B) are imported below.
from iqalib.plots.ablation import format_ablation_table, format_comparisons, plot_ablation, plot_rounds  # noqa: E402
from iqalib.plots.attention import (correlation_table, plot_concentration_by_round, plot_heatmaps,  # noqa: E402
                                    plot_stage_weights, plot_weights_vs_mos)

__all__ += ["correlation_table", "format_ablation_table", "format_comparisons", "plot_ablation",
            "plot_concentration_by_round",
            "plot_heatmaps", "plot_rounds", "plot_stage_weights", "plot_weights_vs_mos"]

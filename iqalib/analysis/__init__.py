"""Analysis of trained models: stage attention, heat maps, ablation runs and paired significance tests."""
from iqalib.analysis.ablation import (ABLATION_CONFIGURATIONS, ABLATION_LABELS, ABLATION_PAIRS, AblationRuns,
                                      ablation_configs, ablation_rounds, ablation_table, run_ablation,
                                      trunk_features_key)
from iqalib.analysis.attention import (STAGE_COLUMNS, AttentionStatistics, attention_for_images,
                                       attention_for_run, attention_for_table, attention_hook,
                                       attention_results_json, claim_verdict, concentration,
                                       concentration_by_round, load_round_model,
                                       mos_terciles, round_test_split, rounds_summary, select_images, stage_weights,
                                       weights_vs_mos)
from iqalib.analysis.heatmap import HeatMap, attention_heatmap, attention_heatmaps, crop_grid
from iqalib.analysis.significance import combine_rounds, compare_runs, paired_round_differences

__all__ = [
    "ABLATION_CONFIGURATIONS", "ABLATION_LABELS", "ABLATION_PAIRS", "AblationRuns", "AttentionStatistics",
    "HeatMap", "STAGE_COLUMNS", "ablation_configs", "ablation_rounds", "ablation_table", "attention_for_images",
    "attention_for_run", "attention_for_table", "attention_heatmap", "attention_heatmaps", "attention_hook",
    "attention_results_json", "claim_verdict", "combine_rounds", "compare_runs", "concentration",
    "concentration_by_round", "crop_grid",
    "load_round_model", "mos_terciles", "paired_round_differences", "round_test_split", "rounds_summary", "run_ablation",
    "select_images", "stage_weights", "trunk_features_key", "weights_vs_mos",
]

"""Training engine: fit (rounds, selection on validation), feature cache, checkpoints, scoring."""
from iqalib.engine.fit import fit, fit_round, prepare_data
from iqalib.engine.score import load_trained, predict, score_paths

__all__ = ["fit", "fit_round", "prepare_data", "load_trained", "predict", "score_paths"]

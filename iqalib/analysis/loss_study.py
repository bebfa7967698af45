"""Which training loss? The seed's loss comparison, repeated with the book's protocol.

Every loss of :mod:`iqalib.losses` in :data:`STUDY_LOSSES` trains the SMART
model of the ablation chapter with the same training keys, rounds and splits
(:func:`loss_configs`). The L1 run *is* the ablation's configuration (c)
(and chapter 4's run: same name, same settings), so it is read back, not
trained again; every other loss is a run named ``<smart model>_loss_<loss>``
(``+`` written ``_plus_``). With a frozen trunk all of them read one cached
feature bank, so a loss costs one head training per round.

The seed's own numbers (:data:`SEED_LOSS_RESULTS`, with :data:`SEED_SOURCE`)
are quoted as data, never as our results; :func:`protocol_differences` says,
from the run configuration, how our protocol differs from the seed's.
:func:`seed_claim_verdict` turns the paired tests against L1 into a sentence
on the seed's conclusion, :func:`noisy_labels_verdict` tests its guess that
ranking losses help on noisier labels (:func:`label_noise` measures the
noise from the raters' standard deviations), and :func:`what_the_numbers_say`
collects the chapter's closing sentences, including what went wrong (scores
off the MOS scale).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import norm

from iqalib import metrics
from iqalib.analysis.ablation import ablation_configs
from iqalib.analysis.claims import claim_row
from iqalib.analysis.runs import OUTSIDE_MARGIN, OUTSIDE_SHARE
from iqalib.analysis.significance import MIN_ROUNDS_FOR_TESTS, pair_verdict, rule_verdict
from iqalib.analysis.words import counted
from iqalib.config import RunConfig, validate
from iqalib.data.datasets import load_dataset
from iqalib.results import predictions_frame
from iqalib.files import atomic_write_json
from iqalib.errors import DataError, IQAError
from iqalib.losses import list_losses, loss_info

REFERENCE = "l1"
# The order of the chapter's tables: the seed's five, then the others.
STUDY_LOSSES = ("l1", "mse", "fidelity", "soft_srcc", "ranking", "smooth_l1", "plcc", "l1+rank")
REGRESSION = ("l1", "mse")  # the seed's "plain regression losses"
RANK_BASED = ("fidelity", "soft_srcc", "ranking")  # the seed's "rank-based ones"

# The seed's loss comparison, quoted (SRCC, PLCC); not our result.
SEED_LOSS_RESULTS = {
    "l1": (0.9375, 0.9488),
    "mse": (0.9373, 0.9469),
    "fidelity": (0.9315, 0.9373),
    "soft_srcc": (0.9313, 0.9416),
    "ranking": (0.9292, 0.9249),
}
SEED_SOURCE = ("the SMART-IQA report (the seed), loss-function comparison: SMART-IQA with a Swin-B trunk "
               "(smart_iqa_base) fine-tuned on KonIQ-10k's official split, one run per loss, the epoch "
               "picked on the test split")
SEED_PROTOCOL = {"data": "koniq10k", "model": "smart_iqa_base", "freeze_backbone": False, "rounds": 1,
                 "selection": "test split"}
OUR_SELECTION = "validation split"
# The logistic map raising PLCC by more than this says the scores follow the MOS along a curve.
LOGISTIC_BEND = 0.02
SAME_MODEL = 1e-4  # predictions this close to L1's (MOS units) mean the loss trained L1's model


def run_name(smart_model: str, loss: str) -> str:
    """The run folder of ``loss``: the model's own name for L1 (chapter 4's run), else ``<model>_loss_<loss>``."""
    return smart_model if loss == REFERENCE else f"{smart_model}_loss_{loss.replace('+', '_plus_')}"


def loss_configs(losses=STUDY_LOSSES, *, out_dir, smart_model: str = "smart_iqa_lite0",
                 loss_options: dict | None = None, **common) -> dict[str, RunConfig]:
    """One run configuration per loss; ``common`` holds :func:`iqalib.experiments.run_config` keywords.

    The L1 configuration is the ablation's (c) exactly (the model's default
    loss, no ``train.loss`` key), so a finished run of chapters 4 or 5 with the
    same settings is read back. ``loss_options`` maps a loss name to its options.
    """
    losses = list(losses)
    unknown = [name for name in losses if name not in list_losses()]
    if unknown:
        loss_info(unknown[0])  # the one-line error with the valid names
    if REFERENCE not in losses:
        raise DataError(f"the loss study compares against {REFERENCE!r}; add it to losses (got {losses})")
    options = dict(loss_options or {})
    stray = sorted(set(options) - set(losses))
    if stray:
        raise DataError(f"loss_options names losses the study does not train: {stray}; losses: {losses}")
    reference = ablation_configs(out_dir=out_dir, smart_model=smart_model, **common)["multiscale_attention"]
    configs = {}
    for name in losses:
        if name == REFERENCE and not options.get(name):
            configs[name] = reference
            continue
        train = dataclasses.replace(reference.train, loss=name, loss_options=dict(options.get(name) or {}))
        configs[name] = validate(dataclasses.replace(reference, name=run_name(smart_model, name), train=train))
    return configs


def study_loss_options(losses, loss_options: dict | None, noise: dict | None) -> dict:
    """``loss_options`` with fidelity's ``sigma`` set to the data set's median rater standard
    deviation (:func:`label_noise`) where the profile sets none and the table has standard
    deviations. Training passes each image's own rater SD to fidelity where every training
    image has one (:func:`iqalib.engine.fit.rater_std_per_image`); this ``sigma`` is the
    fallback scale of a split that lacks some."""
    options = {name: dict(value or {}) for name, value in (loss_options or {}).items()}
    sigma = (noise or {}).get("median_rater_std", np.nan)
    if "fidelity" in losses and "sigma" not in options.get("fidelity", {}) and np.isfinite(sigma):
        options.setdefault("fidelity", {})["sigma"] = round(float(sigma), 3)
    return options


# ------------------------------------------------------------------ tables

def loss_table(results: dict[str, dict], run_dirs: dict[str, Path], mos_range) -> pd.DataFrame:
    """Per loss: median, IQR, min and max over rounds of SRCC, PLCC, PLCC after the logistic map and RMSE,
    what anchors its scores (:class:`iqalib.losses.LossInfo`), where its test predictions lie
    (``pred_min``, ``pred_max`` over all rounds, ``off_scale``: the share more than
    :data:`iqalib.analysis.runs.OUTSIDE_MARGIN` of the scale's width outside ``mos_range``)
    and ``max_diff_to_l1``, the largest difference to the L1 run's prediction of the same image."""
    low, high = mos_range
    margin = OUTSIDE_MARGIN * (high - low)  # the book's rule for "off the scale"
    reference = predictions_frame(run_dirs[REFERENCE]) if REFERENCE in run_dirs else None
    rows = []
    for name, r in results.items():
        per_round = pd.DataFrame(r["test_per_round"])
        summary = metrics.summarize_rounds(per_round, metrics=["srcc", "plcc", "plcc_logistic", "rmse"])
        predictions = predictions_frame(run_dirs[name])
        row = {"loss": name, "model": r["model"], "family": loss_info(name).family,
               "scores": loss_info(name).scale, "rounds": r["rounds"]}
        for metric in ("srcc", "plcc", "plcc_logistic", "rmse"):
            for statistic in ("median", "iqr", "min", "max"):
                row[f"{metric}_{statistic}"] = summary.loc[metric, statistic]
        row.update(pred_min=float(predictions["pred"].min()), pred_max=float(predictions["pred"].max()),
                   off_scale=float(((predictions["pred"] < low - margin) | (predictions["pred"] > high + margin))
                                   .mean()))
        if reference is not None:
            joined = predictions.merge(reference, on=["round", "image"], suffixes=("", "_ref"))
            row["max_diff_to_l1"] = float((joined["pred"] - joined["pred_ref"]).abs().max())
        rows.append(row)
    return pd.DataFrame(rows).set_index("loss")


def loss_rounds(results: dict[str, dict]) -> pd.DataFrame:
    """Long table of test metrics, one row per loss and round (``label`` is the loss, as
    :func:`iqalib.plots.ablation.plot_rounds` reads it)."""
    return pd.DataFrame([{"loss": name, "label": name, **per_round} for name, r in results.items()
                         for per_round in r["test_per_round"]])


def seed_table(ours: pd.DataFrame) -> pd.DataFrame:
    """The seed's SRCC/PLCC beside our medians (4 decimals), for the losses the seed reports; a loss this
    edition did not train reads "not trained" in our columns."""
    rows = []
    for name, (srcc, plcc) in SEED_LOSS_RESULTS.items():
        row = {"loss": name, "seed_srcc": srcc, "seed_plcc": plcc}
        if name in ours.index:
            row.update(our_srcc=ours.loc[name, "srcc_median"], our_plcc=ours.loc[name, "plcc_median"],
                       our_plcc_logistic=ours.loc[name, "plcc_logistic_median"])
        rows.append(row)
    table = pd.DataFrame(rows).set_index("loss")
    table["seed_rank"] = table["seed_srcc"].rank(ascending=False).astype(int)
    if "our_srcc" in table:
        table["our_rank"] = table["our_srcc"].rank(ascending=False, method="min").astype("Int64")
        ours_columns = ["our_srcc", "our_plcc", "our_plcc_logistic", "our_rank"]
        trained = table["our_srcc"].notna()
        table[ours_columns] = table[ours_columns].round(4).astype(object).where(trained, "not trained")
    return table


def protocol_differences(config: RunConfig, data_label: str) -> list[str]:
    """How the run ``config`` (the L1 run of the study) differs from the seed's protocol, one line each."""
    lines = []
    if config.data.name != SEED_PROTOCOL["data"]:
        lines.append(f"data: {data_label} here, KonIQ-10k in the seed")
    if config.model.name != SEED_PROTOCOL["model"]:
        lines.append(f"model: {config.model.name} here, smart_iqa_base (Swin-B) in the seed")
    if config.train.freeze_backbone:
        lines.append("trunk: frozen here (only the head learns), fine-tuned in the seed")
    lines.append(f"runs: {config.train.rounds} round(s) here, median reported; one run in the seed")
    lines.append(f"epoch selection: on the {OUR_SELECTION} here, on the test split in the seed "
                 "(which favours every loss by the luck of the pick)")
    return lines


# ------------------------------------------------------------------ verdicts

# The book's verdict on "this loss beats L1" (pair_verdict), as the loss chapter words it.
_STATUS = {"supported": "better", "contradicted": "worse", "not supported": "tie", "untested": "untested"}


def _status(row) -> str:
    return _STATUS[pair_verdict(row).split(" (")[0]]


def rank_losses_vs_l1(summary: pd.DataFrame) -> pd.DataFrame:
    """Rows of a :func:`~iqalib.analysis.significance.compare_runs` summary for the seed's rank-based
    losses against L1, with ``status``: the book's one rule on "the loss beats L1"
    (:func:`iqalib.analysis.significance.pair_verdict`): better, worse, tie (not significant) or
    untested (fewer than :data:`~iqalib.analysis.significance.MIN_ROUNDS_FOR_TESTS` rounds)."""
    rows = summary[(summary["b"] == REFERENCE) & summary["a"].isin(RANK_BASED)].copy()
    rows["status"] = [_status(r) for _, r in rows.iterrows()]
    return rows.set_index("a")


def seed_claim_verdict(summary: pd.DataFrame) -> str:
    """A sentence on the seed's conclusion "plain regression losses beat rank-based ones".

    Read as: each rank-based loss (fidelity, soft SRCC, ranking hinge) scores
    a lower test SRCC than L1 on the same splits. From the paired tests
    (``summary`` of :func:`~iqalib.analysis.significance.compare_runs`, metric
    SRCC, B = L1), each decided by the book's one rule (:func:`_status`):
    *supported* when all three are worse, *partly supported* when some are
    worse and none better, *contradicted* when some are better and none worse,
    *mixed* when both, *not supported* when none differs, and *untested* with
    fewer than :data:`~iqalib.analysis.significance.MIN_ROUNDS_FOR_TESTS`
    rounds (then the sentence says which way the paired medians lean).
    """
    rows = rank_losses_vs_l1(summary)
    if rows.empty:
        return "Untested: no rank-based loss (fidelity, soft_srcc, ranking) was trained against L1."
    deltas = ", ".join(f"{name} {r['median_delta']:+.4f}" for name, r in rows.iterrows())
    numbers = f"median SRCC difference to L1 over rounds: {deltas}"
    status = rows["status"]
    worse, better = list(rows.index[status == "worse"]), list(rows.index[status == "better"])
    rounds = int(rows["rounds"].min())
    if (status == "untested").all():
        below = int((rows["median_delta"] < 0).sum())
        lean = ("lean towards it" if below == len(rows) else "lean against it" if below == 0
                else f"are split ({below} of {len(rows)} below L1)")
        return (f"Untested: {counted(rounds, 'round')} {'is' if rounds == 1 else 'are'} too few for the book's "
                f"rule (it needs "
                f"{MIN_ROUNDS_FOR_TESTS}); the paired medians {lean} ({numbers}).")
    tests = ", ".join(f"{name} p = {r['wilcoxon_p']:.3g} (sign test {r['sign_p']:.3g})"
                      for name, r in rows.iterrows())
    detail = f"{numbers}; signed-rank test over {rounds} rounds: {tests}"
    if worse and len(worse) == len(rows):
        verdict = "Supported: every rank-based loss scores a lower SRCC than L1 on the same splits"
    elif worse and not better:
        verdict = (f"Partly supported: {', '.join(worse)} score(s) lower than L1, the other rank-based "
                   "losses are indistinguishable from it")
    elif better and not worse:
        verdict = f"Contradicted: {', '.join(better)} score(s) a higher SRCC than L1"
    elif better and worse:
        verdict = f"Mixed: {', '.join(worse)} below L1, {', '.join(better)} above it"
    else:
        verdict = "Not supported: no rank-based loss differs detectably from L1"
    return f"{verdict} ({detail})."


# ------------------------------------------------------------------ label noise

def label_noise(table, *, max_pairs: int = 200_000, seed: int = 0) -> dict:
    """How noisy a data set's labels are, from its raters' standard deviations (NaN without them).

    ``rater_spread``: median rater standard deviation over the standard
    deviation of the MOS (a typical rater's disagreement against the spread of
    quality). ``pair_disagreement``: over image pairs (a seeded sample of at
    most ``max_pairs``), the mean probability that a rater orders the pair
    against its MOS, ``Phi(-|t_i - t_j| / sqrt(s_i^2 + s_j^2))`` (Thurstone, as
    the fidelity loss models it). Both are free of the MOS scale. Neither is the
    noise of the MOS itself, which also shrinks with the number of ratings per image.
    """
    frame = table.frame
    std = frame["std"].to_numpy(dtype=np.float64)
    mos = frame["mos"].to_numpy(dtype=np.float64)
    known = np.isfinite(std)
    row = {"data": table.label, "images": len(frame), "with_std": int(known.sum()),
           "mos_std": float(mos.std(ddof=1)), "median_rater_std": np.nan, "rater_spread": np.nan,
           "pair_disagreement": np.nan}
    if known.sum() < 2:
        return row
    mos, std = mos[known], std[known]
    rng = np.random.default_rng(seed)
    n = len(mos)
    i, j = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
    keep = i != j
    i, j = i[keep], j[keep]
    scale = np.sqrt(std[i] ** 2 + std[j] ** 2)
    usable = scale > 0
    disagreement = norm.cdf(-np.abs(mos[i] - mos[j])[usable] / scale[usable])
    row.update(median_rater_std=float(np.median(std)), rater_spread=float(np.median(std) / mos.std(ddof=1)),
               pair_disagreement=float(disagreement.mean()))
    return row


def label_noise_table(sets: dict) -> pd.DataFrame:
    """:func:`label_noise` for each data set of ``sets`` (``{name: {"root": ..., "options": {...}}}``
    or ``{name: root}``) that loads; the others are listed with the reason in ``attrs["skipped"]``."""
    rows, skipped = [], {}
    for name, spec in sets.items():
        spec = spec if isinstance(spec, dict) else {"root": spec}
        try:
            table = load_dataset(name, spec.get("root"), **(spec.get("options") or {}))
        except IQAError as exc:
            skipped[name] = str(exc)
            continue
        rows.append({"set": name, **label_noise(table)})
    columns = ["set", "data", "images", "with_std", "mos_std", "median_rater_std", "rater_spread",
               "pair_disagreement"]
    frame = pd.DataFrame(rows, columns=columns).set_index("set")
    frame.attrs["skipped"] = skipped
    return frame


def noise_sentence(noise_table: pd.DataFrame) -> str:
    """Which data set's labels are noisiest by rater disagreement, and whether LIVE-C's are
    noisier than KonIQ-10k's (the premise of testing the seed's guess on LIVE-C), when both are there."""
    known = noise_table.dropna(subset=["pair_disagreement"]).sort_values("pair_disagreement",
                                                                         ascending=False)
    if known.empty:
        return "No table here gives the raters' standard deviations, so label noise is not measured."
    listing = ", ".join(f"{r['data']} {r['pair_disagreement']:.3f}" for _, r in known.iterrows())
    sentence = f"Rater disagreement per pair of images, from the noisiest labels down: {listing}"
    if {"livec", "koniq10k"} <= set(known.index):
        livec, koniq = known.loc["livec", "pair_disagreement"], known.loc["koniq10k", "pair_disagreement"]
        sentence += (". By this measure LIVE-C's labels are " + ("noisier" if livec > koniq else "not noisier")
                     + " than KonIQ-10k's (per rater; the MOS of each also averages a different number of "
                     "ratings per image, which the LIVE-C table does not give)")
    return sentence + "."


# ------------------------------------------------------------------ across profiles

STUDY_FILE = "loss_study.json"


def rank_loss_gain(summary: pd.DataFrame) -> float:
    """The mean over the rank-based losses of their median SRCC difference to L1 (NaN without them)."""
    rows = summary[(summary["b"] == REFERENCE) & summary["a"].isin(RANK_BASED)]
    return float(rows["median_delta"].mean()) if len(rows) else float("nan")


def save_study(out_dir, *, profile: str, data_label: str, dataset: str, summary: pd.DataFrame,
               noise: dict | None, rounds: int) -> Path:
    """Write ``out_dir/loss_study.json`` (atomically): what other profiles' chapters compare against."""
    path = Path(out_dir) / STUDY_FILE
    atomic_write_json(path, {
        "profile": profile, "data": data_label, "dataset": dataset, "rounds": int(rounds),
        "rank_loss_gain": rank_loss_gain(summary),
        "deltas": {a: float(d) for a, b, d in zip(summary["a"], summary["b"], summary["median_delta"])
                   if b == REFERENCE},
        "noise": noise or {},
    })
    return path


def read_studies(out_dirs: dict) -> pd.DataFrame:
    """The saved studies (:func:`save_study`) of other profiles, one row each; missing ones are skipped."""
    rows = []
    for profile, folder in (out_dirs or {}).items():
        path = Path(folder) / STUDY_FILE
        if not path.is_file():
            continue
        try:
            study = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        noise = study.get("noise") or {}
        rows.append({"profile": study.get("profile", profile), "data": study.get("data"),
                     "rounds": study.get("rounds"), "rank_loss_gain": study.get("rank_loss_gain"),
                     "rater_spread": noise.get("rater_spread", np.nan),
                     "pair_disagreement": noise.get("pair_disagreement", np.nan)})
    return pd.DataFrame(rows, columns=["profile", "data", "rounds", "rank_loss_gain", "rater_spread",
                                       "pair_disagreement"])


def noisy_labels_verdict(studies: pd.DataFrame) -> str:
    """A sentence on the seed's guess "ranking losses might help on noisier labels".

    ``studies``: one row per data set with ``rank_loss_gain`` (mean median
    SRCC difference of the rank-based losses to L1) and ``pair_disagreement``
    (:func:`label_noise`). The guess predicts a larger gain on the noisier
    set. With fewer than two data sets that have both numbers the guess is
    untested; with two or more the sentence says whether the order agrees,
    and that data sets differ in much more than label noise.
    """
    usable = studies.dropna(subset=["rank_loss_gain", "pair_disagreement"])
    usable = usable.drop_duplicates(subset=["data"], keep="first")
    if len(usable) < 2:
        have = ", ".join(usable["data"].astype(str)) or "no data set"
        return (f"Untested: loss runs with label-noise figures exist for {have} only; the guess needs at "
                "least two data sets of different label noise (run this chapter under the other profiles).")
    ordered = usable.sort_values("pair_disagreement")
    listing = "; ".join(f"{r['data']}: rater disagreement {r['pair_disagreement']:.3f}, rank-loss gain "
                        f"{r['rank_loss_gain']:+.4f}" for _, r in ordered.iterrows())
    gains = ordered["rank_loss_gain"].to_numpy()
    if np.all(np.diff(gains) > 0):
        verdict = "Consistent with the guess: the noisier the labels, the more the rank-based losses gain over L1"
    elif np.all(np.diff(gains) < 0):
        verdict = "Against the guess: the rank-based losses gain less over L1 on the noisier labels"
    else:
        verdict = "No pattern: the rank-based losses' gain over L1 does not follow the label noise"
    return (f"{verdict} ({listing}). {len(usable)} data sets that differ in size, content and protocol as "
            "well as in label noise are one observation each, not a test of the guess.")


# ------------------------------------------------------------------ claims for the summary

def loss_claim_rows(summary: pd.DataFrame, studies: pd.DataFrame) -> list[dict]:
    """Rows ``{claim, edition, verdict}`` of the claims ``regression_beats_rank`` and
    ``rank_losses_noisy_labels`` (:data:`iqalib.analysis.claims.CLAIMS`) for
    :func:`iqalib.analysis.claims.record_claims`: the seed's
    conclusion (from :func:`seed_claim_verdict`) and its guess (from :func:`noisy_labels_verdict` on
    ``studies``, never more than an observation here, so its verdict is "untested" with what was seen)."""
    rows = rank_losses_vs_l1(summary)
    rounds = int(rows["rounds"].min()) if len(rows) else 0
    edition = ("median ΔSRCC vs L1 (paired by split) " + ", ".join(f"{n} {r['median_delta']:+.3f}"
                                                                  for n, r in rows.iterrows())
               + f" over {counted(rounds, 'round')}") if len(rows) else "not run"
    verdict = seed_claim_verdict(summary).split(":")[0].lower()
    if verdict == "untested":
        verdict = (rule_verdict(rounds, 0, 0, np.nan) if len(rows)
                   else "untested (no rank-based loss was trained against L1)")
    usable = studies.dropna(subset=["rank_loss_gain", "pair_disagreement"])
    seen = "; ".join(f"{r['data']}: rater disagreement {r['pair_disagreement']:.3f}, rank-loss gain "
                     f"{r['rank_loss_gain']:+.3f}" for _, r in usable.iterrows()) or "no loss study with label noise"
    guess = noisy_labels_verdict(studies).split(":")[0].split(" (")[0]
    if guess.startswith("Untested"):
        have = len(usable.drop_duplicates(subset=["data"]))
        guess_verdict = (f"untested (label noise and a loss study for {'one data set' if have == 1 else 'no data set'}"
                         "; the guess compares data sets of different label noise)")
    else:  # a few data sets are a few observations: an order seen, not a test
        guess_verdict = (f"untested ({guess.lower()}, but {len(usable)} data sets are {len(usable)} observations, "
                         "not a test)")
    return [claim_row("regression_beats_rank", edition, verdict),
            claim_row("rank_losses_noisy_labels", seen, guess_verdict)]


# ------------------------------------------------------------------ closing sentences

def losses_vs_l1_sentence(summary: pd.DataFrame) -> str:
    """Each loss against L1, paired by round: its median ΔSRCC, the rounds it won and the book's verdict.

    ``summary``: :func:`~iqalib.analysis.significance.compare_runs` rows with
    B = L1. The verdict is the book's one rule on "the loss beats L1"
    (:func:`~iqalib.analysis.significance.pair_verdict`); when it is
    "untested" for every loss for the same reason, the reason is said once.
    """
    rows = summary[summary["b"] == REFERENCE]
    verdicts = [pair_verdict(r) for _, r in rows.iterrows()]
    said_once = len(set(verdicts)) == 1 and verdicts[0].startswith("untested")
    words = {"supported": "better than L1", "contradicted": "worse than L1",
             "not supported": "no difference shown"}
    parts = []
    for (_, r), verdict in zip(rows.iterrows(), verdicts):
        rounds = int(r["rounds"])
        won = int(r["won"]) if "won" in r else int(round(r["a_better"] * rounds))
        outcome, _, reason = verdict.partition(" (")
        shown = "" if said_once else f", {words.get(outcome, outcome)}" + (f" ({reason}" if reason else "")
        parts.append(f"{r['a']} {r['median_delta']:+.3f}, above L1 in {won} of {counted(rounds, 'round')}{shown}")
    tail = (f"; by the book's rule every comparison is {verdicts[0]}" if said_once else "")
    return ("Each loss against L1, paired by split (median ΔSRCC over rounds, rounds above L1, the book's "
            "verdict on \"beats L1\"): " + "; ".join(parts) + tail + ".")


def what_the_numbers_say(table: pd.DataFrame, summary: pd.DataFrame, *, data_label: str) -> list[str]:
    """The chapter's closing sentences, chosen by the numbers.

    ``table``: :func:`loss_table`; ``summary``: paired tests against L1 on
    SRCC (:func:`~iqalib.analysis.significance.compare_runs`).
    """
    sentences = []
    best = table["srcc_median"].idxmax()
    worst = table["srcc_median"].idxmin()
    sentences.append(f"On {data_label}, {best} has the highest median test SRCC "
                     f"({table.loc[best, 'srcc_median']:.3f}) and {worst} the lowest "
                     f"({table.loc[worst, 'srcc_median']:.3f}), over {counted(int(table['rounds'].max()), 'round')}.")
    against = summary[summary["b"] == REFERENCE].set_index("a")
    if "max_diff_to_l1" in table:
        same = [n for n in table.index if n != REFERENCE and table.loc[n, "max_diff_to_l1"] <= SAME_MODEL]
        if same:
            reason = (" (with beta = 1 MOS unit the Huber loss has L1's gradient wherever an error "
                      "exceeds one unit, which on a 0-100 scale is nearly everywhere)" if "smooth_l1" in same else "")
            sentences.append(f"{', '.join(same)} trained the same model as L1: every test prediction "
                             f"within {SAME_MODEL:g} of L1's{reason}.")
    if len(against):
        sentences.append(losses_vs_l1_sentence(summary))
    off = table[table["off_scale"] >= OUTSIDE_SHARE]
    free = table[table["scores"] != "mos"]
    if len(free):
        names = ", ".join(free.index)
        sentences.append(f"{names} fix the order (or the spread) of the scores but not their place on the "
                         "MOS scale: their RMSE against the MOS means nothing, so they are compared by SRCC "
                         "and by PLCC after the logistic map (PLCC is blind to an affine change anyway).")
    if len(off):
        worst_off = off["off_scale"].idxmax()
        sentences.append(f"What went wrong: {len(off)} loss(es) predict {100 * OUTSIDE_SHARE:.0f}% or more of "
                         f"the test scores more than {100 * OUTSIDE_MARGIN:.0f}% of the MOS scale outside it, "
                         f"{worst_off} most often ({100 * off.loc[worst_off, 'off_scale']:.0f}% "
                         f"of them, from {off.loc[worst_off, 'pred_min']:.3g} to "
                         f"{off.loc[worst_off, 'pred_max']:.3g}); a user reading those as MOS would be misled.")
    gap = (table["plcc_logistic_median"] - table["plcc_median"])
    bent = gap[gap > LOGISTIC_BEND]
    if len(bent):
        sentences.append(f"The logistic map raises the median PLCC by more than {LOGISTIC_BEND:g} for "
                         + ", ".join(f"{n} ({gap[n]:+.3f})" for n in bent.index)
                         + ": their scores follow the MOS along a curve, not a line.")
    return sentences

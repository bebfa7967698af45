"""What a model costs against how fast it is measured: the sentences and the claim of the model-size chapter.

:func:`measure_costs` is chapter 10's one measurement: it calls
:func:`iqalib.experiments.model_cost_table` (GFLOPs per patch, inference
patches/s, the edition's test SRCC) and records its conditions (machine
block, threads, precision, batch, what is counted) in ``attrs["conditions"]``.

:func:`speed_checks` marks the speeds that cannot all be right: a model with
:data:`FLOPS_RATIO` times another's FLOPs measured at least as fast (both
marked: which one was disturbed is unknown), or a model that scores patches
more slowly than the ``train_step`` benchmark trains on them on the same
machine (:func:`iqalib.analysis.performance.train_step_reference`; another
machine's training rate is not compared). :func:`plotted_costs` keeps only the
rows no check rejects: a rejected number is shown in the table with its reason,
never plotted.

:func:`worth_cost_claim` decides "SMART-IQA is worth its cost": its gain over
HyperIQA must pass the book's one decision rule
(:func:`iqalib.analysis.significance.pair_verdict`: a signed-rank test over at least
6 paired rounds), and its cost per patch may be at most :data:`COST_BUDGET`
times HyperIQA's, in FLOPs and, where both speeds passed their checks, in
measured time.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from iqalib.analysis.claims import claim_row
from iqalib.analysis.performance import machine_block, machine_label
from iqalib.analysis.significance import compare_runs, pair_verdict
from iqalib.engine.fit import resolve_device
from iqalib.experiments import model_cost_table

FLOPS_RATIO = 4.0
COST_BUDGET = 1.5  # SMART-IQA may cost at most this many times HyperIQA per patch to be "worth it"
OK = "ok"


def measure_costs(models, *, out_dir=None, batch_size: int = 8, repeats: int = 3, warmup: int = 2,
                  device: str = "cpu") -> pd.DataFrame:
    """:func:`~iqalib.experiments.model_cost_table` with its conditions in ``attrs["conditions"]``.

    The conditions name the machine as every benchmark names it
    (:func:`~iqalib.analysis.performance.machine_label`), so the cross-check
    against the ``train_step`` benchmark runs only where both were measured on
    one machine.
    """
    costs = model_cost_table(models, out_dir=out_dir, batch_size=batch_size, repeats=repeats, warmup=warmup,
                             device=device)
    resolved = str(resolve_device(device))
    if resolved.startswith("cuda"):
        import torch  # lazy: keeps import iqalib fast

        machine = f"{torch.cuda.get_device_name(torch.device(resolved))} ({resolved})"
    else:
        machine = machine_label({**machine_block(), "threads": costs.attrs["threads"]})
    costs.attrs["conditions"] = {
        "machine": machine, "threads": costs.attrs["threads"], "precision": "fp32", "batch": batch_size,
        "measured": "inference: forward only, eval mode, no gradients, random weights, 224x224 patches in "
                    "the loaders' layout",
        "timing": f"{warmup} warm-up and {repeats} timed batches per model, round-robin; patches_per_s from "
                  "the fastest batch, patches_per_s_median from the median",
        "unit": "224x224 patches per second (one image's score averages several patches)",
        "flops": "forward conv and matmul FLOPs of one 224x224 patch, a multiply-add counting 2",
        "load_average": costs.attrs["load_average"], "cpus": os.cpu_count(),
    }
    return costs


def comparable_train_rates(costs: pd.DataFrame, reference: Mapping | None) -> tuple[dict, str | None]:
    """The ``train_step`` rates to check ``costs`` against, and why none are, when they are not comparable."""
    if reference is None:
        return {}, "The train-step benchmark was not run, so inference is not checked against training."
    mine = (costs.attrs.get("conditions") or {}).get("machine")
    if mine != reference["machine"]:
        return {}, (f"Inference is not checked against the train-step benchmark: that was measured on "
                    f"{reference['machine']}, this chapter on {mine or 'an unrecorded machine'}.")
    return dict(reference["rates"]), None


def _inconsistencies(frame: pd.DataFrame, rate: str, train_rates: Mapping[str, float]):
    """(models the problem marks, short reason, sentence) for each pair of speeds that cannot both be right."""
    for a, ra in frame.iterrows():
        for b, rb in frame.iterrows():
            if ra["gflops"] >= FLOPS_RATIO * rb["gflops"] and ra[rate] >= rb[rate]:
                ratio = ra["gflops"] / rb["gflops"]
                yield ((a, b), f"{a} measured at least as fast as {b} with {ratio:.0f}x its FLOPs",
                       f"Inconsistent measurement: {a} is measured at least as fast as {b} with {ratio:.0f}x its "
                       "FLOPs; re-measure on a quiet machine before reading the speeds.")
    for name, train_rate in train_rates.items():
        if name in frame.index and frame.loc[name, rate] < train_rate:
            yield ((name,), f"scores slower than it trains ({train_rate:.1f} patches/s, train-step benchmark)",
                   f"Inconsistent measurement: {name} scores {frame.loc[name, rate]:.1f} patches/s here but "
                   f"trains at {train_rate:.1f} patches/s in the train-step benchmark on the same machine; "
                   "inference does a third of a step's work, so one of the two was disturbed (load, warm-up).")


def speed_checks(costs: pd.DataFrame, rate: str = "patches_per_s",
                 train_rates: Mapping[str, float] | None = None) -> pd.Series:
    """Per model: ``"ok"``, or ``"rejected: ..."`` with every check its measured speed fails."""
    reasons = {name: [] for name in costs.index}
    for models, reason, _ in _inconsistencies(costs, rate, train_rates or {}):
        for name in models:
            reasons[name].append(reason)
    return pd.Series({name: "rejected: " + "; ".join(r) if r else OK for name, r in reasons.items()},
                     name="speed check")


def plotted_costs(costs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``costs`` a figure may show: those whose ``speed check`` passed."""
    return costs[costs["speed check"] == OK] if "speed check" in costs else costs


def model_size_sentences(costs: pd.DataFrame, rate: str = "patches_per_s",
                         train_rates: Mapping[str, float] | None = None) -> list[str]:
    """Cost against measured speed; flags a model measured as fast as one with a fraction of its FLOPs.

    ``train_rates`` (model -> training-step patches/s of the ``train_step``
    benchmark on the same machine, :func:`comparable_train_rates`) adds a
    second check: scoring a patch is about a third of a training step's work,
    so inference slower than training means one of the two measurements is wrong.
    """
    frame = costs.sort_values("gflops")
    problems = list(_inconsistencies(frame, rate, train_rates or {}))
    rejected = {name for models, _, _ in problems for name in models}
    out = []
    cheap, dear = frame.iloc[0], frame.iloc[-1]
    if len(frame) > 1 and dear["gflops"] >= 2 * cheap["gflops"]:
        speed = (f"scores {dear[rate]:.1f} against {cheap[rate]:.1f} patches/s here"
                 if not {dear.name, cheap.name} & rejected else "its measured speed is rejected below")
        out.append(f"{dear.name} costs {dear['gflops'] / cheap['gflops']:.0f}x the FLOPs of {cheap.name} "
                   f"({dear['gflops']:.2f} vs {cheap['gflops']:.2f} GFLOPs per patch) and {speed}.")
    elif len(frame) > 1:
        out.append(f"The models cost {frame['gflops'].min():.2f} to {frame['gflops'].max():.2f} GFLOPs per patch "
                   f"and score {frame[rate].min():.1f} to {frame[rate].max():.1f} patches/s here.")
    out += [sentence for _, _, sentence in problems]
    scored = frame[np.isfinite(frame.get("test_srcc", pd.Series(np.nan, index=frame.index)))]
    if len(scored):
        best = scored["test_srcc"].idxmax()
        out.append(f"Of the models with a run in this edition, {best} ranks best (test SRCC "
                   f"{scored.loc[best, 'test_srcc']:.3f}) at {scored.loc[best, 'gflops']:.2f} GFLOPs per patch.")
    return out


# ------------------------------------------------------------------ is SMART-IQA worth its cost?

def cost_ratio(costs: pd.DataFrame, smart: str, baseline: str) -> tuple[float, str]:
    """SMART-IQA's cost per patch over HyperIQA's, and how it was taken.

    The larger of the FLOPs ratio and, where both speeds passed their
    checks, the measured time-per-patch ratio (baseline rate / SMART rate).
    """
    flops = costs.loc[smart, "gflops"] / costs.loc[baseline, "gflops"]
    words = (f"{flops:.2f}x the GFLOPs per patch ({costs.loc[smart, 'gflops']:.2f} vs "
             f"{costs.loc[baseline, 'gflops']:.2f})")
    checks = costs["speed check"] if "speed check" in costs else pd.Series(OK, index=costs.index)
    if checks[smart] == OK and checks[baseline] == OK and costs.loc[smart, "patches_per_s"] > 0:
        time = costs.loc[baseline, "patches_per_s"] / costs.loc[smart, "patches_per_s"]
        return max(flops, time), f"{words} and {time:.2f}x the measured time per patch"
    return flops, f"{words}; measured time not used (a speed failed its check)"


def worth_cost_claim(row: Mapping | None, costs: pd.DataFrame, smart: str, baseline: str,
                     missing: str | None = None) -> dict:
    """The claim row of "SMART-IQA is worth its cost" (``smart_worth_cost``).

    ``row`` is the :func:`~iqalib.analysis.significance.combine_rounds`
    summary of SMART-IQA against HyperIQA on the same rounds (None when a run
    is missing; ``missing`` says why). Supported when
    :func:`~iqalib.analysis.significance.pair_verdict` is "supported" and the
    cost (:func:`cost_ratio`) is at most :data:`COST_BUDGET`; contradicted
    when HyperIQA is significantly better; otherwise the gain's own verdict.
    """
    unmeasured = [name for name in (smart, baseline) if name not in costs.index]
    if unmeasured:
        return claim_row("smart_worth_cost", "cost not measured",
                         f"untested ({' and '.join(unmeasured)} not among this chapter's models)")
    ratio, how = cost_ratio(costs, smart, baseline)
    if row is None:
        return claim_row("smart_worth_cost", f"{smart} costs {how} of {baseline}",
                         f"untested ({missing or 'no paired runs'})")
    gain = pair_verdict(row)
    edition = (f"{smart} vs {baseline}: median ΔSRCC {row['median_delta']:+.3f} over {int(row['rounds'])} "
               f"paired rounds; it costs {how}")
    if gain == "supported":
        verdict = ("supported" if ratio <= COST_BUDGET else
                   f"not supported (a significant gain, but {ratio:.2f}x the cost, over the {COST_BUDGET:g}x budget)")
    elif gain == "contradicted":
        verdict = f"contradicted ({baseline} scores significantly better)"
    elif gain.startswith("not supported"):
        verdict = f"not supported (no significant gain: {gain})"
    else:
        verdict = f"untested (the gain: {gain})"
    return claim_row("smart_worth_cost", edition, verdict)


def worth_cost_comparison(out_dir: str | Path, smart: str, baseline: str, *, seed: int = 0,
                          n_boot: int = 1000) -> tuple[Mapping | None, str | None]:
    """The paired comparison of chapter 4's runs ``smart`` and ``baseline``, or None and why it cannot be made."""
    absent = [name for name in (smart, baseline) if not (Path(out_dir) / name / "summary.json").is_file()]
    if absent:
        return None, (f"no finished run {' or '.join(absent)} in this edition; chapters 3 and 4 train them")
    _, summary = compare_runs({smart: Path(out_dir) / smart, baseline: Path(out_dir) / baseline},
                              [(smart, baseline)], seed=seed, n_boot=n_boot)
    return summary.iloc[0].to_dict(), None

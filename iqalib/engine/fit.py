"""Training and evaluation: one run, R rounds, an honest protocol.

Per round ``r`` the table is split with seed ``data.split_seed + r`` (or the
official split), the model is trained for ``epochs`` epochs, each epoch is
scored on the validation split and the epoch with the best validation SRCC is
selected; only that model is scored on the test split, once. The rounds'
test metrics are summarised by their median and spread (HyperIQA reports the
median of 10 rounds, but its code picks epochs by test SRCC; we never do).

Everything a run produces lands in ``out_dir/name/round_<r>/``:
``last.pt`` (resumable state, written atomically after every epoch),
``best.pt`` (weights of the selected epoch), ``history.csv``,
``predictions.csv`` (test images, MOS, prediction) and ``results.json``.

The run folder belongs to one run and one process: whether a run may train
into it (fresh, ``resume``, ``force``) is :mod:`iqalib.engine.runfolder`'s
decision. ``results.json`` and ``summary.json`` record the code that made them
(:func:`iqalib.engine.provenance.code_identity`).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Subset

from iqalib import metrics
from iqalib.config import RunConfig, TrainConfig, check_device, from_dict, load_config, resolve_train
from iqalib.data.datasets import load_dataset
from iqalib.data.images import ImageStore
from iqalib.data.patches import PatchDataset, make_loader, mean_per_image, to_model_input
from iqalib.data.splits import split_table
from iqalib.data.table import IQATable
from iqalib.engine import distributed, provenance
from iqalib.engine.card import epoch_card, training_card
from iqalib.engine.checkpoint import resume_state, save_checkpoint
from iqalib.engine.features import feature_bank
from iqalib.engine.precision import autocast_dtype, precision_record
from iqalib.engine.runfolder import holding_run
from iqalib.errors import ConfigError, IQAError, did_you_mean
from iqalib.files import atomic_write_json, atomic_write_text, make_folder, read_result_json
from iqalib.losses import build_loss, loss_info  # training losses by name: iqalib.losses.list_losses()
from iqalib.models import create_model, hyperiqa_step_lr
from iqalib.models.registry import check_model_options, model_options


class TrainingDiverged(IQAError):
    """The loss or the predictions became NaN or infinite."""


# ----------------------------------------------------------------- set-up
def resolve_device(name: str) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    check_device(name)  # also for configs that did not come through load_config (fit(dict), notebooks)
    return distributed.process_device(torch.device(name))  # under torchrun: cuda:LOCAL_RANK


def autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def as_config(config) -> RunConfig:
    if isinstance(config, RunConfig):
        return config
    if isinstance(config, (str, Path)):
        return load_config(config)
    return from_dict(config)


@dataclasses.dataclass
class Data:
    """A table and its decoded images, shared by every round of a run."""

    table: IQATable
    store: ImageStore

    def indices(self, part: IQATable) -> np.ndarray:
        position = {name: i for i, name in enumerate(self.table.frame["image"])}
        return np.array([position[name] for name in part.frame["image"]], dtype=np.int64)


def prepare_data(config: RunConfig) -> Data:
    """Load the table and decode every image once (dropping bad ones if allowed)."""
    dc = config.data
    table = load_dataset(dc.name, dc.root, **dc.load_options())
    patch = config.train.patch_size
    if table.short_side is not None and patch > table.short_side:
        raise ConfigError(f"train.patch_size={patch} is larger than the images of {table.name!r} "
                          f"(short side {table.short_side}); lower train.patch_size")
    # No upscaling to fit the patch: a blown-up image no longer has the quality its MOS rates.
    store = ImageStore.build(
        table.paths,
        short_side=table.short_side,
        cache=dc.image_cache,
        on_error=dc.on_error,
        progress=config.train.progress and distributed.is_main(),
    )
    too_small = store.valid() & (store.shapes < patch).any(axis=1)
    if too_small.any():
        first = int(np.flatnonzero(too_small)[0])
        h, w = store.shapes[first]
        what = (f"train.patch_size={patch} is larger than {int(too_small.sum())} of {len(store)} image(s) "
                f"(e.g. {table.paths[first]}: {w}x{h})")
        if dc.on_error != "drop":
            raise ConfigError(f"{what}; lower train.patch_size (at most {int(store.shapes.min())} fits all) "
                              "or set data.on_error=drop to skip them")
        warnings.warn(f"{what}; skipping them (data.on_error=drop)", stacklevel=2)
    keep = store.valid() & ~too_small
    if not keep.all():
        table = table.subset(keep)
        store = store.subset(keep)
    return Data(table, store)


def make_model(config: RunConfig, device: torch.device):
    model = create_model(config.model.name, pretrained=config.model.pretrained, **config.model.options)
    return model.to(device)


def resolved_train(config: RunConfig, model) -> TrainConfig:
    return resolve_train(config.train, model.default_train_config())


def build_optimizer(model, tc: TrainConfig):
    groups = model.param_groups(tc.trunk_lr, tc.head_lr_multiplier, tc.weight_decay,
                                lda_with_trunk=tc.lda_with_trunk)
    if tc.optimizer == "adam":
        return torch.optim.Adam(groups)
    if tc.optimizer == "adamw":
        return torch.optim.AdamW(groups)
    return torch.optim.SGD(groups, momentum=0.9)


def build_scheduler(optimizer, tc: TrainConfig):
    """Per-epoch schedule: the seed's cosine, HyperIQA's step decay of the head, or constant."""
    if tc.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=tc.epochs,
                                                          eta_min=tc.eta_min or 0.0)
    if tc.schedule == "hyperiqa_step":
        def head_factor(epoch):
            return hyperiqa_step_lr(epoch, 1.0, tc.head_lr_multiplier)[1] / tc.head_lr_multiplier

        factors = [head_factor if g.get("name") == "head" else (lambda epoch: 1.0)
                   for g in optimizer.param_groups]
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factors)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 1.0)


# --------------------------------------------------------------- batches
class PatchSource:
    """Batches of image patches through the whole model."""

    def __init__(self, model, store, indices, scores, tc: TrainConfig, *, train: bool, device, dtype):
        self.model, self.device, self.dtype, self.tc = model, device, dtype, tc
        self.n_images = len(indices)
        self.dataset = PatchDataset(
            store, scores, indices=indices, patch_size=tc.patch_size,
            patches_per_image=tc.train_patches if train else tc.test_patches,
            train=train, seed=tc.seed, test_crops=tc.test_crops,
        )
        self.mean, self.std = model.mean, model.std
        self.rater_std = None

    def loader(self, epoch: int, shuffle: bool, images: np.ndarray | None = None):
        """Batches of the patches of ``images`` (positions in this source; None: all)."""
        self.dataset.set_epoch(epoch)  # crops depend on (seed, epoch, image), not on the rank
        dataset = self.dataset if images is None else Subset(self.dataset, self.dataset.items_of(images))
        return make_loader(dataset, batch_size=self.tc.batch_size, shuffle=shuffle,
                           workers=self.tc.workers, pin_memory=self.device.type == "cuda",
                           seed=distributed.rank_seed(self.tc.seed) * 100_003 + epoch)

    def forward(self, batch):
        patches, scores, images = batch
        x = to_model_input(patches, self.mean, self.std, device=self.device,
                           channels_last=self.tc.channels_last)
        with autocast(self.device, self.dtype):
            pred = self.model(x)
        return pred.float(), scores.to(self.device), images


class FeatureSource:
    """Batches of cached trunk features through the head only (frozen trunk).

    The bank holds ``k`` fixed crops per image. Validation and test read the
    first ``patches`` of them. Training (``rotate=True``) reads ``patches``
    crops per image per epoch and moves on by ``patches`` each epoch, so with
    ``k > patches`` every cached crop is used, in turn, at the cost of
    ``patches`` head passes per image and epoch (the head is compute-bound:
    fewer patches per epoch is what makes an epoch short).
    """

    def __init__(self, model, bank, indices, scores, patches: int, tc: TrainConfig, *, device, dtype,
                 rotate: bool = False):
        self.model, self.device, self.dtype, self.tc = model, device, dtype, tc
        self.n_images = len(indices)
        self.bank = bank
        self.k, self.patches, self.rotate = bank.patches_per_image, patches, rotate
        self.first_rows = torch.from_numpy(np.asarray(indices, dtype=np.int64)[:, None] * self.k)
        self.images = torch.arange(len(indices)).repeat_interleave(patches)
        self.scores = torch.as_tensor(np.repeat(np.asarray(scores, np.float32), patches))
        self.rater_std = None

    def rows(self, epoch: int) -> torch.Tensor:
        """Bank rows of this epoch's crops, image-major (``patches`` per image)."""
        offset = (epoch * self.patches) % self.k if self.rotate else 0
        crops = (offset + torch.arange(self.patches)) % self.k
        return (self.first_rows + crops[None, :]).reshape(-1)

    def loader(self, epoch: int, shuffle: bool, images: np.ndarray | None = None):
        """Batches of (bank rows, scores, image positions) of ``images`` (None: all)."""
        rows = self.rows(epoch)
        order = torch.arange(len(rows))
        if images is not None:  # rows are image-major, ``patches`` per image
            order = (torch.as_tensor(images)[:, None] * self.patches + torch.arange(self.patches)).reshape(-1)
        if shuffle:
            order = order[torch.randperm(len(order), generator=torch.Generator().manual_seed(
                distributed.rank_seed(self.tc.seed) * 100_003 + epoch))]
        for start in range(0, len(order), self.tc.batch_size):
            sel = order[start : start + self.tc.batch_size]
            yield rows[sel], self.scores[sel], self.images[sel]

    def forward(self, batch):
        rows, scores, images = batch
        feats = [f[rows].to(self.device, non_blocking=True).float() for f in self.bank.features]
        with autocast(self.device, self.dtype):
            pred = self.model.forward_pooled(feats)
        return pred.float(), scores.to(self.device), images


def predict_images(source) -> np.ndarray:
    """One score per image: the mean over its patches.

    Under torchrun each rank scores its own slice of the images and the
    slices are gathered: every rank returns all scores, each image scored once.
    """
    model = source.model
    was_training = model.training
    model.eval()
    preds, index = [], []
    mine = distributed.eval_shard(source.n_images)
    with torch.inference_mode():
        for batch in source.loader(0, shuffle=False, images=mine):
            pred, _, images = source.forward(batch)
            preds.append(pred.cpu())
            index.append(images)
    model.train(was_training)
    if not preds:  # more ranks than images: this rank had none to score
        preds, index = [torch.zeros(0)], [torch.zeros(0, dtype=torch.int64)]
    scores = mean_per_image(torch.cat(preds), torch.cat(index), source.n_images)
    return distributed.gather_image_scores(scores, mine)


# ------------------------------------------------------------------ loop
def merge_lone_last_batch(batches):
    """``batches``, with a last batch of a single patch merged into the batch before it.

    BatchNorm in training mode cannot normalise one value per channel (torch
    raises "Expected more than 1 value per channel"), and a pairwise loss has
    no pair in it. Merged, the last step is one patch larger than the others
    and every patch still trains in every epoch (dropping it instead would
    leave one image out of the epoch). Only the last batch of a loader can be
    smaller than the one before it, so that is how it is recognised.
    """
    previous = None
    for batch in batches:
        if previous is not None:
            if len(batch[1]) == 1 and len(previous[1]) > 1:
                previous = tuple(torch.cat([a, b]) for a, b in zip(previous, batch))
                continue
            yield previous
        previous = batch
    if previous is not None:
        yield previous


def _normalises_in_training(model) -> bool:
    """Whether ``model`` has a BatchNorm layer in training mode (it cannot take a batch of one)."""
    return any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training for m in model.modules())


def _not_finite(values) -> str | None:
    """``"nan"``/``"inf"``/``"-inf"`` for the first non-finite value in ``values``, else None."""
    values = np.asarray(values, dtype=np.float64)
    bad = ~np.isfinite(values)
    return str(values[bad][0]) if bad.any() else None


def rater_std_per_image(std) -> torch.Tensor | None:
    """The raters' standard deviations of a split's images for a loss that uses them
    (``fidelity``), or None where any is unknown (NaN) or not positive: such a loss
    then falls back to its fixed scale for the whole run, never for some batches only."""
    std = np.asarray(std, dtype=np.float64)
    if len(std) == 0 or not np.isfinite(std).all() or (std <= 0).any():
        return None
    return torch.tensor(std, dtype=torch.float32)  # a copy: the table's array is read-only


def _rater_std(source, images, device) -> torch.Tensor | None:
    """Per patch: the raters' standard deviation of its image (None where the table has none)."""
    if source.rater_std is None:
        return None
    return source.rater_std[torch.as_tensor(images, dtype=torch.long)].to(device)


def train_one_epoch(source, model, optimizer, loss_fn, tc: TrainConfig, epoch: int) -> dict:
    model.train()  # a frozen trunk stays in eval mode (HyperIQA.train)
    distributed.seed_rank_for_epoch(tc.seed, epoch)
    total, count, wait, step = 0.0, 0, 0.0, 0.0
    # Under torchrun: this rank's share of the images (the same permutation on every rank).
    iterator = merge_lone_last_batch(source.loader(epoch, shuffle=True, images=distributed.shard_images(
        source.n_images, epoch, tc.seed)))
    progress = None
    if tc.progress and distributed.is_main():
        from tqdm import tqdm  # lazy: keeps import iqalib fast

        progress = tqdm(desc=f"epoch {epoch + 1}/{tc.epochs}", unit="patch", leave=False)
    while True:
        t0 = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        t1 = time.perf_counter()
        if len(batch[1]) == 1 and _normalises_in_training(model):
            raise ConfigError(f"a training step holds a single patch (train.batch_size={source.tc.batch_size} per process) "
                              "and BatchNorm cannot train on a batch of one; raise train.batch_size or "
                              "train.train_patches, or use more training images")
        pred, target, images = source.forward(batch)
        std = _rater_std(source, images, pred.device)
        loss = loss_fn(pred, target) if std is None else loss_fn(pred, target, std)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the loss became {loss.item()} at epoch {epoch + 1}; lower train.trunk_lr "
                                   "or set train.grad_clip, then rerun with --force")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if tc.grad_clip:
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]], tc.grad_clip)
        optimizer.step()
        n = len(target)
        total += loss.item() * n
        count += n
        t2 = time.perf_counter()
        wait += t1 - t0
        step += t2 - t1
        if progress is not None:
            progress.update(n)
            progress.set_postfix(loss=f"{total / count:.3f}")
    if progress is not None:
        progress.close()
    distributed.broadcast_buffers(model)  # one set of BatchNorm statistics for scoring and saving
    total, count = distributed.sum_over_ranks(total, count)  # the loss over the global batch
    count = int(count)
    seconds = wait + step
    return {
        "train_loss": total / max(count, 1),
        "train_patches": count,
        "train_seconds": seconds,
        "patches_per_s": count / seconds if seconds else float("nan"),
        "loader_wait_fraction": wait / seconds if seconds else float("nan"),
    }


def _rng_state() -> dict:
    """The global RNGs as tensors, lists and numbers (loadable with ``weights_only=True``)."""
    _, keys, pos, has_gauss, cached_gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "numpy": {"keys": keys.tolist(), "pos": int(pos), "has_gauss": int(has_gauss),
                      "cached_gaussian": float(cached_gauss)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(("MT19937", np.asarray(np_state["keys"], dtype=np.uint32), np_state["pos"],
                         np_state["has_gauss"], np_state["cached_gaussian"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))


def _cpu_state(model) -> dict:
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


@dataclasses.dataclass
class Round:
    """What one round trains with, set up by :func:`_start_round` (``sources``: train, val, test)."""

    config: RunConfig
    index: int
    model: torch.nn.Module
    tc: TrainConfig
    device: torch.device
    out: Path
    parts: dict
    card: dict
    sources: dict
    trainer: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: object
    loss_fn: object
    history: list
    best: dict
    start_epoch: int = 0

    @property
    def mos(self) -> dict:
        return {k: v.mos for k, v in self.parts.items()}


def fit_round(config: RunConfig, data: Data, round_index: int = 0, *, resume: bool = False,
              bank=None) -> dict:
    """Train and select one round; returns its results (also written to results.json)."""
    run = _start_round(config, data, round_index, resume=resume, bank=bank)
    if isinstance(run, dict):  # resumed a round that had finished: its files (and timings) stay as they are
        return run
    started = time.perf_counter()
    _train_epochs(run)
    return _finish_round(run, data, started)


def _start_round(config: RunConfig, data: Data, round_index: int, *, resume: bool, bank) -> Round | dict:
    """The model, splits, batch sources, optimizer and (with ``resume``) the state of ``last.pt``;
    or the round's results when it had finished."""
    device = resolve_device(config.train.device)
    distributed.init_from_env(device)
    seed_everything(config.train.seed + round_index)
    model = make_model(config, device)
    tc = resolved_train(config, model)
    tc = dataclasses.replace(tc, seed=tc.seed + round_index)
    out = config.run_dir / f"round_{round_index}"
    if resume:
        finished = _finished_round(out, tc.epochs)
        if finished is not None:
            return finished
    train_tc = distributed.per_rank_train_config(tc)  # batch_size / world_size patches per rank and step
    dtype = autocast_dtype(device, tc.precision)
    if tc.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if tc.freeze_backbone:
        if bank is None:
            with distributed.local_main_first():  # one trunk pass fills the disk cache, the others read it
                bank = feature_bank(model, data, tc, device=device)
        # Every round's trunk is the one the cached features came from.
        model.backbone.load_state_dict(bank.backbone_state)
        model.freeze_backbone(True)
    make_folder(out)  # a read-only or full disk is a one-line OutputError

    parts = split_table(data.table, seed=config.data.split_seed + round_index,
                        fractions=tuple(config.data.fractions), official=config.data.official_split)
    if len(parts["val"]) == 0:
        raise ConfigError("the validation split is empty; model selection needs one (data.fractions)")
    for name in ("val", "test"):  # each is scored with PLCC's logistic fit, which needs 4 images
        if len(parts[name]) < metrics.MIN_SCORED_IMAGES:
            raise ConfigError(f"data.fractions={list(config.data.fractions)}: the {name} part of round "
                              f"{round_index} holds {len(parts[name])} image(s), and its SRCC/PLCC need at least "
                              f"{metrics.MIN_SCORED_IMAGES}; use more data or larger {name} fractions")
    card = training_card(config, data.table, parts, tc, model, dtype, round_index)
    sources = _round_sources(model, data, parts, bank, tc, train_tc, device=device, dtype=dtype)
    runner = torch.compile(model) if tc.compile else model
    for s in sources.values():
        s.model = runner
    # Under torchrun training steps go through DDP, which averages the gradients over the
    # ranks; scoring uses the plain model (no collectives but the final gather of scores).
    trainer = sources["train"].model = distributed.wrap_for_training(runner, pooled=tc.freeze_backbone)
    optimizer = build_optimizer(model, tc)
    run = Round(config, round_index, model, tc, device, out, parts, card, sources, trainer, optimizer,
                build_scheduler(optimizer, tc), build_loss(tc.loss, tc.loss_options), history=[],
                best={"epoch": -1, "val_srcc": -math.inf, "state": None})
    last = out / "last.pt"
    if resume and last.is_file():
        state = resume_state(last, config.model.name, model, optimizer, run.scheduler)
        _set_rng_state(state["rng"])
        run.history = state["history"]
        run.best = {"epoch": state["best_epoch"], "val_srcc": state["best_val_srcc"], "state": state["best_model"]}
        run.start_epoch = state["epoch"] + 1
    return run


def _round_sources(model, data: Data, parts: dict, bank, tc: TrainConfig, train_tc: TrainConfig, *,
                   device, dtype) -> dict:
    """The batches of each split: cached trunk features (frozen trunk) or image patches."""
    idx = {k: data.indices(v) for k, v in parts.items()}
    mos = {k: v.mos for k, v in parts.items()}
    if tc.freeze_backbone:
        sources = {
            "train": FeatureSource(model, bank, idx["train"], mos["train"], tc.train_patches, train_tc,
                                   device=device, dtype=dtype, rotate=True),
            **{k: FeatureSource(model, bank, idx[k], mos[k], tc.test_patches, tc, device=device,
                                dtype=dtype) for k in ("val", "test")},
        }
    else:
        sources = {k: PatchSource(model, data.store, idx[k], mos[k], train_tc if k == "train" else tc,
                                  train=(k == "train"), device=device, dtype=dtype)
                   for k in ("train", "val", "test")}
    if loss_info(tc.loss).takes_std:  # e.g. fidelity: Thurstone's scale from the raters' spread
        sources["train"].rater_std = rater_std_per_image(parts["train"].std)
    return sources


def _train_epochs(run: Round) -> None:
    """Epochs ``run.start_epoch`` to the last: train, score on validation, keep the best, save ``last.pt``."""
    config, round_index, tc, out, model = run.config, run.index, run.tc, run.out, run.model
    sources, optimizer, scheduler, mos, history = run.sources, run.optimizer, run.scheduler, run.mos, run.history
    last = out / "last.pt"
    for epoch in range(run.start_epoch, tc.epochs):
        kept = (f"the last good checkpoint is {last} (epoch {epoch})" if epoch > 0 and last.is_file()
                else "no epoch had finished, nothing was saved")
        try:
            stats = train_one_epoch(sources["train"], run.trainer, optimizer, run.loss_fn, tc, epoch)
        except TrainingDiverged as exc:
            raise TrainingDiverged(f"{exc}; {kept}") from None
        scheduler.step()
        t0 = time.perf_counter()
        val_pred = predict_images(sources["val"])
        bad = _not_finite(val_pred)
        if bad is not None:  # a model that scores NaN has diverged even where the loss has not shown it
            raise TrainingDiverged(
                f"the validation predictions became {bad} at epoch {epoch + 1} ({int((~np.isfinite(val_pred)).sum())} "
                f"of {len(val_pred)} images); lower train.trunk_lr or set train.grad_clip, then rerun with "
                f"--force; {kept}")
        val = metrics.evaluate_scores(val_pred, mos["val"])  # the part holds >= MIN_SCORED_IMAGES (_start_round)
        row = {"epoch": epoch + 1, **stats, "val_srcc": val["srcc"], "val_plcc": val["plcc"],
               "val_seconds": time.perf_counter() - t0,
               **{f"lr_{g.get('name', i)}": g["lr"] for i, g in enumerate(optimizer.param_groups)}}
        history.append(row)
        score = val["srcc"] if np.isfinite(val["srcc"]) else -math.inf
        if score > run.best["val_srcc"]:
            run.best = {"epoch": epoch, "val_srcc": score, "state": _cpu_state(model)}
        if not distributed.is_main():  # every rank holds the same state; rank 0 writes it
            continue
        save_checkpoint(last, {
            "model_name": config.model.name, "config": config.to_dict(), "round": round_index, "epoch": epoch,
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "rng": _rng_state(), "history": history,
            "best_epoch": run.best["epoch"], "best_val_srcc": run.best["val_srcc"], "best_model": run.best["state"],
            "card": epoch_card(run.card, epoch, tc.epochs, selected=False),
        })
        atomic_write_text(out / "history.csv", pd.DataFrame(history).to_csv(index=False))
        if tc.progress:
            print(f"[{config.name} r{round_index}] epoch {epoch + 1}/{tc.epochs} "
                  f"loss {stats['train_loss']:.4f} val SRCC {val['srcc']:.4f} "
                  f"PLCC {val['plcc']:.4f} ({stats['patches_per_s']:.0f} patches/s, "
                  f"loader wait {100 * stats['loader_wait_fraction']:.1f}%)", flush=True)


def _finish_round(run: Round, data: Data, started: float) -> dict:
    """Load the selected epoch, save ``best.pt``, score the test split once, write the round's files."""
    config, round_index, tc, out, model, best = run.config, run.index, run.tc, run.out, run.model, run.best
    sources, parts, mos, history, device, card = run.sources, run.parts, run.mos, run.history, run.device, run.card
    if best["state"] is None:
        raise TrainingDiverged("no epoch produced a finite validation SRCC; check the data and learning rate")
    model.load_state_dict(best["state"])
    if distributed.is_main():
        save_checkpoint(out / "best.pt", {"model_name": config.model.name, "config": config.to_dict(),
                                          "round": round_index, "model": best["state"], "epoch": best["epoch"],
                                          "card": epoch_card(card, best["epoch"], tc.epochs, selected=True,
                                                             val_srcc=best["val_srcc"])})
    test_pred = predict_images(sources["test"])
    bad = _not_finite(test_pred)
    if bad is not None:
        raise TrainingDiverged(
            f"the selected model (epoch {best['epoch'] + 1}) predicts {bad} for {int((~np.isfinite(test_pred)).sum())} "
            f"of {len(test_pred)} test images; lower train.trunk_lr or set train.grad_clip, then rerun with --force; "
            f"its weights are in {out / 'best.pt'}")
    test = metrics.evaluate_scores(test_pred, mos["test"])
    if distributed.is_main():
        atomic_write_text(out / "predictions.csv", pd.DataFrame({
            "image": parts["test"].frame["image"], "mos": mos["test"], "pred": test_pred,
        }).to_csv(index=False))
    result = {
        "name": config.name, "round": round_index, "model": config.model.name,
        "data": data.table.label, "synthetic": data.table.synthetic,
        "split_sizes": {k: len(v) for k, v in parts.items()},
        "best_epoch": best["epoch"] + 1, "val_srcc": best["val_srcc"],
        "test": test, "train_seconds": time.perf_counter() - started,
        "train_config": dataclasses.asdict(tc), "config": config.to_dict(), "code": provenance.code_identity(),
        "precision": precision_record(device, tc.precision),  # what precision: auto chose, and why
        "history": history,
    }
    if distributed.is_main():
        atomic_write_json(out / "results.json", result)
    distributed.barrier()  # the other ranks return once the round's files exist
    return result


def _finished_round(out: Path, epochs: int) -> dict | None:
    """A round's results.json when it trained ``epochs`` epochs and its best.pt exists, else None."""
    try:
        stored = read_result_json(out / "results.json")  # an undefined metric (null) is NaN
    except (OSError, ValueError):
        return None
    if not isinstance(stored, dict) or len(stored.get("history") or []) != epochs or not (out / "best.pt").is_file():
        return None
    return stored


def fit(config, *, resume: bool = False, force: bool = False) -> dict:
    """Run every round of ``config``; returns per-round results and their summary.

    ``config`` is a :class:`RunConfig`, a dict or a YAML path. Writes
    ``summary.json`` next to the round folders. Under ``torchrun`` the ranks
    train every round together (see :mod:`iqalib.engine.distributed`).
    A folder that already holds a run is refused unless ``resume`` (continue
    it) or ``force`` (delete its files first) is given.
    """
    config = as_config(config)
    with holding_run(config, resume=resume, force=force):
        return write_summary(config, fit_rounds(config, range(config.train.rounds), resume=resume))


def fit_rounds(config, round_indices, *, resume: bool = False) -> list[dict]:
    """Train the rounds ``round_indices`` of ``config`` (images decoded once); writes no summary.

    :func:`iqalib.engine.parallel.fit_parallel` runs subsets of the rounds in
    separate processes this way (having checked the folder, and holding its
    lock for them) and writes the summary once all are done.
    """
    config = as_config(config)
    with holding_run(config, check=False):
        return _fit_rounds(config, round_indices, resume=resume)


def _fit_rounds(config: RunConfig, round_indices, *, resume: bool) -> list[dict]:
    if config.train.batch_size is not None:
        distributed.per_rank_train_config(config.train)  # a batch that cannot be split fails before decoding
    distributed.init_from_env(resolve_device(config.train.device))
    # An unknown model name or option fails here, before minutes of image decoding.
    unknown = sorted(set(config.model.options) - set(model_options(config.model.name)))
    if unknown:
        hints = "".join(did_you_mean(o, model_options(config.model.name)) for o in unknown)
        raise ConfigError(f"model.options {unknown} are not options of {config.model.name!r}{hints}; "
                          f"valid: {sorted(model_options(config.model.name))}")
    check_model_options(config.model.name, config.model.options)  # the rule a checkpoint's options meet
    data = prepare_data(config)
    bank = None
    if config.train.freeze_backbone:
        # One trunk pass over every image serves all rounds (their splits differ,
        # the crops and the frozen trunk do not).
        device = resolve_device(config.train.device)
        seed_everything(config.train.seed)
        model = make_model(config, device)
        with distributed.local_main_first():  # one trunk pass fills the disk cache, the others read it
            bank = feature_bank(model, data, resolved_train(config, model), device=device)
        del model
    return [fit_round(config, data, r, resume=resume, bank=bank) for r in round_indices]


def write_summary(config: RunConfig, rounds: list[dict]) -> dict:
    """Summarise the rounds' test metrics into ``summary.json`` (rank 0); returns it with the rounds."""
    table = pd.DataFrame([{"round": r["round"], **r["test"]} for r in rounds])
    summary = metrics.summarize_rounds(table.drop(columns=["round"]))
    out = {
        "name": config.name, "model": config.model.name, "data": rounds[0]["data"],
        "rounds": len(rounds), "test_per_round": table.to_dict(orient="records"),
        "summary": summary.reset_index().to_dict(orient="records"),
        "median_test_srcc": float(np.median(table["srcc"])),
        "median_test_plcc": float(np.median(table["plcc"])),
        "config": config.to_dict(), "code": provenance.code_identity(),
    }
    if distributed.is_main():
        atomic_write_json(config.run_dir / "summary.json", out)
    distributed.barrier()
    return {**out, "round_results": rounds}

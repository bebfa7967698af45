"""The run folder: which files are a run's, and whether a run may train into it.

One module decides, for every caller, what happens to ``out_dir/name/``:

- **iqalib train** and :func:`iqalib.engine.fit.fit` (:func:`holding_run`,
  :func:`prepare_run_folder`): a fresh run needs a folder without a run in it
  (else :class:`RunExists`); ``resume`` continues one whose configuration
  differs at most in :data:`RESUME_MAY_CHANGE` (and more epochs or rounds,
  :data:`RESUME_MAY_GROW`); ``force`` deletes the earlier run's files first.
- **the book** (:func:`claim_for_book`, behind
  :func:`iqalib.experiments.run_or_load`): a run whose fingerprint
  (:func:`iqalib.engine.provenance.fingerprint`: configuration, code on the
  training path, data) matches the folder's finished run is read back; an
  interrupted one with the same fingerprint resumes; anything else is cleared
  and trained again, with one printed line saying why.
- **both**: the folder's lock (:mod:`iqalib.engine.runlock`) is held
  throughout, and temporary files that a killed process left are deleted.

:data:`RUN_FILES` and :data:`ROUND_FILES` are every file the engine (and the
book's stamp, :data:`STAMP`) writes in a run folder; :func:`clear_run`
removes only those (``--force``), so a folder never mixes two runs and never
loses a file the user put there.
"""
from __future__ import annotations

import contextlib
import json
import re
from pathlib import Path

import torch

from iqalib.config import RunConfig, from_dict
from iqalib.engine import distributed, provenance
from iqalib.engine.interrupt import report_interrupt, saved_epochs
from iqalib.engine.runlock import run_lock
from iqalib.errors import ConfigError, IQAError
from iqalib.files import atomic_write_json, output_error
from iqalib.models import create_model

# Every file a run writes: the folder's own, then each round_<r>/'s. config_fingerprint.json is
# the book's stamp (the fingerprint, configuration, code and data it trained the folder with).
STAMP = "config_fingerprint.json"
RUN_FILES = ("summary.json", STAMP)
ROUND_FILES = ("last.pt", "best.pt", "history.csv", "predictions.csv", "results.json")
_ROUND_DIR = re.compile(r"round_\d+")


class RunExists(IQAError):
    """The run folder already holds a run, and neither resume nor force was asked for."""


# ------------------------------------------------------------ the files of a run
def round_dirs(run_dir: str | Path) -> list[Path]:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and _ROUND_DIR.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name.split("_")[1]))


def run_files(run_dir: str | Path) -> list[Path]:
    """The files of a run in ``run_dir`` (summary, stamp, every round's files), in that order."""
    run_dir = Path(run_dir)
    found = [run_dir / name for name in RUN_FILES if (run_dir / name).is_file()]
    for folder in round_dirs(run_dir):
        found += [folder / name for name in ROUND_FILES if (folder / name).is_file()]
    return found


def _temporaries(folder: Path, names) -> list[Path]:
    """Left-over temporary files of an atomic write of ``names`` (see :mod:`iqalib.files`)."""
    found = []
    for name in names:
        found += [p for p in folder.glob(f".{glob_escape(name)}.*.tmp") if p.is_file()]
    return found


def glob_escape(name: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", name)


def remove_temporaries(run_dir: str | Path) -> list[Path]:
    """Delete what an atomic write killed by SIGKILL (or a power cut) left behind; under the lock."""
    run_dir = Path(run_dir)
    stale = _temporaries(run_dir, RUN_FILES) if run_dir.is_dir() else []
    for folder in round_dirs(run_dir):
        stale += _temporaries(folder, ROUND_FILES)
    for path in stale:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return stale


def clear_run(run_dir: str | Path) -> list[Path]:
    """Remove every file a run wrote in ``run_dir`` (and round folders left empty); returns them.

    Files the engine did not write stay, and so does a round folder holding them.
    """
    run_dir = Path(run_dir)
    removed = run_files(run_dir)
    for path in removed:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise output_error(path, exc) from exc
    remove_temporaries(run_dir)
    for folder in round_dirs(run_dir):
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
    return removed


# ------------------------------------------------------------ train into it (fit, iqalib train)
# What ``resume`` accepts changed from the configuration that started the run: where the folder
# is, where and how fast it runs, what it prints; and more epochs (except under the cosine
# schedule, whose length they are) or more rounds. Anything else changes the results.
RESUME_MAY_CHANGE = ("name", "out_dir", "data.image_cache", "train.device", "train.workers", "train.progress")
RESUME_MAY_GROW = ("train.epochs", "train.rounds")
RESUME_RULE = ("--resume may change only train.epochs and train.rounds (to more; epochs not under the cosine "
               "schedule), train.device, train.workers, train.progress, data.image_cache, name and out_dir")
_MISSING = object()


def flatten_config(data: dict, prefix: str = "") -> dict:
    """``{"train": {"epochs": 3}}`` -> ``{"train.epochs": 3}`` (options nest further)."""
    out = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            out.update(flatten_config(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _short(value) -> str:
    text = "(absent)" if value is _MISSING else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _model_train_defaults(config: RunConfig) -> dict:
    """The model's own training defaults (what ``None`` in the train section means)."""
    model = create_model(config.model.name, pretrained=False, **config.model.options)
    return model.default_train_config()


def resume_conflicts(config: RunConfig, stored: dict) -> list[str]:
    """``"key (old -> new)"`` for every difference from ``stored`` that ``--resume`` refuses.

    A train value of ``None`` is the model's default and compares as that
    value; a key the stored configuration lacks (added to iqalib since)
    compares as its default.
    """
    new, old = flatten_config(config.to_dict()), flatten_config(stored)
    baseline = flatten_config(RunConfig().to_dict())
    defaults = None
    problems = []
    for key in sorted(set(new) | set(old)):
        before, after = old.get(key, baseline.get(key, _MISSING)), new.get(key, _MISSING)
        if before == after or key in RESUME_MAY_CHANGE:
            continue
        was, now = before, after
        if key.startswith("train.") and (was is None or now is None):
            defaults = _model_train_defaults(config) if defaults is None else defaults
            name = key.split(".", 1)[1]
            was = defaults.get(name) if was is None else was
            now = defaults.get(name) if now is None else now
            if was == now:
                continue
        if key in RESUME_MAY_GROW and isinstance(was, int) and isinstance(now, int) and now > was:
            schedule = config.train.schedule
            if schedule is None:
                defaults = _model_train_defaults(config) if defaults is None else defaults
                schedule = defaults.get("schedule")
            if key == "train.epochs" and schedule == "cosine":
                problems.append(f"train.epochs ({was} -> {now}: the length of the cosine schedule the "
                                "trained epochs followed)")
            continue
        problems.append(f"{key} ({_short(was)} -> {_short(now)})")
    return problems


def stored_configs(run_dir: Path) -> dict[str, dict]:
    """``{round folder: the configuration that wrote it}`` from results.json, else last.pt."""
    found = {}
    for folder in round_dirs(run_dir):
        config = None
        try:
            config = json.loads((folder / "results.json").read_text()).get("config")
        except (OSError, ValueError, AttributeError):
            pass
        if config is None and (folder / "last.pt").is_file():
            try:
                config = torch.load(folder / "last.pt", map_location="cpu", weights_only=True, mmap=True).get("config")
            except Exception:  # unreadable: resuming it says why (engine.checkpoint.resume_state)
                config = None
        if isinstance(config, dict):
            found[folder.name] = config
    return found


def _describe_run(run_dir: Path, files: list[Path]) -> str:
    if (run_dir / "summary.json").is_file():
        return f"a finished run ({len(round_dirs(run_dir))} round folder(s) and summary.json)"
    saved = saved_epochs(run_dir)
    if saved:
        return "an unfinished run (" + ", ".join(f"{k}/last.pt holds epoch {e}" for k, e in saved.items()) + ")"
    return "files of another run (" + ", ".join(str(p.relative_to(run_dir)) for p in files[:3]) + ")"


def prepare_run_folder(config: RunConfig, *, resume: bool = False, force: bool = False) -> None:
    """Check the run folder before training (hold its lock): a fresh run needs a folder without a
    run in it, ``resume`` one whose configuration it may continue; ``force`` deletes the earlier
    run's files (:func:`clear_run`). Also deletes temporary files that a
    killed process left."""
    run_dir = config.run_dir
    if resume and force:
        raise ConfigError("give --resume or --force, not both: --resume continues the run in "
                          f"{run_dir}, --force deletes its files and starts afresh")
    if distributed.is_main():
        remove_temporaries(run_dir)
    if force:
        if distributed.is_main():
            clear_run(run_dir)
        return
    files = [p for p in run_files(run_dir) if p.name != STAMP]  # the book's stamp alone is no run
    if resume:
        if not any(p.name in ("last.pt", "results.json") for p in files):
            raise ConfigError(f"nothing to resume in {run_dir}: no round has a last.pt; check name= and "
                              "out_dir=, or start the run without --resume")
        problems = []
        for stored in stored_configs(run_dir).values():
            problems += [p for p in resume_conflicts(config, stored) if p not in problems]
        if problems:
            raise ConfigError(f"cannot resume {run_dir}: its configuration differs in {', '.join(problems)}; "
                              "resume with the values it was started with, or start afresh with --force "
                              f"(deletes its files) or another name= ({RESUME_RULE})")
        return
    if files:
        raise RunExists(f"{run_dir} already holds {_describe_run(run_dir, files)}; continue it with --resume, "
                        "start it afresh with --force (deletes its files), or choose another name=")


@contextlib.contextmanager
def holding_run(config: RunConfig, *, resume: bool = False, force: bool = False, check: bool = True):
    """The block trains into ``config.run_dir``: its lock held, the folder checked
    (:func:`prepare_run_folder`, unless ``check`` is False), and Ctrl-C, SIGTERM and SIGHUP
    reported as :class:`~iqalib.engine.interrupt.TrainingInterrupted` saying what is saved."""
    with report_interrupt(config.run_dir), run_lock(config.run_dir):
        if check:
            prepare_run_folder(config, resume=resume, force=force)
        yield


# ------------------------------------------------------------ reuse or retrain (the book)
def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _recorded_fingerprint(record: dict, data: dict) -> str | None:
    """The fingerprint of the run a summary.json (or stamp) records, on ``data``; None when it records no code."""
    if not isinstance(record.get("config"), dict) or not isinstance(record.get("code"), dict):
        return None
    try:
        return provenance.fingerprint(from_dict(record["config"]), code=record["code"], data=data)
    except ConfigError:  # written under other validation rules: not this configuration
        return None


def _rerun_reason(config: RunConfig, record: dict, data: dict, force: bool) -> str:
    """Why the run in the folder (described by its summary or stamp, ``record``) is not reused."""
    if force:
        return "force=True"
    if isinstance(record.get("config"), dict):
        old = flatten_config(provenance.results_part(record["config"]))
        new = flatten_config(provenance.results_part(config))
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
            return f"its configuration changed ({', '.join(changed[:5])}{more})"
    code, now = record.get("code"), provenance.code_identity()
    if code != now:
        was = (f"iqalib {code.get('version')}, sources {code.get('sources')}" if isinstance(code, dict)
               else "code that did not record itself")
        return f"it was made by other code ({was}; now iqalib {now['version']}, sources {now['sources']})"
    if record.get("data") != data:
        was = record.get("data")
        was = (f"table {was.get('table')}, files {was.get('files')}" if isinstance(was, dict)
               else "data it did not record")
        return f"its data changed ({was}; now table {data['table']}, files {data['files']})"
    return "its files belong to another run"


def claim_for_book(config: RunConfig, force: bool = False) -> tuple[bool, bool]:
    """``(finished already, resume)`` for the book's run of ``config``; call it under the folder's lock.

    Finished: ``summary.json`` exists, the stamp holds this fingerprint, and
    the summary's configuration and code are this run's (a later
    ``iqalib train --resume`` with more epochs is not). When the run must
    train, the folder is cleared of an earlier run's files (:func:`clear_run`,
    what ``--force`` does), with one printed line saying why, and stamped with
    the fingerprint, configuration, code and data.
    """
    run_dir = config.run_dir
    data, key, summary, stamp, finished = _folder_state(config)
    if not force and finished:
        return True, False
    files = [p for p in run_files(run_dir) if p.name != STAMP]
    resume = (not force and not summary and stamp.get("fingerprint") == key
              and any(p.name == "last.pt" for p in files))
    if files and not resume:
        record = {**summary, "data": stamp.get("data")} if summary else stamp  # the stamp alone knows the data
        reason = _rerun_reason(config, record, data, force)
        print(f"rerunning {config.name!r} in {run_dir}: {reason}; its earlier files are deleted", flush=True)
        clear_run(run_dir)
    atomic_write_json(run_dir / STAMP, {"fingerprint": key, "config": config.to_dict(),
                                        "code": provenance.code_identity(), "data": data})
    return False, resume


def finished_here(config: RunConfig) -> bool:
    """Whether ``config``'s folder holds this exact run, finished (the book's reuse test, without
    its side effects: nothing is cleared or stamped)."""
    return _folder_state(config)[-1]


def _folder_state(config: RunConfig) -> tuple[dict, str, dict, dict, bool]:
    """``(data identity, fingerprint, summary, stamp, finished)`` of ``config``'s folder. Finished:
    ``summary.json`` exists, the stamp holds this fingerprint, and the summary records this run."""
    data = provenance.data_identity(config)
    key = provenance.fingerprint(config, data=data)
    summary = _read_json(config.run_dir / "summary.json")
    stamp = _read_json(config.run_dir / STAMP)
    finished = bool(summary) and stamp.get("fingerprint") == key and _recorded_fingerprint(summary, data) == key
    return data, key, summary, stamp, finished


@contextlib.contextmanager
def book_run(config: RunConfig, *, force: bool = False):
    """Hold ``config``'s run folder and yield :func:`claim_for_book`'s ``(finished, resume)``."""
    with run_lock(config.run_dir):
        yield claim_for_book(config, force)

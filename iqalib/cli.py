"""The ``iqalib`` command line.

``iqalib train | evaluate | score | models | datasets | download | import-weights | bench | book``.
User errors print one line (``error: ...``) and exit with status 2; ``--debug``
shows the traceback instead. Ctrl-C prints one line (``interrupted: ...``,
for ``train`` with what is saved and the command that resumes) and exits 130.

Exit statuses: 0 done; 1 done in part (``score``: some images could not be
scored, each listed with its reason); 2 a problem the user can fix (bad input,
a full or read-only disk, out of memory), one ``error:`` line; 3 a bug in
iqalib (an exception no check anticipated), one line that says so and asks for
``--debug``; 128 + the signal number when stopped (130 Ctrl-C, 143 SIGTERM); 141 the
reader of the output went away (``| head``).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from iqalib.errors import ConfigError, IQAError
from iqalib.files import json_text
from iqalib.paths import printable


def _train(args) -> int:
    from iqalib.config import load_config  # lazy: keeps iqalib --help fast
    from iqalib.engine import distributed, fit  # lazy: keeps iqalib --help fast
    from iqalib.engine.parallel import fit_parallel, parse_devices  # lazy: keeps iqalib --help fast

    from iqalib.engine.interrupt import TrainingInterrupted  # lazy: keeps iqalib --help fast

    overrides = list(args.overrides)
    if args.config and "=" in args.config and not Path(args.config).is_file():
        args.config, overrides = None, [args.config, *overrides]  # `iqalib train key=value ...`: no file
    if args.config is None and not overrides:  # a bare `iqalib train` would start a long default run
        args.parser.print_usage(sys.stderr)
        print(f"error: give a run configuration (YAML) or key=value settings, e.g.\n{TRAIN_EXAMPLES}",
              file=sys.stderr)
        return 2
    devices = parse_devices(args.devices, args.jobs)
    config = load_config(args.config, overrides)
    try:
        if devices:  # rounds in parallel worker processes, one per device
            result = fit_parallel(config, devices, resume=args.resume, force=args.force)
        else:  # one process, or one rank of torchrun
            result = fit(config, resume=args.resume, force=args.force)
    except TrainingInterrupted as exc:  # Ctrl-C, SIGTERM, SIGHUP: exit status 128 + the signal
        if args.debug:
            raise
        if distributed.is_main():
            print(f"interrupted: {exc}{_resume_hint(args, exc)}", file=sys.stderr)
        return 128 + exc.signum
    if not distributed.is_main():
        return 0
    print(json_text({k: result[k] for k in ("name", "model", "data", "rounds",
                                            "median_test_srcc", "median_test_plcc")}))  # strict: NaN is null
    print(f"results: {config.run_dir}/summary.json")
    return 0


TRAIN_EXAMPLES = """\
  iqalib train params/runs/smoke.yaml                   # a tiny run on the synthetic demo set
  iqalib train data.name=csv data.root=photos train.freeze_backbone=true train.epochs=4
                                                        # your ratings: photos/scores.csv (image,mos)"""


def _evaluate(args) -> int:
    from iqalib.engine.score import evaluate_split  # lazy: keeps iqalib --help fast

    scores = evaluate_split(args.checkpoint, split=args.split, dataset=args.dataset, root=args.root)
    print(json_text(scores))  # strict JSON: an undefined metric is null
    return 0


def _score(args) -> int:
    from iqalib.data.preprocess import check_preprocess, set_preprocess  # lazy: keeps iqalib --help fast
    from iqalib.engine.card import check_score_card, score_card, write_score_card  # lazy: keeps iqalib --help fast
    from iqalib.engine.ready import describe, ready_checkpoint  # lazy: keeps iqalib --help fast
    # lazy: keeps iqalib --help fast
    from iqalib.engine.score import (check_scores_output, default_crops, expand_inputs, load_trained, score_paths,
                                     scores_csv, write_scores)

    check_preprocess(args.preprocess, short_side=args.short_side)
    checkpoint = args.checkpoint or ready_checkpoint()  # none given: iqalib's ready model
    paths, carried = expand_inputs(args.paths)  # carried: a CSV of paths' other columns (its mos)
    # Before any work: --out must not be an input (an image, the checkpoint, a CSV) or a foreign file.
    out = check_scores_output(args.out, [*args.paths, *paths], checkpoint=checkpoint) if args.out else None
    if out:
        check_score_card(out)  # the card beside the table: absent, or one iqalib wrote
    model = set_preprocess(load_trained(checkpoint), args.preprocess)
    patches = default_crops(model) if args.patches is None else args.patches
    table = score_paths(model, paths, patches=patches, short_side=args.short_side,
                        batch_size=args.batch_size)
    if out:
        write_scores(out, table, carried)  # atomic: a failed write keeps the previous table
        print(f"wrote {len(table)} scores to {printable(out)}")
        card = write_score_card(out, score_card(
            checkpoint, model, patches=patches, short_side=args.short_side,
            n_images=len(table), n_failed=int((table["error"] != "").sum())))
        print(f"wrote the model card and scoring settings to {printable(card)}")
    else:
        sys.stdout.write(scores_csv(table, carried))
    # Last, so that an error (a refused flag, a failed write) stays the one line on stderr.
    print(f"scored by {describe(model.card, printable(checkpoint))}; {patches} crops per image", file=sys.stderr)
    n_failed = int((table["error"] != "").sum())
    if n_failed:
        print(f"{n_failed} of {len(table)} image(s) could not be scored (see above)", file=sys.stderr)
        return 1
    return 0


def _models(args) -> int:
    from iqalib.models import complexity_table, list_models  # lazy: keeps iqalib --help fast

    if args.card:
        from iqalib.engine.card import card_text, read_card  # lazy: keeps iqalib --help fast

        print(card_text(read_card(args.card)))
    elif args.complexity:
        print(complexity_table().to_string())
    else:
        print("\n".join(list_models()))
    return 0


def _import_weights(args) -> int:
    from iqalib.engine.card import import_weights  # lazy: keeps iqalib --help fast

    card = import_weights(args.format, args.file, args.out, model_name=args.model)
    print(f"imported {args.file} ({args.format}, sha256 {card['source']['sha256'][:16]}...) as {card['model']} "
          f"into {args.out}; see its card with: iqalib models --card {args.out}")
    return 0


def _datasets(args) -> int:
    from iqalib.data.datasets import DATASETS  # lazy: keeps iqalib --help fast

    names = [args.name] if args.name else sorted(DATASETS)
    for name in names:
        if name not in DATASETS:
            raise IQAError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
        info = DATASETS[name]
        print(f"{name}: {info.title}\n  scores: {info.scores}\n  split: {info.split}")
        print("  " + info.layout.replace("\n", "\n  "))
        if info.citation:
            print(f"  cite: {info.citation}")
        print()
    return 0


def _download(args) -> int:
    from iqalib.data.download import download_dataset  # lazy: keeps iqalib --help fast
    from iqalib.data.sources import list_downloadable  # lazy: keeps iqalib --help fast

    if args.list or not args.name:
        for name, text in list_downloadable().items():
            print(f"{name}: {text}")
        return 0
    if not 0 < args.timeout < float("inf"):  # 0 would make every read fail, NaN and inf never end
        raise ConfigError(f"--timeout {args.timeout:g} must be a positive number of seconds, e.g. 60")
    # A progress bar only where someone watches: in a log it is noise around the one error line.
    path = download_dataset(args.name, Path(args.root), base_url=args.base_url,
                            which=args.which, sha256=args.sha256, progress=sys.stderr.isatty(),
                            timeout=args.timeout)
    print(f"{args.name} ready at {path}")
    return 0


BENCHMARKS = ("patch_pipeline", "loader_wait", "train_step", "head_training", "scoring", "score_memory",
              "precision")


def _bench(args) -> int:
    """Each benchmark in its own process: clean memory and thread state, its own argv."""
    import subprocess  # lazy: keeps iqalib --help fast

    from iqalib.errors import did_you_mean  # lazy: keeps iqalib --help fast
    from iqalib.paths import cut, safe_part  # lazy: keeps iqalib --help fast

    here = Path(__file__).resolve().parents[1] / "benchmarks"
    names = args.only or [n for n in BENCHMARKS if (here / f"{n}.py").is_file()]
    for name in names:  # a name, never a path: only the scripts in benchmarks/ run
        safe_part(name, "--only")
    available = sorted(p.stem for p in here.glob("*.py") if p.stem != "common")
    missing = [n for n in names if n not in available]
    if missing:
        raise ConfigError(f"no benchmark(s) {cut(missing, 160)} in {here}{did_you_mean(missing[0], available)}; "
                          f"choose from {available}")
    failed = []
    for name in names:
        print(f"== {name}", flush=True)
        if subprocess.run([sys.executable, str(here / f"{name}.py")], cwd=here.parent).returncode:
            failed.append(name)
    if failed:
        raise IQAError(f"benchmark(s) {failed} failed (see their output above); the others wrote "
                       f"their JSON to {here / 'results'}")
    return 0


def _book(args) -> int:
    from iqalib.book import run_book  # lazy: keeps iqalib --help fast

    index = run_book(args.profile, notebooks=args.only, build=not args.no_build)
    if index is not None:
        print(f"open {index}")
    return 0


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` shows each default that is a value (not None or a switch's False), unless the help
    text already states it."""

    def _get_help_string(self, action):
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _add_data_commands(sub) -> None:
    """``iqalib datasets`` and ``iqalib download``."""
    p = sub.add_parser("datasets", help="supported data sets and their layouts on disk")
    p.add_argument("name", nargs="?", help="one data set, e.g. csv (default: all of them)")
    p.set_defaults(func=_datasets)

    p = sub.add_parser("download", help="fetch a data set's official archives")
    p.add_argument("name", nargs="?", help="the data set (default: list what can be downloaded)")
    p.add_argument("--root", default="data", help="the folder that receives the data set's folder")
    p.add_argument("--base-url", help="mirror replacing the official host")
    p.add_argument("--which", nargs="*", help="only these archives (default: all of the data set's)")
    p.add_argument("--sha256", help="expected checksum of the archive")
    p.add_argument("--timeout", type=float, default=60, metavar="SECONDS",
                   help="how long to wait for the server to send data before giving up (the partial file is kept)")
    p.add_argument("--list", action="store_true", help="list the data sets that can be downloaded")
    p.set_defaults(func=_download)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="iqalib", description="Blind image quality assessment: "
                                 "HyperIQA and SMART-IQA", formatter_class=_HelpFormatter)
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_SubParser)

    p = sub.add_parser("train", help="train (all rounds) from a YAML config or key=value settings",
                       epilog=f"examples:\n{TRAIN_EXAMPLES}")
    p.add_argument("config", nargs="?", help="YAML run configuration (see params/runs/); optional when "
                   "key=value settings follow")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue from each round's last.pt (may change only "
                   "train.epochs/rounds to more, device, workers, progress, data.image_cache)")
    p.add_argument("--force", action="store_true", help="the run folder holds an earlier run: delete its "
                   "files (rounds, checkpoints, summary) and train afresh")
    p.add_argument("--devices", help="run the rounds in parallel, one process per device: GPU indices "
                   "or 'cpu', comma-separated (e.g. 0,1,2,3)")
    p.add_argument("--jobs", type=int, help="run the rounds in N parallel CPU processes (--devices cpu,...)")
    p.set_defaults(func=_train, parser=p)

    p = sub.add_parser("evaluate", help="score a checkpoint on a data set split")
    p.add_argument("checkpoint", help="a best.pt of iqalib train (its data set and split are in it)")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"),
                   help="which part of the checkpoint's split to score ('all': every image)")
    p.add_argument("--dataset", help="another data set (a cross-data-set test; see iqalib datasets; "
                   "default: the checkpoint's own)")
    p.add_argument("--root", help="the folder of --dataset (default: $IQALIB_DATA/<its folder>, see "
                   "iqalib datasets); without --dataset, the checkpoint's own data.root is used")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("score", help="rate your own images")
    p.add_argument("paths", nargs="+", help="image files, folders or a CSV of paths (column image; its other "
                   "columns, such as mos, follow image,score,error in the table)")
    p.add_argument("--checkpoint", help="a best.pt of iqalib train or import-weights (default: iqalib's ready "
                   "model, smart_iqa_lite0 trained on LIVE-C's 627 JPEGs; MOS 0-100, higher is better)")
    p.add_argument("--patches", type=int, default=None,
                   help="test crops per image (at most 1024; default: as many as the model was validated with, "
                   "25 when its card does not say)")
    p.add_argument("--short-side", type=int, default=None, help="resize before cropping (at most 8000)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="crops per forward pass (at most 1024); memory grows with it")
    p.add_argument("--out", help="write scores to this CSV (a new file, or a table iqalib wrote before), "
                   "and the model card and settings to OUT.card.json")
    p.add_argument("--preprocess", default="iqalib", choices=("iqalib", "original_hyperiqa"),
                   help="iqalib: keep the aspect ratio, seeded crops (default); original_hyperiqa: resize to "
                   "512 high x 384 wide and take random crops, as the original HyperIQA code does")
    p.set_defaults(func=_score)

    p = sub.add_parser("models", help="list models")
    p.add_argument("--complexity", action="store_true", help="parameters and FLOPs per 224x224 patch")
    p.add_argument("--card", metavar="CHECKPOINT", help="print the model card of an iqalib checkpoint")
    p.set_defaults(func=_models)

    p = sub.add_parser("import-weights", help="convert official HyperIQA / SMART-IQA weights into an iqalib checkpoint")
    p.add_argument("format", choices=("hyperiqa", "smart_iqa"),
                   help="hyperiqa: the original release (koniq_pretrained.pkl); smart_iqa: the seed's checkpoints")
    p.add_argument("file", help="the official state dict (.pkl/.pth), loaded with weights_only=True")
    p.add_argument("--out", required=True, help="the iqalib checkpoint to write (must not exist)")
    p.add_argument("--model", help="smart_iqa_tiny|small|base (default: detected from the shapes)")
    p.set_defaults(func=_import_weights)

    _add_data_commands(sub)

    p = sub.add_parser("bench", help="run the benchmarks (JSON into benchmarks/results)")
    p.add_argument("--only", nargs="*", help="benchmark names, e.g. patch_pipeline (gpu_step: on a GPU box)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("book", help="execute the notebooks with a profile and build the HTML book")
    p.add_argument("--profile", default="default", help="params/<profile>.yaml (default, smoke, demo, livec, "
                   "koniq); default: %(default)s")
    p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="only these notebooks, e.g. 01_data")
    p.add_argument("--no-build", action="store_true", help="execute only; skip jupyter-book build")
    p.set_defaults(func=_book)
    return ap


class _SubParser(argparse.ArgumentParser):
    """Each subcommand's parser: defaults in --help (see :class:`_HelpFormatter`)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IQAError as exc:
        if args.debug:
            raise
        print(f"error: {printable(exc)}", file=sys.stderr)  # a name that is not UTF-8: its bytes as \xHH
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, exit status 130 (128 + SIGINT)
        if args.debug:
            raise
        print(f"interrupted: {str(exc) or 'stopped by Ctrl-C'}{_resume_hint(args)}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `iqalib score ... | head`: the reader has what it wanted
        _discard_stdout()
        return 141
    except OSError as exc:  # a disk or file problem that no check turned into an IQAError
        if args.debug:
            raise
        print(f"error: {printable(_os_failure(exc))}", file=sys.stderr)
        return 2
    except MemoryError:
        if args.debug:
            raise
        print("error: out of memory; use smaller settings (--batch-size, --patches, --short-side, "
              "train.batch_size) or free memory (rerun with --debug for the traceback)", file=sys.stderr)
        return 2
    except Exception as exc:  # no check anticipated this: a bug, said so in one line
        if args.debug:
            raise
        summary = " ".join(printable(exc).split())[:200]
        print(f"error: this is a bug in iqalib ({type(exc).__name__}{': ' + summary if summary else ''}); "
              "rerun with --debug for the traceback and report it", file=sys.stderr)
        return 3


def _os_failure(exc: OSError) -> str:
    """One line for an OSError that reached the top: the path, the reason, what to do."""
    import errno  # lazy: keeps iqalib --help fast

    where = f"{exc.filename}: " if exc.filename else ""
    reason = exc.strerror or " ".join(str(exc).split())[:200] or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        fix = "free space on that disk (or write elsewhere) and rerun"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "check the permissions of that path, or choose another"
    else:
        fix = "check that path"
    return f"{where}{reason}; {fix} (rerun with --debug for the traceback)"


def _discard_stdout() -> None:
    """Point stdout at /dev/null so that the exit's flush does not fail a second time."""
    import os  # lazy: keeps iqalib --help fast

    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (captured in tests)
        pass


def _resume_hint(args, exc=None) -> str:
    """The command that continues an interrupted ``iqalib train`` (see iqalib.engine.interrupt);
    the one that starts it again when no epoch was saved (``exc.saved`` False)."""
    if args.command != "train":
        return ""
    import shlex  # lazy: keeps iqalib --help fast

    command = ["iqalib", "train", *([args.config] if args.config else []), *args.overrides]
    command += [*(["--devices", args.devices] if args.devices else []), *(["--jobs", str(args.jobs)] if args.jobs else [])]
    if exc is not None and not getattr(exc, "saved", True):
        return f"; start it again with: {shlex.join(command)}"
    return f"; resume with: {shlex.join([*command, '--resume'])}"


if __name__ == "__main__":
    sys.exit(main())

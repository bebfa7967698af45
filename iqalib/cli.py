"""The ``iqalib`` command line.

``iqalib train | evaluate | score | models | datasets | download | bench | book``.
User errors print one line (``error: ...``) and exit with status 2; ``--debug``
shows the traceback instead. Ctrl-C prints one line (``interrupted: ...``,
for ``train`` with what is saved and the command that resumes) and exits 130.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iqalib.errors import ConfigError, IQAError


def _train(args) -> int:
    from iqalib.config import load_config
    from iqalib.engine import distributed, fit
    from iqalib.engine.parallel import fit_parallel, parse_devices

    devices = parse_devices(args.devices, args.jobs)
    config = load_config(args.config, args.overrides)
    if devices:  # rounds in parallel worker processes, one per device
        result = fit_parallel(config, devices, resume=args.resume)
    else:  # one process, or one rank of torchrun
        result = fit(config, resume=args.resume)
    if not distributed.is_main():
        return 0
    print(json.dumps({k: result[k] for k in ("name", "model", "data", "rounds",
                                              "median_test_srcc", "median_test_plcc")}, indent=2))
    print(f"results: {config.run_dir}/summary.json")
    return 0


def _evaluate(args) -> int:
    from iqalib.engine.score import evaluate_split

    scores = evaluate_split(args.checkpoint, split=args.split, dataset=args.dataset, root=args.root)
    print(json.dumps(scores, indent=2))
    return 0


def _score(args) -> int:
    from iqalib.engine.score import expand_paths, load_trained, score_paths

    model = load_trained(args.checkpoint)
    paths = expand_paths(args.paths)
    table = score_paths(model, paths, patches=args.patches, short_side=args.short_side)
    if args.out:
        table.to_csv(args.out, index=False)
        print(f"wrote {len(table)} scores to {args.out}")
    else:
        table.to_csv(sys.stdout, index=False)
    n_failed = int((table["error"] != "").sum())
    if n_failed:
        print(f"{n_failed} of {len(table)} image(s) could not be scored (see above)", file=sys.stderr)
        return 1
    return 0


def _models(args) -> int:
    from iqalib.models import complexity_table, list_models

    if args.complexity:
        print(complexity_table().to_string())
    else:
        print("\n".join(list_models()))
    return 0


def _datasets(args) -> int:
    from iqalib.data.datasets import DATASETS

    names = [args.name] if args.name else sorted(DATASETS)
    for name in names:
        if name not in DATASETS:
            raise IQAError(f"unknown data set {name!r}; choose one of {sorted(DATASETS)}")
        info = DATASETS[name]
        print(f"{name}: {info.title}\n  split: {info.split}")
        print("  " + info.layout.replace("\n", "\n  "))
        if info.citation:
            print(f"  cite: {info.citation}")
        print()
    return 0


def _download(args) -> int:
    from iqalib.data.download import download_dataset, list_downloadable

    if args.list or not args.name:
        for name, text in list_downloadable().items():
            print(f"{name}: {text}")
        return 0
    path = download_dataset(args.name, Path(args.root), base_url=args.base_url,
                            which=args.which, sha256=args.sha256)
    print(f"{args.name} ready at {path}")
    return 0


BENCHMARKS = ("patch_pipeline", "loader_wait", "train_step", "head_training", "scoring", "score_memory")


def _bench(args) -> int:
    """Each benchmark in its own process: clean memory and thread state, its own argv."""
    import subprocess

    here = Path(__file__).resolve().parents[1] / "benchmarks"
    names = args.only or [n for n in BENCHMARKS if (here / f"{n}.py").is_file()]
    missing = [n for n in names if not (here / f"{n}.py").is_file()]
    if missing:
        available = sorted(p.stem for p in here.glob("*.py") if p.stem != "common")
        raise ConfigError(f"no benchmark(s) {missing} in {here}; choose from {available}")
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
    from iqalib.book import run_book

    index = run_book(args.profile, notebooks=args.only, build=not args.no_build)
    if index is not None:
        print(f"open {index}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="iqalib", description="Blind image quality assessment: "
                                 "HyperIQA and SMART-IQA")
    ap.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train (all rounds) from a YAML config")
    p.add_argument("config", nargs="?", help="YAML run configuration (see params/)")
    p.add_argument("overrides", nargs="*", help="section.key=value overrides")
    p.add_argument("--resume", action="store_true", help="continue from each round's last.pt")
    p.add_argument("--devices", help="run the rounds in parallel, one process per device: GPU indices "
                   "or 'cpu', comma-separated (e.g. 0,1,2,3)")
    p.add_argument("--jobs", type=int, help="run the rounds in N parallel CPU processes (--devices cpu,...)")
    p.set_defaults(func=_train)

    p = sub.add_parser("evaluate", help="score a checkpoint on a data set split")
    p.add_argument("checkpoint")
    p.add_argument("--split", default="test", choices=("train", "val", "test", "all"))
    p.add_argument("--dataset", help="another data set (cross-data-set test)")
    p.add_argument("--root", help="its root folder")
    p.set_defaults(func=_evaluate)

    p = sub.add_parser("score", help="rate your own images")
    p.add_argument("paths", nargs="+", help="image files, folders or a CSV of paths")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--patches", type=int, default=25)
    p.add_argument("--short-side", type=int, default=None, help="resize before cropping")
    p.add_argument("--out", help="write scores to this CSV")
    p.set_defaults(func=_score)

    p = sub.add_parser("models", help="list models")
    p.add_argument("--complexity", action="store_true", help="parameters and FLOPs per 224x224 patch")
    p.set_defaults(func=_models)

    p = sub.add_parser("datasets", help="supported data sets and their layouts on disk")
    p.add_argument("name", nargs="?")
    p.set_defaults(func=_datasets)

    p = sub.add_parser("download", help="fetch a data set's official archives")
    p.add_argument("name", nargs="?")
    p.add_argument("--root", default="data")
    p.add_argument("--base-url", help="mirror replacing the official host")
    p.add_argument("--which", nargs="*", help="only these archives")
    p.add_argument("--sha256", help="expected checksum of the archive")
    p.add_argument("--list", action="store_true")
    p.set_defaults(func=_download)

    p = sub.add_parser("bench", help="run the benchmarks (JSON into benchmarks/results)")
    p.add_argument("--only", nargs="*", help="benchmark names, e.g. patch_pipeline (gpu_step: on a GPU box)")
    p.set_defaults(func=_bench)

    p = sub.add_parser("book", help="execute the notebooks with a profile and build the HTML book")
    p.add_argument("--profile", default="demo", help="params/<profile>.yaml (smoke, demo, livec, koniq)")
    p.add_argument("--only", nargs="+", metavar="NOTEBOOK", help="only these notebooks, e.g. 01_data")
    p.add_argument("--no-build", action="store_true", help="execute only; skip jupyter-book build")
    p.set_defaults(func=_book)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except IQAError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C: one line, exit status 130 (128 + SIGINT)
        if args.debug:
            raise
        print(f"interrupted: {str(exc) or 'stopped by Ctrl-C'}{_resume_hint(args)}", file=sys.stderr)
        return 130


def _resume_hint(args) -> str:
    """The command that continues an interrupted ``iqalib train`` (see iqalib.engine.interrupt)."""
    if args.command != "train":
        return ""
    import shlex

    command = ["iqalib", "train", *([args.config] if args.config else []), *args.overrides, "--resume"]
    return f"; resume with: {shlex.join(command)}"


if __name__ == "__main__":
    sys.exit(main())

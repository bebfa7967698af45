"""The runner behind ``make book``: execute every chapter with papermill, then build the HTML book.

For each notebook in :data:`NOTEBOOKS`, ``notebooks/<stem>.py`` (the jupytext
pair, so an unsynced ``.ipynb`` cannot slip in) is executed by papermill with
the parameters ``{**common, **<stem>}`` of ``params/<profile>.yaml`` into
``book/executed/<stem>.ipynb``; then ``jupyter-book build`` renders
``_toc.yml`` with warnings as errors into ``book/_build/html``.

``book/executed/PROFILE`` names the profile of the notebooks there. A run of
the whole book empties the folder first, and a run of some notebooks empties
it when the profile changed, so a book never mixes profiles or shows stale
outputs. A failing cell stops everything with one line naming the notebook
and the cell; the book is then not built, and the failed run is kept as
``book/executed/<stem>.failed.ipynb`` (never under the chapter's own name), so
a later build refuses the incomplete folder instead of publishing it.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from iqalib.errors import ConfigError, IQAError

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("01_data", "02_baseline", "03_smart_iqa", "04_ablations", "05_attention",
             "06_cross_dataset", "07_lr_sensitivity", "08_model_size", "09_summary",
             "10_performance")
EXECUTED = Path("book") / "executed"
MARKER = "PROFILE"


class NotebookFailed(IQAError):
    """A cell of a notebook raised; the message names the notebook and the cell."""


class BookBuildFailed(IQAError):
    """``jupyter-book build`` failed (a warning counts, as in CI)."""


def load_profile(profile: str, root: str | Path = ROOT) -> dict[str, dict]:
    """Papermill parameters per notebook stem: ``{**common, **section}`` of ``params/<profile>.yaml``."""
    path = Path(root) / "params" / f"{profile}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (Path(root) / "params").glob("*.yaml"))
        raise ConfigError(f"no book profile {profile!r} ({path} is missing); choose one of {choices}")
    data = yaml.safe_load(path.read_text()) or {}
    common = data.get("common") or {}
    unknown = sorted(set(data) - {"common", *NOTEBOOKS})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; sections are 'common' and {list(NOTEBOOKS)}")
    return {stem: {**common, **(data.get(stem) or {})} for stem in NOTEBOOKS}


def _kernel_dir() -> Path:
    """A Jupyter data folder whose ``python3`` kernel is this interpreter (the project's venv).

    Put first on ``JUPYTER_PATH``, it wins over any user-wide ``python3``
    kernel that would run another Python without iqalib. The kernel also
    imports the very ``iqalib`` package that runs the book, whatever its
    working directory.
    """
    folder = Path(tempfile.mkdtemp(prefix="iqalib-kernel-"))
    spec = folder / "kernels" / "python3"
    spec.mkdir(parents=True)
    package_parent = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3", "language": "python", "env": {"PYTHONPATH": python_path},
    }))
    return folder


def execute_notebook(stem: str, parameters: dict, *, root: str | Path = ROOT,
                     output: str | Path | None = None) -> Path:
    """Execute ``notebooks/<stem>.py`` with ``parameters`` (working directory: ``root``).

    Returns the executed notebook's path; raises :class:`NotebookFailed` with
    the notebook, the cell and the error on one line.
    """
    import jupytext
    import papermill
    from papermill.exceptions import PapermillExecutionError

    root = Path(root)
    source = root / "notebooks" / f"{stem}.py"
    if not source.is_file():
        raise ConfigError(f"notebook {source} is missing")
    output = Path(output) if output else root / EXECUTED / f"{stem}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    kernels = _kernel_dir()
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(kernels), previous]))
    try:
        papermill.execute_notebook(jupytext.read(source), str(output), parameters=parameters,
                                   kernel_name="python3", language="python", cwd=str(root),
                                   progress_bar=False)
    except PapermillExecutionError as exc:
        evalue = " ".join(str(exc.evalue).split())[:300]
        # Papermill has written the failed run to ``output``: move it aside, so that the
        # executed folder never holds a failed chapter under its real name, and a
        # later build refuses to publish a book that lacks it.
        failed = output.with_name(f"{output.stem}.failed.ipynb")
        if output.is_file():
            os.replace(output, failed)
        raise NotebookFailed(f"notebook {stem} failed in cell {exc.cell_index} (In [{exc.exec_count}]): "
                             f"{exc.ename}: {evalue} (failed copy: {failed}); fix it and rerun") from None
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous
        shutil.rmtree(kernels, ignore_errors=True)
    output.with_name(f"{output.stem}.failed.ipynb").unlink(missing_ok=True)  # an older failure is fixed
    return output


def build_html(root: str | Path = ROOT) -> Path:
    """``jupyter-book build`` with warnings as errors; returns ``book/_build/html/index.html``."""
    root = Path(root)
    missing = [s for s in NOTEBOOKS if not (root / EXECUTED / f"{s}.ipynb").is_file()]
    if missing:
        raise BookBuildFailed(f"{root / EXECUTED} lacks {missing}; execute the whole book first "
                              "(iqalib book --profile P)")
    executable = Path(sys.executable).parent / "jupyter-book"
    command = [str(executable) if executable.is_file() else "jupyter-book", "build", str(root),
               "--path-output", str(root / "book"), "--warningiserror", "--keep-going", "--quiet"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True)
    if done.returncode != 0:
        text = re.sub(r"\x1b\[[0-9;]*m", "", done.stderr + done.stdout)  # no terminal colours
        lines = [line for line in text.splitlines() if "WARNING" in line or "ERROR" in line or "rror" in line]
        raise BookBuildFailed(f"jupyter-book build failed: {(lines or ['see its output'])[0][:300]}")
    return root / "book" / "_build" / "html" / "index.html"


def run_book(profile: str = "demo", notebooks=None, build: bool = True, *, root: str | Path = ROOT,
             log=print) -> Path | None:
    """Execute the book's notebooks under ``profile`` and (``build``) build the HTML book.

    ``notebooks``: stems to execute (default: all, in order); a stem whose
    ``.py`` does not exist yet is skipped with a note when listed explicitly,
    and is an error for the whole book. Returns the book's ``index.html``
    (or None without ``build``).
    """
    root = Path(root)
    parameters = load_profile(profile, root)
    executed = root / EXECUTED
    marker = executed / MARKER
    if notebooks:
        unknown = [s for s in notebooks if s not in NOTEBOOKS]
        if unknown:
            raise ConfigError(f"unknown notebook(s) {unknown}; choose from {list(NOTEBOOKS)}")
        stems = [s for s in NOTEBOOKS if s in notebooks]
        absent = [s for s in stems if not (root / "notebooks" / f"{s}.py").is_file()]
        for stem in absent:
            log(f"skipping {stem}: notebooks/{stem}.py does not exist yet")
        stems = [s for s in stems if s not in absent]
        stale = marker.is_file() and marker.read_text().strip() != profile
    else:
        stems = list(NOTEBOOKS)
        absent = [s for s in stems if not (root / "notebooks" / f"{s}.py").is_file()]
        if absent:
            raise ConfigError(f"notebook(s) {[f'notebooks/{s}.py' for s in absent]} missing; "
                              "the whole book needs every chapter (or pass --only)")
        stale = True
    if stale and executed.exists():
        shutil.rmtree(executed)
    executed.mkdir(parents=True, exist_ok=True)
    marker.write_text(profile + "\n")
    for stem in stems:
        started = time.perf_counter()
        execute_notebook(stem, parameters[stem], root=root)
        log(f"executed {stem} ({profile}) in {time.perf_counter() - started:.0f} s")
    if not build:
        return None
    index = build_html(root)
    log(f"book: {index}")
    return index

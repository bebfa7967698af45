"""The runner behind ``make book``: execute every chapter with papermill, then build the HTML book.

For each notebook in :data:`NOTEBOOKS` (executed in :data:`EXECUTION_ORDER`),
``notebooks/<stem>.py`` (the jupytext
pair, so an unsynced ``.ipynb`` cannot slip in) is executed by papermill with
the parameters ``{**common, **<stem>}`` of ``params/<profile>.yaml``
(:func:`load_profile`; the training recipe, ``recipe``, merged key by key) into
``book/executed/<stem>.ipynb``; then ``jupyter-book build`` renders
``_toc.yml`` with warnings as errors into ``book/_build/html``.

``book/executed/PROFILE`` names the profile of the notebooks there. A run of
the whole book empties the folder first, and a run of some notebooks empties
it when the profile changed, so a book never mixes profiles or shows stale
outputs. A failing cell stops everything with one line naming the notebook
and the cell; the book is then not built, and the failed run is kept as
``book/executed/<stem>.failed.ipynb`` (never under the chapter's own name), so
a later build refuses the incomplete folder instead of publishing it. A chapter
runs as ``<stem>.running.ipynb`` and takes its own name only once complete, so a
run killed midway (SIGKILL, a power cut) leaves no chapter that looks done.

What a page shows: each chapter's kernel starts with
:func:`iqalib.book_style.apply` (rounded table numbers, plain progress bars)
and talks to papermill over local IPC sockets (no TCP warning on the
terminal); the executed copy shows one parameters block, the values the
chapter ran with (:func:`show_parameters_once`). The terminal shows one line
per chapter.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from iqalib.config import TrainConfig, read_yaml
from iqalib.errors import ConfigError, IQAError, OutputError, did_you_mean
from iqalib.files import atomic_write_text
from iqalib.paths import cut, safe_part, shown

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ("01_data", "02_inside_the_model", "03_baseline", "04_smart_iqa", "05_ablations",
             "06_losses", "07_attention", "08_cross_dataset", "09_lr_sensitivity", "10_model_size",
             "11_summary", "12_performance")
# The order chapters are executed in: the reading order, except that the chapter that opens the
# model (02) reads the models chapters 3 and 4 train, so it runs after them and a first build
# already shows their trained heads.
EXECUTION_ORDER = ("01_data", "03_baseline", "04_smart_iqa", "02_inside_the_model", *NOTEBOOKS[4:])
EXECUTED = Path("book") / "executed"
MARKER = "PROFILE"
# The training recipe: the parameter that carries it, and the keys it may hold. The training
# chapters pass it as ``**recipe`` next to the edition's data, seed and device (common
# parameters of every chapter, so not recipe keys) and their own ``progress``.
RECIPE = "recipe"
RECIPE_KEYS = tuple(sorted({f.name for f in dataclasses.fields(TrainConfig)} - {"seed", "device", "progress"}
                           | {"pretrained"}))


class NotebookFailed(IQAError):
    """A cell of a notebook raised; the message names the notebook and the cell."""


class BookBuildFailed(IQAError):
    """``jupyter-book build`` failed (a warning counts, as in CI)."""


PARAMETERS_CELL = re.compile(r"""^# %%(?!\s*\[).*\btags=\[[^\]]*["']parameters["']""")


def notebook_parameters(stem: str, root: str | Path = ROOT) -> set[str] | None:
    """Names assigned in the parameters cell of ``notebooks/<stem>.py``; None when there is no such file.

    Read from the jupytext percent source with :mod:`ast` (no notebook
    machinery), so that a profile is checked in milliseconds before any
    notebook runs.
    """
    source = Path(root) / "notebooks" / f"{stem}.py"
    if not source.is_file():
        return None
    lines, inside = [], False
    for line in source.read_text(encoding="utf-8").splitlines():
        if line.startswith("# %%"):
            if inside:
                break
            inside = bool(PARAMETERS_CELL.match(line))
        elif inside:
            lines.append(line)
    try:
        tree = ast.parse("\n".join(lines))
    except SyntaxError as exc:
        raise ConfigError(f"{source}: its parameters cell is not valid Python ({exc.msg}, line {exc.lineno} of "
                          "the cell); fix the notebook") from None
    names = set()
    for node in tree.body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, ast.AnnAssign) else []
        names.update(n.id for target in targets for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def load_profile(profile: str, root: str | Path = ROOT) -> dict[str, dict]:
    """Papermill parameters per notebook stem: ``{**common, **section}`` of ``params/<profile>.yaml``.

    The training recipe is stated once, as ``common``'s ``recipe:`` block
    (keys of :data:`RECIPE_KEYS`); a chapter that varies it sets only those
    keys in its own ``recipe:``, merged over common's key by key. The merged
    ``recipe`` reaches the notebooks that declare a ``recipe`` parameter (the
    training chapters), not the others.

    Refused with one line, before any notebook runs: a profile name that is
    not a plain name (``../x``), a file that is not valid YAML, is over 256 KiB
    or repeats a key (:func:`iqalib.config.read_yaml`), a profile that is not
    a mapping of sections each mapping parameter names to values, an unknown
    section, a ``recipe`` that is not a mapping or holds a key that is not a
    training key, and a parameter that the notebook's parameters cell does not
    declare (papermill would only warn and run the notebook with its default).
    """
    root = Path(root)
    safe_part(profile, "--profile")
    path = root / "params" / f"{profile}.yaml"
    if not path.is_file():
        choices = sorted(p.stem for p in (root / "params").glob("*.yaml"))
        raise ConfigError(f"no book profile {shown(profile)} ({cut(path, 240)} is missing); choose one of {choices}")
    data = read_yaml(path, "book profile")
    if data is None:
        data = {}
    shape = "a mapping of sections ('common' and one per notebook), each a mapping of parameter: value"
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a book profile is {shape}; this one is a {type(data).__name__}")
    unknown = sorted(set(data) - {"common", *NOTEBOOKS}, key=str)
    if unknown:
        hint = did_you_mean(unknown[0], ("common", *NOTEBOOKS)) or \
            f"; sections are 'common' and the notebooks {cut(', '.join(NOTEBOOKS), 120)}"
        raise ConfigError(f"{path}: unknown section(s) {cut(unknown, 160)}{hint}")
    sections, recipes = {}, {}
    for name in ("common", *NOTEBOOKS):
        section = {} if data.get(name) is None else data[name]
        if not isinstance(section, dict):
            raise ConfigError(f"{path}: section '{name}' must map parameter names to values, not be a "
                              f"{type(section).__name__}; a book profile is {shape}")
        bad = [k for k in section if not (isinstance(k, str) and k.isidentifier())]
        if bad:
            raise ConfigError(f"{path}: {shown(bad[0])} in section '{name}' is not a parameter name (a Python name)")
        sections[name] = section
        recipes[name] = _recipe(path, name, section.get(RECIPE))
    declared = {stem: notebook_parameters(stem, root) for stem in NOTEBOOKS}
    for stem in NOTEBOOKS:
        if declared[stem] is None:
            continue  # not written yet: run_book skips it with a note, or refuses the whole book
        for name in (stem, "common"):
            # common's recipe goes only to the chapters that declare one
            unknown = sorted(set(sections[name]) - declared[stem] - ({RECIPE} if name == "common" else set()))
            if unknown and unknown[0] in RECIPE_KEYS and RECIPE in declared[stem]:
                raise ConfigError(f"{path}: {shown(unknown[0])} in section '{name}' is a training key: set it "
                                  f"in the section's {RECIPE}: block ({RECIPE}: {{{unknown[0]}: ...}})")
            if unknown:
                hint = did_you_mean(unknown[0], declared[stem]) or \
                    f"; its parameters: {cut(', '.join(sorted(declared[stem])), 100)}"
                raise ConfigError(f"{path}: {shown(unknown[0])} in section '{name}' is not a parameter of "
                                  f"notebooks/{stem}.py{hint} (papermill would run the notebook without it)")
    parameters = {}
    for stem in NOTEBOOKS:
        chapter = {**sections["common"], **sections[stem]}
        chapter.pop(RECIPE, None)
        takes_recipe = RECIPE in sections[stem] or RECIPE in (declared[stem] or ())
        if takes_recipe and (RECIPE in sections["common"] or RECIPE in sections[stem]):
            chapter[RECIPE] = {**recipes["common"], **recipes[stem]}
        parameters[stem] = chapter
    return parameters


def _recipe(path: Path, section: str, recipe) -> dict:
    """The ``recipe:`` block of ``section`` (None: no keys), or a one-line error naming the key at fault."""
    if recipe is None:
        return {}
    if not isinstance(recipe, dict):
        raise ConfigError(f"{path}: '{RECIPE}' in section '{section}' must map training keys to values "
                          f"(such as epochs: 8), not be a {type(recipe).__name__}")
    unknown = [key for key in recipe if key not in RECIPE_KEYS]
    if unknown:
        hint = did_you_mean(unknown[0], RECIPE_KEYS) or f"; recipe keys: {cut(', '.join(RECIPE_KEYS), 200)}"
        raise ConfigError(f"{path}: {shown(unknown[0])} in the recipe of section '{section}' is not a "
                          f"training key{hint}")
    return recipe


def _check_writable(folder: Path, what: str) -> None:
    """Create ``folder`` (with its parents) and a file in it, or a one-line :class:`OutputError`."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        handle, probe = tempfile.mkstemp(dir=folder, prefix=".iqalib-write-test-")
        os.close(handle)
        os.unlink(probe)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise OutputError(f"{what} {cut(folder, 240)} cannot be written ({reason}); make it a writable "
                          "folder or choose another") from None


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
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                 # Every chapter shows numbers and progress the same way (iqalib.book_style).
                 f"--IPKernelApp.exec_lines={KERNEL_SETUP}"],
        "display_name": "Python 3", "language": "python", "env": {"PYTHONPATH": python_path},
    }))
    return folder


KERNEL_SETUP = "__import__('iqalib.book_style').book_style.apply()"
KERNEL_START_SECONDS = 600  # a kernel's start-up on a loaded machine (papermill's default is 60)
LINE_WIDTH = 90  # characters of a code line that fit the book's page


def _quiet_shutdown_kernel_manager():
    """jupyter_client's kernel manager, except that shutting a kernel down does not interrupt it first.

    jupyter_client sends SIGINT before every shutdown request (to stop a running
    cell); a chapter's kernel is idle by then, and ipykernel reports the
    interrupt as an ``ERROR | KeyboardInterrupt caught in kernel`` line on the
    terminal of ``make book``. A kernel that does not stop is still terminated,
    then killed, after ``shutdown_wait_time``.
    """
    from jupyter_client.manager import AsyncKernelManager  # lazy: only the book's runs need it

    class QuietShutdownKernelManager(AsyncKernelManager):
        async def _async_interrupt_kernel(self) -> None:
            if getattr(self, "shutting_down", False):
                return
            await super()._async_interrupt_kernel()

    return QuietShutdownKernelManager


def _kernel_config(kernels: Path):
    """The kernel manager's settings: IPC sockets in ``kernels`` (a private folder), not TCP.

    Over TCP every kernel warns on the terminal that its traffic is not
    encrypted; local sockets in a folder only this user can read are both
    private and quiet. Windows has no IPC transport: TCP stays there.
    """
    from traitlets.config import Config  # lazy: only the book's runs need it

    config = Config()
    config.NotebookClient.kernel_manager_class = _quiet_shutdown_kernel_manager()
    if os.name != "nt":
        config.KernelManager.transport = "ipc"
        config.KernelManager.ip = str(kernels / "kernel")  # sockets kernel-1 .. kernel-5
    return config


def execute_notebook(stem: str, parameters: dict, *, root: str | Path = ROOT,
                     output: str | Path | None = None) -> Path:
    """Execute ``notebooks/<stem>.py`` with ``parameters`` (working directory: ``root``).

    Returns the executed notebook's path; raises :class:`NotebookFailed` with
    the notebook, the cell and the error on one line.
    """
    import jupytext  # lazy: only the book's runs need it
    import papermill  # lazy: only the book's runs need it
    from papermill.exceptions import PapermillExecutionError  # lazy: only the book's runs need it

    root = Path(root)
    source = root / "notebooks" / f"{stem}.py"
    if not source.is_file():
        raise ConfigError(f"notebook {source} is missing")
    output = Path(output) if output else root / EXECUTED / f"{stem}.ipynb"
    output.parent.mkdir(parents=True, exist_ok=True)
    # Papermill writes as it goes: under a temporary name, renamed only when complete, so that a
    # run killed mid-chapter never leaves a half-executed notebook under the chapter's own name.
    running = output.with_name(f"{output.stem}.running.ipynb")
    output.unlink(missing_ok=True)  # the chapter is being redone: until it is, it is not there
    kernels = _kernel_dir()
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join(filter(None, [str(kernels), previous]))
    try:
        papermill.execute_notebook(jupytext.read(source), str(running), parameters=parameters,
                                   kernel_name="python3", language="python", cwd=str(root),
                                   progress_bar=False, start_timeout=KERNEL_START_SECONDS,
                                   config=_kernel_config(kernels))
    except PapermillExecutionError as exc:
        evalue = " ".join(str(exc.evalue).split())[:300]
        # Papermill has written the failed run: keep it aside, so that the executed folder
        # never holds a failed chapter under its real name, and a later build refuses to
        # publish a book that lacks it.
        failed = output.with_name(f"{output.stem}.failed.ipynb")
        if running.is_file():
            os.replace(running, failed)
        raise NotebookFailed(f"notebook {stem} failed in cell {exc.cell_index} (In [{exc.exec_count}]): "
                             f"{exc.ename}: {evalue} (failed copy: {failed}); fix it and rerun") from None
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous
        shutil.rmtree(kernels, ignore_errors=True)
    show_parameters_once(running, parameters.get("profile"))
    os.replace(running, output)  # complete: now, and only now, the chapter's own name
    output.with_name(f"{output.stem}.failed.ipynb").unlink(missing_ok=True)  # an older failure is fixed
    return output


def show_parameters_once(path: str | Path, profile: str | None = None) -> None:
    """One parameters block on the page: the values the executed notebook ``path`` ran with.

    Papermill leaves the notebook's default parameters cell and adds its
    injected cell after it, so a page would list the parameters twice, with
    different values. Here the injected cell becomes the merged list (each
    default replaced by the injected value, the defaults' comments kept, long
    lists wrapped at :data:`LINE_WIDTH`), under a caption naming the profile,
    and the defaults cell is tagged ``remove-cell`` (kept in the notebook,
    not shown by Jupyter Book). Executing the merged cell alone gives the same
    values as the two cells did.
    """
    import nbformat  # lazy: only the book's runs need it

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    tagged = {tag: [c for c in nb.cells if tag in c.metadata.get("tags", [])]
              for tag in ("parameters", "injected-parameters")}
    if len(tagged["parameters"]) != 1 or len(tagged["injected-parameters"]) != 1:
        return  # nothing injected (no parameters given) or not a papermill notebook: as it is
    defaults, injected = tagged["parameters"][0], tagged["injected-parameters"][0]
    source = f"params/{profile}.yaml" if profile else "the injected values"
    caption = f"# Parameters of this edition: {source}, else the notebook's defaults"
    injected.source = "\n".join([caption, *merged_parameters(defaults.source, injected.source)])
    defaults.metadata["tags"] = [*defaults.metadata.get("tags", []), "remove-cell"]
    atomic_write_text(path, nbformat.writes(nb))


def merged_parameters(defaults: str, injected: str) -> list[str]:
    """Lines of ``defaults`` (a parameters cell) with every assignment that ``injected`` makes replaced.

    Comments and blank lines of ``defaults`` stay where they are; a replaced
    line keeps its default's trailing comment when it still fits; names only
    ``injected`` assigns come last.
    """
    values = {}
    injected_lines = injected.splitlines()
    for node in ast.parse(injected).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            values[node.targets[0].id] = node
    lines = defaults.splitlines()
    out, cursor, used = [], 0, set()
    for node in ast.parse(defaults).body:
        out += lines[cursor:node.lineno - 1]  # comments and blank lines before the statement
        cursor = node.end_lineno
        targets = node.targets if isinstance(node, ast.Assign) else []
        name = targets[0].id if len(targets) == 1 and isinstance(targets[0], ast.Name) else None
        if name not in values:
            out += lines[node.lineno - 1:node.end_lineno]
            continue
        used.add(name)
        replaced = _wrapped(values[name], injected_lines)
        comment = lines[node.end_lineno - 1][node.end_col_offset:].strip()
        if comment.startswith("#") and len(replaced[-1]) + 2 + len(comment) <= LINE_WIDTH:
            replaced[-1] += f"  {comment}"
        elif comment.startswith("#"):
            replaced.insert(0, comment)
        out += replaced
    out += lines[cursor:]
    for name, node in values.items():
        if name not in used:
            out += _wrapped(node, injected_lines)
    return out


def _wrapped(node: ast.Assign, lines: list[str]) -> list[str]:
    """The assignment ``node`` of ``lines``; a list, tuple or dict literal wider than the page is wrapped."""
    text = "\n".join(lines[node.lineno - 1:node.end_lineno])
    value = node.value
    if len(text) <= LINE_WIDTH or not isinstance(value, (ast.List, ast.Tuple, ast.Dict)):
        return text.splitlines()
    segment = functools.partial(ast.get_source_segment, "\n".join(lines))
    if isinstance(value, ast.Dict):
        items = [f"{segment(k)}: {segment(v)}" for k, v in zip(value.keys, value.values)]
        opening, closing = "{", "}"
    else:
        items = [segment(element) for element in value.elts]
        opening, closing = ("[", "]") if isinstance(value, ast.List) else ("(", ")")
    head = f"{node.targets[0].id} = {opening}"
    indent = " " * len(head)
    out, line = [], head
    for i, item in enumerate(items):
        piece = item + (", " if i < len(items) - 1 else closing)
        if line not in (head, indent) and len(line + piece.rstrip()) > LINE_WIDTH:
            out.append(line.rstrip())
            line = indent
        line += piece
    return [*out, line]


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


def run_book(profile: str = "default", notebooks=None, build: bool = True, *, root: str | Path = ROOT,
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
        for stem in notebooks:
            safe_part(stem, "--only")
        unknown = [s for s in notebooks if s not in NOTEBOOKS]
        if unknown:
            raise ConfigError(f"unknown notebook(s) {cut(unknown, 160)}{did_you_mean(unknown[0], NOTEBOOKS)}; "
                              f"choose from {list(NOTEBOOKS)}")
        stems = [s for s in EXECUTION_ORDER if s in notebooks]
        absent = [s for s in stems if not (root / "notebooks" / f"{s}.py").is_file()]
        for stem in absent:
            log(f"skipping {stem}: notebooks/{stem}.py does not exist yet")
        stems = [s for s in stems if s not in absent]
        stale = marker.is_file() and marker.read_text().strip() != profile
    else:
        stems = list(EXECUTION_ORDER)
        absent = [s for s in stems if not (root / "notebooks" / f"{s}.py").is_file()]
        if absent:
            raise ConfigError(f"notebook(s) {[f'notebooks/{s}.py' for s in absent]} missing; "
                              "the whole book needs every chapter (or pass --only)")
        stale = True
    # Every output folder is writable, checked before anything is deleted or any notebook runs.
    _check_writable(executed, "the folder of executed notebooks")
    for stem in stems:
        out_dir = parameters[stem].get("out_dir")
        if isinstance(out_dir, str):
            _check_writable(root / out_dir, f"out_dir of params/{profile}.yaml ({stem}):")
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
    # The caller says where the book is (``iqalib book`` prints "open PATH"): one line, not two.
    return build_html(root)

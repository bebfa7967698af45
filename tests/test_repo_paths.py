"""A fresh clone has every file the README and the book name, and .gitignore hides none of the sources.

The paths are read from README.md, book/*.md, _toc.yml and the notebooks'
markdown cells: every ``iqalib/...``, ``params/...``, ``notebooks/...``,
``book/...``, ``tests/...``, ``benchmarks/...`` or ``.ci/...`` path and the
top-level files (Makefile, pyproject.toml...) must be tracked by git
(``git ls-files``), so that what the documentation tells a newcomer to run
exists after ``git clone``. Generated folders (``book/_build``,
``book/executed``) and placeholders (``params/<profile>.yaml``,
``notebooks/NN_*.py``) are not files of the repository and are left out.
Both tests skip outside a git checkout (an unpacked source archive).
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import jupytext
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
TRACKED_FOLDERS = ("iqalib", "params", "notebooks", "book", "tests", "benchmarks", ".ci")
TOP_LEVEL_FILES = ("Makefile", "pyproject.toml", "_toc.yml", "_config.yml", "environment.yml",
                   "jupytext.toml", "README.md", ".gitignore")
GENERATED = ("book/_build", "book/executed")
# A path starts after a space, quote, backtick or bracket (not inside ../shared/... or a URL) and
# ends before whitespace, a quote, a backtick or closing punctuation.
PATH = re.compile(r"(?<![\w./~-])((?:%s)/[^\s`'\"(),;:\]|]*|(?:%s)(?![\w.]))"
                  % ("|".join(map(re.escape, TRACKED_FOLDERS)), "|".join(map(re.escape, TOP_LEVEL_FILES))))
PLACEHOLDER = re.compile(r"[*<>{}\[\]$]|\bNN_|/NN\b|PROFILE|\.\.\.")


def git(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def git_checkout():
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    top = git("rev-parse", "--show-toplevel")
    if top.returncode != 0 or Path(top.stdout.strip()).resolve() != ROOT:
        pytest.skip("not a git checkout of the project (e.g. an unpacked source archive)")


def paths_in_text(text: str) -> set[str]:
    """Repository paths named in ``text`` (placeholders and generated folders left out)."""
    found = set()
    for match in PATH.finditer(text):
        path = match.group(1).rstrip(".")
        if PLACEHOLDER.search(path) or path.startswith(GENERATED):
            continue
        found.add(path)
    return found


def toc_files(toc: dict) -> set[str]:
    """The source file of every ``file:`` entry of ``_toc.yml`` (executed chapters: their notebook)."""
    entries, stack = set(), [toc]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            for key, value in node.items():
                if key in ("file", "root") and isinstance(value, str):
                    entries.add(value)
                else:
                    stack.append(value)
        elif isinstance(node, list):
            stack.extend(node)
    files = set()
    for entry in entries:
        if entry.startswith("book/executed/"):
            files.add(f"notebooks/{Path(entry).name}.py")
        else:
            files.add(entry if Path(entry).suffix else f"{entry}.md")
    return files


def named_paths() -> set[tuple[str, str]]:
    """(where it is named, path) for every repository path the README and the book name."""
    named = {("README.md", p) for p in paths_in_text((ROOT / "README.md").read_text())}
    for page in sorted((ROOT / "book").glob("*.md")):
        named |= {(f"book/{page.name}", p) for p in paths_in_text(page.read_text())}
    named |= {("_toc.yml", p) for p in toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))}
    for notebook in sorted((ROOT / "notebooks").glob("*.py")):
        markdown = "\n".join(c.source for c in jupytext.read(notebook).cells if c.cell_type == "markdown")
        named |= {(f"notebooks/{notebook.name}", p) for p in paths_in_text(markdown)}
    return named


def test_paths_in_text_reads_files_folders_and_skips_placeholders():
    text = ("Run `iqalib train params/runs/livec.yaml data.root=/x`, see params/livec.yaml). "
            "The notebooks/NN_*.py pairs, params/<profile>.yaml, book/_build/html/index.html, "
            "../shared/datasets/LIVEC and runs/book/demo are not files; benchmarks/results/ and "
            "the Makefile are.")
    assert paths_in_text(text) == {"params/runs/livec.yaml", "params/livec.yaml", "benchmarks/results/",
                                   "Makefile"}


def test_every_path_the_readme_and_the_book_name_is_tracked(git_checkout):
    tracked = set(git("ls-files", "-z").stdout.split("\0")) - {""}
    folders = {str(parent) for path in tracked for parent in Path(path).parents}
    named = named_paths()
    assert "params/runs/livec.yaml" in {p for _, p in named}  # the README's quick start runs it
    missing = sorted(f"{p} (named in {where})" for where, p in named
                     if p.rstrip("/") not in tracked and p.rstrip("/") not in folders)
    assert missing == [], f"named but not tracked by git (git add them): {missing}"


def test_every_book_page_is_in_the_table_of_contents():
    # _config.yml builds only the pages _toc.yml lists (only_build_toc_files): a page left out
    # would vanish from the published book without a warning.
    listed = toc_files(yaml.safe_load((ROOT / "_toc.yml").read_text()))
    pages = {f"book/{page.name}" for page in (ROOT / "book").glob("*.md")}
    assert sorted(pages - listed) == []


@pytest.mark.parametrize("config", [pytest.param(c, marks=pytest.mark.slow) if c == "koniq.yaml" else c  # Swin-B
                                    for c in sorted(p.name for p in (ROOT / "params" / "runs").glob("*.yaml"))])
def test_run_configurations_load(config):
    from iqalib.config import load_config, resolve_train
    from iqalib.models import create_model

    # The GPU run asks for CUDA, which load_config checks; the rest of it must be valid anywhere.
    loaded = load_config(ROOT / "params" / "runs" / config, ["train.device=cpu"])
    model = create_model(loaded.model.name, pretrained=False)
    train = resolve_train(loaded.train, model.default_train_config())
    assert loaded.name == Path(config).stem and train.epochs >= 1


def test_gitignore_hides_no_source_file(git_checkout):
    sources = [p for folder in ("params", "notebooks", "iqalib", "tests") for p in (ROOT / folder).rglob("*")
               if p.is_file() and not {"__pycache__", ".ipynb_checkpoints"} & set(p.parts)]
    sources += sorted((ROOT / "book").glob("*.md"))
    # Paths to check inside ignored folders are still matched: this is a check of the patterns.
    relative = [str(p.relative_to(ROOT)) for p in sources]
    assert "params/runs/smoke.yaml" in relative
    done = subprocess.run(["git", "check-ignore", "--no-index", "--verbose", "--stdin"], cwd=ROOT,
                          input="\n".join(relative + ["params/runs/livec.yaml"]), capture_output=True,
                          text=True)
    assert done.returncode in (0, 1), done.stderr  # 1: nothing ignored
    # --verbose also lists a file that a negated pattern ("!/path") keeps: that file is not ignored
    ignored = [line for line in done.stdout.splitlines() if not line.split(":", 2)[2].startswith("!")]
    assert ignored == [], "ignored by .gitignore (anchor the pattern, e.g. /runs/)"
    probe = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT,
                           input="runs/livec/summary.json\nbook/_build/html/index.html\n",
                           capture_output=True, text=True)
    assert probe.stdout.split() == ["runs/livec/summary.json", "book/_build/html/index.html"]

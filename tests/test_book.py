"""The book: notebook pairs, profiles, the smoke book executed end to end, the HTML build, Lab."""
from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import jupytext
import nbformat
import pytest
import yaml

from iqalib.book import (LINE_WIDTH, NOTEBOOKS, RECIPE_KEYS, NotebookFailed, build_html, execute_notebook,
                         load_profile, merged_parameters, run_book)
from iqalib.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
PROFILES = ("smoke", "default", "demo", "livec", "koniq")
# Figures (image/png outputs) each chapter shows under the smoke profile; None: at least one.
# 08_cross_dataset draws no matrix when only one data set is present (the smoke profile).
FIGURES = {"01_data": 2, "02_inside_the_model": None, "06_losses": None, "03_baseline": 3, "04_smart_iqa": 4, "05_ablations": None, "07_attention": None,
           "08_cross_dataset": 0, "09_lr_sensitivity": 1, "10_model_size": 1, "11_summary": 0,
           "12_performance": 0}
NO_SPEED_PLOTTED = "No measured speed passed its checks"


def parameters_cell(nb) -> list:
    return [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]


def copy_book_sources(dest: Path) -> Path:
    """The files a book build reads, copied so that tests never touch the repository's outputs."""
    for name in ("jupytext.toml", "_config.yml", "_toc.yml"):
        shutil.copy(ROOT / name, dest / name)
    for folder in ("notebooks", "params", "_static"):
        shutil.copytree(ROOT / folder, dest / folder)
    (dest / "book").mkdir()
    for page in (ROOT / "book").glob("*.*"):
        shutil.copy(page, dest / "book" / page.name)
    return dest


# ------------------------------------------------------------- pairing gate
def test_every_notebook_is_a_committed_pair():
    stems = sorted(p.stem for p in (ROOT / "notebooks").glob("*.py"))
    assert stems == list(NOTEBOOKS)
    assert sorted(p.stem for p in (ROOT / "notebooks").glob("*.ipynb")) == stems


def test_jupytext_sync_changes_nothing(tmp_path):
    copy = tmp_path / "notebooks"
    shutil.copytree(ROOT / "notebooks", copy)
    shutil.copy(ROOT / "jupytext.toml", tmp_path / "jupytext.toml")
    done = subprocess.run([sys.executable, "-m", "jupytext", "--sync", *sorted(map(str, copy.glob("*.py")))],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    changed = [p.name for p in sorted(copy.iterdir())
               if p.read_bytes() != (ROOT / "notebooks" / p.name).read_bytes()]
    assert changed == [], f"run `jupytext --sync notebooks/*.py`: {changed} are out of sync"


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_committed_notebook_has_no_outputs_one_parameters_cell_and_python3(stem):
    nb = nbformat.read(ROOT / "notebooks" / f"{stem}.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert len(parameters_cell(nb)) == 1
    assert nb.cells.index(parameters_cell(nb)[0]) == 1, "parameters come right after the title cell"
    assert nb.metadata.kernelspec.name == "python3"
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")


@pytest.mark.parametrize("profile", PROFILES)
def test_profile_sets_only_parameters_the_notebooks_declare(profile):
    params = load_profile(profile, ROOT)
    assert params["01_data"]["profile"] == profile
    for stem in NOTEBOOKS:
        nb = jupytext.read(ROOT / "notebooks" / f"{stem}.py")
        declared = {t.id for node in ast.parse(parameters_cell(nb)[0].source).body
                    if isinstance(node, ast.Assign) for t in node.targets}
        assert set(params[stem]) <= declared, f"{profile}/{stem}: {set(params[stem]) - declared}"


def test_unknown_profile_and_notebook_are_one_line_errors(tmp_path):
    with pytest.raises(ConfigError, match="no book profile 'nope'"):
        load_profile("nope", ROOT)
    with pytest.raises(ConfigError, match="unknown notebook"):
        run_book("smoke", notebooks=["10_nothing"], build=False, root=copy_book_sources(tmp_path))


# ------------------------------------------------------------ the training recipe
TRAINING_CHAPTERS = ("03_baseline", "04_smart_iqa", "05_ablations", "06_losses", "07_attention",
                     "09_lr_sensitivity")
# Each profile's recipe and the keys a chapter varies, as the flat keys of every chapter were
# before the recipe was stated once: the runs, and so the book's numbers, must not move.
RECIPES = {
    "smoke": dict(rounds=1, epochs=1, batch_size=32, train_patches=1, test_patches=1, trunk_lr=1.0e-4,
                  freeze_backbone=True, pretrained=True),
    "default": dict(rounds=10, epochs=6, batch_size=32, train_patches=1, test_patches=4, trunk_lr=3.0e-4,
                    freeze_backbone=True, pretrained=True),
    "demo": dict(rounds=3, epochs=8, batch_size=32, train_patches=2, test_patches=4, trunk_lr=3.0e-4,
                 freeze_backbone=True, pretrained=True),
    "livec": dict(rounds=10, epochs=6, batch_size=32, train_patches=2, test_patches=10, trunk_lr=1.0e-4,
                  freeze_backbone=True, pretrained=True),
    "koniq": dict(rounds=3, epochs=None, batch_size=None, train_patches=None, test_patches=None,
                  trunk_lr=None, freeze_backbone=False, pretrained=True),
}
VARIED = {("demo", "09_lr_sensitivity"): {"rounds": 1}, ("livec", "09_lr_sensitivity"): {"rounds": 3},
          ("koniq", "09_lr_sensitivity"): {"rounds": 1}}
TRUNK_LRS = {"smoke": [1.0e-4, 1.0e-3], "default": [1.0e-4, 3.0e-4, 1.0e-3], "demo": [1.0e-4, 3.0e-4, 1.0e-3],
             "livec": [3.0e-5, 1.0e-4, 3.0e-4, 1.0e-3], "koniq": [1.0e-6, 2.0e-6, 5.0e-6, 1.0e-5]}


@pytest.mark.parametrize("profile", PROFILES)
def test_each_training_chapter_gets_the_profile_recipe_with_its_own_keys_over_it(profile):
    params = load_profile(profile, ROOT)
    for stem in NOTEBOOKS:
        if stem in TRAINING_CHAPTERS or stem == "01_data":  # chapter 1 prints the edition's protocol
            assert params[stem]["recipe"] == {**RECIPES[profile], **VARIED.get((profile, stem), {})}, stem
        else:
            assert "recipe" not in params[stem], f"{stem} neither trains nor describes the recipe"
    assert params["09_lr_sensitivity"]["trunk_lrs"] == TRUNK_LRS[profile]
    # Stated once: no chapter section repeats a recipe key outside its recipe block.
    raw = yaml.safe_load((ROOT / "params" / f"{profile}.yaml").read_text())
    repeated = {stem: sorted(set(raw[stem]) & set(RECIPE_KEYS)) for stem in TRAINING_CHAPTERS}
    assert repeated == {stem: [] for stem in TRAINING_CHAPTERS}


def write_profile(root: Path, text: str) -> Path:
    path = root / "params" / "trial.yaml"
    path.write_text(text)
    return path


def test_a_chapter_recipe_overrides_only_its_keys_and_only_for_that_chapter(tmp_path):
    root = copy_book_sources(tmp_path)
    write_profile(root, "common:\n  recipe: {rounds: 4, epochs: 6, loss_options: {margin: 1}}\n"
                        "04_smart_iqa:\n  recipe: {epochs: 2}\n")
    params = load_profile("trial", root)
    assert params["04_smart_iqa"]["recipe"] == {"rounds": 4, "epochs": 2, "loss_options": {"margin": 1}}
    assert params["03_baseline"]["recipe"] == {"rounds": 4, "epochs": 6, "loss_options": {"margin": 1}}
    assert "recipe" not in params["10_model_size"]
    # A chapter may state a recipe of its own when common has none.
    write_profile(root, "07_attention:\n  recipe: {rounds: 2}\n")
    params = load_profile("trial", root)
    assert params["07_attention"]["recipe"] == {"rounds": 2} and "recipe" not in params["03_baseline"]


@pytest.mark.parametrize("text, fragment", [
    ("04_smart_iqa:\n  recipe: {epohcs: 2}\n",
     "'epohcs' in the recipe of section '04_smart_iqa' is not a training key (did you mean 'epochs'?)"),
    ("common:\n  recipe: {rounds: 2, colour: red}\n",
     "'colour' in the recipe of section 'common' is not a training key; recipe keys: batch_size, "),
    ("common:\n  recipe: {seed: 1}\n", "'seed' in the recipe of section 'common' is not a training key"),
    ("common:\n  recipe: [rounds, 2]\n", "'recipe' in section 'common' must map training keys to values"),
    ("03_baseline:\n  epochs: 2\n",  # the layout before the recipe
     "'epochs' in section '03_baseline' is a training key: set it in the section's recipe: block"),
    ("10_model_size:\n  recipe: {rounds: 2}\n",
     "'recipe' in section '10_model_size' is not a parameter of notebooks/10_model_size.py"),
])
def test_a_bad_recipe_is_one_line_naming_the_file_the_section_and_the_key(tmp_path, text, fragment):
    root = copy_book_sources(tmp_path)
    path = write_profile(root, text)
    with pytest.raises(ConfigError) as caught:
        load_profile("trial", root)
    message = str(caught.value)
    assert message.startswith(f"{path}: ") and fragment in message and "\n" not in message


def test_the_recipe_shows_as_one_block_of_the_parameters(tmp_path):
    from papermill.translators import PythonTranslator

    params = load_profile("demo", ROOT)["05_ablations"]
    defaults = parameters_cell(jupytext.read(ROOT / "notebooks" / "05_ablations.py"))[0].source
    lines = merged_parameters(defaults, PythonTranslator.codify(params))
    start = next(i for i, line in enumerate(lines) if line.startswith("recipe = {"))
    end = next(i for i in range(start, len(lines)) if lines[i].rstrip().endswith("}"))
    block = "\n".join(lines[start:end + 1])
    assert lines[start - 1].startswith("# How the models are trained")  # the default's comment kept
    assert max(map(len, lines)) <= LINE_WIDTH and end > start  # wrapped to the page
    values = {}
    exec(block, {}, values)
    assert values["recipe"] == params["recipe"]
    assert sum(line.lstrip().startswith("recipe") for line in lines) == 1


# ------------------------------------------------------ the smoke book, once
@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory):
    root = copy_book_sources(tmp_path_factory.mktemp("book"))
    run_book("smoke", build=False, root=root, log=lambda *_: None)
    return root


def executed(root: Path, stem: str):
    return nbformat.read(root / "book" / "executed" / f"{stem}.ipynb", as_version=4)


@pytest.mark.book
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_smoke_notebook_executes_and_shows_its_figures(smoke_book, stem):
    nb = executed(smoke_book, stem)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code)
    assert not [o for c in code for o in c.outputs if o.output_type == "error"]
    figures = sum("image/png" in o.get("data", {}) for c in code for o in c.outputs)
    if stem == "10_model_size" and any(NO_SPEED_PLOTTED in o.get("text", "") for c in code for o in c.outputs):
        assert figures == 0  # a loaded machine can fail every speed check; then nothing may be plotted
    elif FIGURES[stem] is None:
        assert figures >= 1
    else:
        assert figures == FIGURES[stem]
    injected = [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "profile = \"smoke\"" in injected[0].source


@pytest.mark.book
def test_smoke_book_marks_its_profile_and_its_runs(smoke_book):
    assert (smoke_book / "book" / "executed" / "PROFILE").read_text().strip() == "smoke"
    summary = executed(smoke_book, "11_summary")
    text = "".join(o.get("data", {}).get("text/plain", "") for c in summary.cells if c.cell_type == "code"
                   for o in c.outputs)
    # 09 reads the runs 02 and 03 trained (not typed by hand), labelled synthetic.
    for run in ("hyperiqa_lite0", "smart_iqa_lite0"):
        assert run in text
        assert (smoke_book / "runs" / "book" / "smoke" / run / "summary.json").is_file()
    assert "demo (synthetic)" in text


@pytest.mark.book
def test_smoke_book_builds_html(smoke_book):
    index = build_html(smoke_book)
    html = index.parent
    assert index.is_file()
    for stem in NOTEBOOKS:
        assert (html / "book" / "executed" / f"{stem}.html").is_file()
    assert "Su" in (html / "book" / "references.html").read_text()
    assert list((html / "_images").glob("*.png"))


# Text of the building machine that must not reach a page: the repository, the home folder,
# temporary folders (the smoke book's own root and cache live there) and installed packages.
MACHINE_PATHS = tuple(p for p in (str(ROOT), str(Path.home()), "/tmp/", "site-packages", sys.prefix)
                      if len(p) > 1)
TRACE = re.compile(r"Traceback \(most recent call last\)|\bwarning:|^WARNING", re.IGNORECASE | re.MULTILINE)


def output_text(output) -> str:
    """Everything a reader could see of one cell output, as text (images aside)."""
    if output.output_type == "stream":
        return output.text
    if output.output_type == "error":
        return "\n".join([output.ename, output.evalue, *output.traceback])
    data = output.get("data", {})
    return "\n".join(str(data[kind]) for kind in ("text/plain", "text/html", "text/markdown", "text/latex")
                     if kind in data)


def shown_code(nb) -> list:
    """The code cells a page shows (Jupyter Book drops cells tagged remove-cell / remove-input)."""
    return [c for c in nb.cells if c.cell_type == "code"
            and not {"remove-cell", "remove-input"} & set(c.metadata.get("tags", []))]


@pytest.mark.book
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_smoke_pages_show_no_warning_traceback_or_path_of_the_building_machine(smoke_book, stem):
    nb = executed(smoke_book, stem)
    forbidden = [*MACHINE_PATHS, str(smoke_book)]
    for index, cell in enumerate(nb.cells):
        for output in cell.get("outputs", []):
            text = output_text(output)
            assert not TRACE.search(text), f"{stem}, cell {index}: {TRACE.search(text).group(0)!r} in {text[:600]}"
            shown = [path for path in forbidden if path in text]
            assert not shown, f"{stem}, cell {index} shows {shown}: {text[:600]}"


# What a page must never show where a statistic could not be computed: NaN / nan / <NA>, an interval
# of NaNs, an empty interval. The page says why in words instead (issue #23).
NOT_A_NUMBER = re.compile(r"\bnan\b|<NA>|\[\+?nan|\[\s*,\s*\]", re.IGNORECASE)


def page_texts(nb):
    """(cell index, text) of everything a reader sees: markdown cells and every text output."""
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            yield index, cell.source
        for output in cell.get("outputs", []):
            yield index, output_text(output)


@pytest.mark.book
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_smoke_pages_print_no_nan_and_no_empty_interval(smoke_book, stem):
    nb = executed(smoke_book, stem)
    found = [f"cell {index}: {line.strip()[:300]}" for index, text in page_texts(nb)
             for line in text.splitlines() if NOT_A_NUMBER.search(line)]
    assert not found, f"{stem} prints a statistic it could not compute:\n" + "\n".join(found[:20])


def test_book_style_shows_whole_tables_with_nothing_cut():
    import pandas as pd

    from iqalib import book_style

    wide = pd.DataFrame({f"column {k}": [0.5] * 100 for k in range(30)}).assign(reason="why " * 60)
    keys = ("display.float_format", "styler.format.formatter", "display.width", "display.max_columns",
            "display.max_colwidth", "display.max_rows", "display.min_rows")
    saved = {key: pd.get_option(key) for key in keys}
    try:
        book_style.apply()
        text, html = repr(wide), wide._repr_html_()
    finally:
        for key, value in saved.items():
            pd.set_option(key, value)
    assert "..." not in text and "…" not in text and "…" not in html and "..." not in html
    assert "column 29" in text and ("why " * 60).strip() in text and "\n99 " in text


def test_the_nan_scan_catches_what_it_must_and_spares_words():
    for bad in ("SRCC +0.744 [+nan, +nan]", "(c) vs (b)   NaN", "<td>nan</td>", "our_rank <NA>", "CI [, ]"):
        assert NOT_A_NUMBER.search(bad), bad
    for fine in ("n/a (1 round; the rule needs 6)", "[+0.100, +0.500]", "financial", "nano", "Nancy"):
        assert not NOT_A_NUMBER.search(fine), fine


@pytest.mark.book
@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_smoke_pages_show_the_parameters_once_with_the_values_run(smoke_book, stem):
    nb = executed(smoke_book, stem)
    declared = {t.id for node in ast.parse(parameters_cell(nb)[0].source).body
                if isinstance(node, ast.Assign) for t in node.targets}
    shown = [c for c in shown_code(nb) if "parameters" in c.metadata.get("tags", [])
             or "injected-parameters" in c.metadata.get("tags", [])]
    assert len(shown) == 1 and "injected-parameters" in shown[0].metadata.tags
    assert shown[0].source.startswith("# Parameters of this edition: params/smoke.yaml")
    values = {}
    exec(shown[0].source, {}, values)  # the block alone gives every parameter its value
    assert set(values) == declared
    assert {k: values[k] for k in load_profile("smoke", ROOT)[stem]} == load_profile("smoke", ROOT)[stem]
    assert max(map(len, shown[0].source.splitlines())) <= LINE_WIDTH  # long lists are wrapped


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_code_lines_fit_the_page(stem):
    nb = jupytext.read(ROOT / "notebooks" / f"{stem}.py")
    long = [line for c in nb.cells if c.cell_type == "code" for line in c.source.splitlines()
            if len(line) > LINE_WIDTH]
    assert long == [], f"notebooks/{stem}.py: code lines over {LINE_WIDTH} characters: {long}"


TINY_CHAPTER = """# %% [markdown]
# # A chapter

# %% tags=["parameters"]
profile = "x"
out_dir = None  # where runs land

# %%
import timm  # imports tqdm.auto through the model hub client

import pandas as pd

pd.DataFrame({"srcc": [0.912345678, 9.41e-06], "lr": [3e-05, 1e-3]})
"""


@pytest.mark.book
def test_book_prints_one_line_per_chapter_and_its_pages_show_rounded_numbers(tmp_path, capfd):
    root = tmp_path
    (root / "notebooks").mkdir()
    (root / "params").mkdir()
    (root / "params" / "tiny.yaml").write_text("common:\n  profile: tiny\n")
    for stem in ("01_data", "03_baseline"):
        (root / "notebooks" / f"{stem}.py").write_text(TINY_CHAPTER)
    capfd.readouterr()
    run_book("tiny", notebooks=["01_data", "03_baseline"], build=False, root=root)
    captured = capfd.readouterr()  # this process and the kernels it started (file descriptors 1 and 2)
    lines = (captured.out + captured.err).splitlines()
    assert [re.sub(r"\d+ s$", "N s", line) for line in lines] == [
        "executed 01_data (tiny) in N s", "executed 03_baseline (tiny) in N s"], lines
    nb = executed(root, "03_baseline")
    table = nb.cells[-1].outputs[-1]["data"]["text/html"]
    assert re.findall(r"<td>([^<]*)</td>", table) == ["0.9123", "3e-05", "9.4e-06", "0.0010"]
    assert not any(TRACE.search(output_text(o)) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.book
def test_changing_profile_clears_executed_notebooks(tmp_path):
    root = copy_book_sources(tmp_path)
    stale = root / "book" / "executed" / "04_smart_iqa.ipynb"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    (stale.parent / "PROFILE").write_text("demo\n")
    run_book("smoke", notebooks=["11_summary"], build=False, root=root, log=lambda *_: None)
    assert not stale.exists()
    assert (stale.parent / "PROFILE").read_text().strip() == "smoke"
    assert (stale.parent / "11_summary.ipynb").is_file()


@pytest.mark.book
def test_failing_cell_stops_with_notebook_and_cell_named(tmp_path):
    root = copy_book_sources(tmp_path)
    (root / "notebooks" / "99_broken.py").write_text(
        '# %% tags=["parameters"]\nx = 1\n\n# %%\ny = 2\n\n# %%\nraise ValueError(f"bad x={x}")\n')
    with pytest.raises(NotebookFailed) as info:
        execute_notebook("99_broken", {"x": 7}, root=root)
    message = str(info.value)
    assert "\n" not in message
    # Cell 0: parameters, 1: injected parameters, 2: y = 2, 3: the raise.
    assert "notebook 99_broken failed in cell 3" in message and "ValueError: bad x=7" in message


# ----------------------------------------------------------------- JupyterLab
def test_lab_opens_a_py_notebook_and_saving_writes_both_files(tmp_path):
    from jupytext import TextFileContentsManager

    root = tmp_path
    shutil.copytree(ROOT / "notebooks", root / "notebooks")
    shutil.copy(ROOT / "jupytext.toml", root / "jupytext.toml")
    manager = TextFileContentsManager(root_dir=str(root))
    model = manager.get("notebooks/01_data.py")
    assert model["type"] == "notebook"
    nb = model["content"]
    assert len(parameters_cell(nb)) == 1
    nb.cells.append(nbformat.v4.new_markdown_cell("A note added in Lab."))
    manager.save({"type": "notebook", "content": nb}, "notebooks/01_data.py")
    assert "# A note added in Lab." in (root / "notebooks" / "01_data.py").read_text()
    paired = nbformat.read(root / "notebooks" / "01_data.ipynb", as_version=4)
    assert paired.cells[-1].source == "A note added in Lab."


def test_jupytext_server_extension_is_enabled_in_the_environment():
    config = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "jupytext.json"
    assert json.loads(config.read_text())["ServerApp"]["jpserver_extensions"]["jupyterlab_jupytext"] is True


# ------------------------------------------------- library behind the chapters
def test_runs_table_reads_medians_and_settings_from_run_files(tmp_path):
    from iqalib.results import FINGERPRINT, runs_table

    run = tmp_path / "hyperiqa_lite0"
    run.mkdir()
    rounds = [{"round": r, "srcc": s, "plcc": p} for r, (s, p) in enumerate([(0.5, 0.4), (0.7, 0.8), (0.6, 0.9)])]
    (run / "summary.json").write_text(json.dumps({"name": run.name, "model": "hyperiqa_lite0",
                                                  "data": "demo (synthetic)", "rounds": 3,
                                                  "test_per_round": rounds}))
    (run / FINGERPRINT).write_text(json.dumps({"config": {"train": {"epochs": 6, "trunk_lr": 1e-4,
                                                                    "freeze_backbone": True}}}))
    row = runs_table(tmp_path).iloc[0]
    assert (row["srcc_median"], row["srcc_min"], row["srcc_max"]) == (0.6, 0.5, 0.7)
    assert (row["plcc_median"], row["plcc_min"], row["plcc_max"]) == (0.8, 0.4, 0.9)
    assert (row["epochs"], row["trunk_lr"], bool(row["freeze_backbone"])) == (6, 1e-4, True)
    assert runs_table(None).empty and list(runs_table(None).columns) == list(runs_table(tmp_path).columns)


@pytest.mark.book
def test_missing_sets_are_listed_not_fatal(smoke_book, tmp_path):
    from iqalib.experiments import available_tables, cross_dataset_matrix
    from iqalib.results import load_results

    tables, missing = available_tables({"demo": None, "livec": tmp_path / "absent"})
    assert list(tables) == ["demo"] and list(missing) == ["livec"] and str(tmp_path) in missing["livec"]
    run_dir = smoke_book / "runs" / "book" / "smoke" / "smart_iqa_lite0"
    matrix = cross_dataset_matrix(run_dir, {"livec": tmp_path / "absent"})
    own = load_results(run_dir)["round_results"][0]["test"]
    assert list(matrix.attrs["skipped"]) == ["livec"]
    assert matrix[["n", "srcc", "plcc"]].to_dict("records") == [{"n": own["n"], "srcc": own["srcc"],
                                                                   "plcc": own["plcc"]}]
    assert matrix["synthetic"].tolist() == [True]  # the demo run's row says its labels are simulated
    from iqalib.analysis.cross_dataset import transfer_claim

    assert transfer_claim(matrix)["verdict"] == "untested (one data set)"


def test_execution_order_runs_every_chapter_once_and_the_model_chapter_after_its_runs():
    from iqalib.book import EXECUTION_ORDER

    assert sorted(EXECUTION_ORDER) == sorted(NOTEBOOKS) and len(EXECUTION_ORDER) == len(NOTEBOOKS)
    position = EXECUTION_ORDER.index
    # 02 reads the finished runs of 03 (HyperIQA) and 04 (SMART-IQA) to show trained heads.
    assert position("02_inside_the_model") > max(position("03_baseline"), position("04_smart_iqa"))

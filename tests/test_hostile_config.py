"""Hostile configurations, book profiles and path parts (issue 11): exit 2, one short line, nothing written.

Every input is made here: a 50 MB YAML, alias bombs, duplicate keys at every
level, NaN / inf / 1e12 / -1 / 2**32 for each class of number, NUL bytes,
megabyte values, unknown devices, overrides into single values, and path
parts that would leave their folder (``..``, ``a/b``, ``/abs``, ``C:x``,
``\\x00``, ``''``) as a run name, a book profile, a notebook or a benchmark.
Each goes through ``iqalib.cli.main`` and must exit with status 2 and print
exactly one ``error: ...`` line of under 300 characters (a value is echoed
cut to 80). The tests run in an empty working folder inside ``tmp_path`` and
compare all of ``tmp_path`` before and after: a refused input creates nothing.
"""
from __future__ import annotations

import builtins
import contextlib
import functools
import os
import pathlib
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import iqalib.book
from iqalib.book import NOTEBOOKS, notebook_parameters, run_book
from iqalib.cli import main
from iqalib.config import MAX_YAML_BYTES, TrainConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ("train.epochs", "train.batch_size", "train.patch_size", "train.train_patches", "train.test_patches",
          "train.rounds", "train.workers")
SEEDS = ("train.seed", "data.split_seed")
RATES = ("train.trunk_lr", "train.head_lr_multiplier", "train.weight_decay", "train.eta_min", "train.grad_clip")
PARTS = ("..", ".", "a/b", "/abs", "a\\b", "\x00", "x\x00y", "C:x", "", "-rf", "x" * 300)


# ------------------------------------------------------------------ helpers
def tree(folder: Path) -> dict[str, int]:
    """Every path under ``folder`` with its size (-1 for a folder)."""
    return {str(p.relative_to(folder)): (-1 if p.is_dir() else p.stat().st_size) for p in folder.rglob("*")}


@contextlib.contextmanager
def creates_nothing(folder: Path):
    before = tree(folder)
    yield
    assert tree(folder) == before


def refused(capsys, args: list[str], *fragments: str, base: Path | None = None, limit: int = 300) -> str:
    """``iqalib ARGS`` exits 2 with one ``error:`` line holding every fragment, under ``limit`` characters
    once the test's own folder ``base`` (a long temporary path, not an echo) is written ``<tmp>``."""
    capsys.readouterr()
    assert main(args) == 2
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err[:3000]
    assert len(lines[0].replace(str(base), "<tmp>") if base else lines[0]) < limit, lines[0][:600]
    assert out == ""
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


@pytest.fixture
def sandbox(tmp_path, monkeypatch) -> Path:
    """``tmp_path`` with an empty working folder ``cwd/``: a relative write would land inside it."""
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    return tmp_path


def base_config(sandbox: Path) -> dict:
    """Valid, but its data set is absent: anything let through fails with a data error, not silently."""
    return {"name": "run", "out_dir": str(sandbox / "out" / "inner"),
            "data": {"name": "csv", "root": str(sandbox / "no-data"), "options": {"table": "scores.csv"}},
            "model": {"name": "smart_iqa_lite0", "pretrained": False},
            "train": {"epochs": 1, "device": "cpu", "progress": False}}


@pytest.fixture
def cfg(sandbox) -> Path:
    path = sandbox / "run.yaml"
    path.write_text(yaml.safe_dump(base_config(sandbox)))
    return path


def refused_train(capsys, sandbox: Path, cfg: Path, overrides: list[str], *fragments: str) -> str:
    with creates_nothing(sandbox):
        return refused(capsys, ["train", str(cfg), *overrides], *fragments, base=sandbox)


# ------------------------------------------------------------ numbers
def number_cases():
    for key in (*COUNTS, *SEEDS, *RATES):
        integer = key in COUNTS or key in SEEDS
        for text in (".nan", ".inf", "-.inf", "1e999"):
            yield f"{key}={text}", f"{key}={'-' if text == '-.inf' else ''}{'nan' if 'nan' in text else 'inf'} " \
                                   "must be a finite number"
        yield f"{key}=1e12", (f"{key}=1000000000000.0 must be of type int" if integer else f"{key}=1000000000000.0 must be")
        yield f"{key}=-1", f"{key}=-1{'' if integer else '.0'} must "  # ints stay ints, floats become floats
        yield f"{key}={2**32}", f"{key}={2**32}{'' if integer else '.0'} must be "
        if integer:
            yield f"{key}={10**12}", f"{key}={10**12} must be at most"


@pytest.mark.parametrize("override, fragment", list(number_cases()))
def test_every_number_class_refuses_nan_inf_and_absurd_magnitudes(capsys, sandbox, cfg, override, fragment):
    line = refused_train(capsys, sandbox, cfg, [override], f"{cfg}: ", fragment)
    assert "finite" in line or "of type int" in line or "(accepted: " in line


@pytest.mark.parametrize("override, fragment", [
    ("train.trunk_lr=1e12", "train.trunk_lr=1000000000000.0 must be at most 10 (accepted: 0 < trunk_lr <= 10)"),
    ("train.weight_decay=1", "train.weight_decay=1.0 must be below 1 (accepted: 0 <= weight_decay < 1)"),
    ("train.seed=-1", "train.seed=-1 must not be negative (accepted: 0 <= seed <= 4294967295)"),
    (f"data.split_seed={2**32}", "data.split_seed=4294967296 must be at most 4294967295"),
    ("train.epochs=0", "train.epochs=0 must be positive (accepted: 1 <= epochs <= 10000)"),
    ("model.options.dropout=1.5", "model.options.dropout=1.5 must be below 1 (accepted: 0 <= dropout < 1)"),
    ("model.options.drop_path_rate=-0.1", "model.options.drop_path_rate=-0.1 must not be negative"),
    ("model.options.attention_dropout=.nan", "model.options.attention_dropout=nan must be a finite number"),
    ("data.fractions=[.nan, 0.5, 0.5]", "data.fractions[0]=nan must be a finite number"),
    ("data.fractions=[1e12, -1e12, 1]", "must be three non-negative shares summing to 1"),
    ("data.fractions=[1.0e+12, -1.0e+12, 1]", "must be three non-negative shares summing to 1"),
    ("train.trunk_lr=" + "9" * 400, ("train.trunk_lr=999999", "(400 characters) is too large for a number")),
    ("train.epochs=" + "9" * 5000, ("train.epochs='99999", "must be of type int")),
])
def test_ranges_name_the_key_and_the_accepted_interval(capsys, sandbox, cfg, override, fragment):
    refused_train(capsys, sandbox, cfg, [override], *((fragment,) if isinstance(fragment, str) else fragment))


def test_numbers_in_the_file_are_checked_like_overrides(capsys, sandbox):
    config = base_config(sandbox)
    config["train"].update(trunk_lr=float("nan"))
    path = sandbox / "nan.yaml"
    path.write_text(yaml.safe_dump(config))  # writes .nan
    refused_train(capsys, sandbox, path, [], f"{path}: train.trunk_lr=nan must be a finite number")


# ------------------------------------------------------------ text
@pytest.mark.parametrize("override, fragment", [
    ("name=a\x00b", "name='a\\x00b' holds a NUL byte (\\x00); remove it"),
    ("out_dir=\x00", "out_dir='\\x00' holds a NUL byte"),
    ("data.root=/x\x00", "data.root='/x\\x00' holds a NUL byte"),
    ("model.pretrained=/w\x00.pt", "model.pretrained='/w\\x00.pt' holds a NUL byte"),
    ("model.options.x=\x00", "model.options.x='\\x00' holds a NUL byte"),
])
def test_nul_bytes_in_any_text_are_refused(capsys, sandbox, cfg, override, fragment):
    refused_train(capsys, sandbox, cfg, [override], fragment)


def test_nul_bytes_in_the_file(capsys, sandbox):
    escaped = sandbox / "escaped.yaml"
    escaped.write_text('name: "a\\0b"\n')
    refused_train(capsys, sandbox, escaped, [], f"{escaped}: name='a\\x00b' holds a NUL byte")
    raw = sandbox / "raw.yaml"
    raw.write_bytes(b"name: a\x00b\n")
    refused_train(capsys, sandbox, raw, [], f"{raw}: not valid YAML: control characters are not allowed")
    key = sandbox / "key.yaml"
    key.write_text('model:\n  options: {"a\\0": 1}\n')
    refused_train(capsys, sandbox, key, [], "key 'a\\x00' in model.options holds a NUL byte")


@pytest.mark.parametrize("override, fragments", [
    ("name=" + "x" * 1_000_000, ["name='xxxx", "(1000002 characters) is longer than 255 bytes"]),
    ("train.optimizer=" + "a" * 1_000_000, ["train.optimizer='aaaa", "(1000002 characters) is not one of"]),
    ("data.fractions=[" + "0.5, " * 100_000 + "0.5]", ["data.fractions=[0.5, 0.5,", "must be three non-negative"]),
], ids=["name", "choice", "list"])
def test_megabyte_values_are_echoed_cut_to_80_characters(capsys, sandbox, cfg, override, fragments):
    line = refused_train(capsys, sandbox, cfg, [override], *fragments)
    assert "…" in line


def test_a_200_kb_key_is_cut_too(capsys, sandbox):
    path = sandbox / "key.yaml"
    path.write_text(f"train:\n  ? {'k' * 200_000}\n  : 1\n")  # an explicit key: plain keys stop at 1024
    valid = str(sorted(TrainConfig.__dataclass_fields__))  # the message lists the valid keys (330 characters)
    with creates_nothing(sandbox):
        line = refused(capsys, ["train", str(path)], "unknown key(s) ['train.kkk", "(200008 characters)] in section",
                       f"valid: {valid}", base=sandbox, limit=300 + len(valid))
    assert "…" in line


# ------------------------------------------------------------ devices
@pytest.mark.parametrize("device, fragment", [
    ("gpu", "train.device='gpu' is not one of ('auto', 'cpu', 'cuda', 'mps')"),
    ("cuda:7", "train.device='cuda:7' is not one of ('auto', 'cpu', 'cuda', 'mps'); to pick GPUs use device=cuda "
               "with --devices"),
    ("cpuu", "(did you mean 'cpu'?)"),
    pytest.param("mps", "train.device='mps' but this machine has no Apple MPS device; use device=auto or cpu",
                 marks=pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")),
    pytest.param("cuda", "train.device='cuda' but no CUDA device is visible; use device=auto or cpu",
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
])
def test_unknown_and_absent_devices(capsys, sandbox, cfg, device, fragment):
    refused_train(capsys, sandbox, cfg, [f"train.device={device}"], fragment)


# ------------------------------------------------------------ overrides
@pytest.mark.parametrize("override, fragment", [
    ("train.epochs.x=1", "override 'train.epochs.x=1': train.epochs is a single value, not a section; "
                         "write train.epochs=VALUE"),
    ("name.x=1", "override 'name.x=1': name is a single value, not a section"),
    ("model.pretrained.x=1", "model.pretrained is a single value"),
    ("data=", "override 'data=' has no value after '='; give one (null unsets the key)"),
    ("data.root=", "override 'data.root=' has no value after '='"),
    ("train.epochs=   ", "has no value after '='"),
    ("data=null", "override 'data=null' would replace the whole section 'data'; set its keys instead"),
    ("train=3", "would replace the whole section 'train'"),
    ("=1", "override '=1' has an empty key or key part; write section.key=value"),
    ("train.=1", "override 'train.=1' has an empty key or key part"),
    ("train..epochs=1", "has an empty key or key part"),
    ("key", "override 'key' must look like section.key=value"),
])
def test_malformed_overrides(capsys, sandbox, cfg, override, fragment):
    refused_train(capsys, sandbox, cfg, [override], fragment)


def test_an_override_into_options_still_merges(sandbox, cfg):
    config = load_config(cfg, ["model.options.a.b=1", "data.root=null"])
    assert config.model.options == {"a": {"b": 1}} and config.data.root is None


# ------------------------------------------------------------ YAML structure
@pytest.mark.parametrize("text, fragment", [
    ("train:\n  epochs: 1\ntrain:\n  rounds: 2\n", "duplicate key 'train' (lines 1 and 3); the second would "
                                                  "silently replace the first: keep one"),
    ("train:\n  epochs: 1\n  rounds: 2\n  epochs: 3\n", "duplicate key 'train.epochs' (lines 2 and 4)"),
    ("model:\n  options:\n    a: {b: 1, b: 2}\n", "duplicate key 'model.options.a.b' (lines 3 and 3)"),
    ("name: a\nname: a\n", "duplicate key 'name'"),
])
def test_duplicate_keys_at_any_level(capsys, sandbox, text, fragment):
    path = sandbox / "dup.yaml"
    path.write_text(text)
    refused_train(capsys, sandbox, path, [], f"{path}: {fragment}")


def billion_laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\nmodel:\n  options:\n    bomb: *a{levels}\n"


def test_alias_bombs_and_merge_keys_are_refused_before_expansion(capsys, sandbox, cfg):
    bomb = sandbox / "bomb.yaml"
    bomb.write_text(billion_laughs())  # 9**10 strings if expanded
    refused_train(capsys, sandbox, bomb, [], f"{bomb}: YAML aliases (*name) are not accepted (the value anchored "
                  "at line 1 is used again); write each value out")
    merge = sandbox / "merge.yaml"
    merge.write_text("base: &b {epochs: 1}\ntrain:\n  <<: *b\n")
    refused_train(capsys, sandbox, merge, [], "YAML merge keys (<<, line 3) are not accepted")
    refused_train(capsys, sandbox, cfg, ["model.options={a: &a [1, 1], b: [*a, *a, *a]}"],
                  "override 'model.options={a: &a [1, 1], b: [*a, *a, *a]}': YAML aliases (*name) are not accepted")


def test_deep_nesting_is_refused(capsys, sandbox):
    path = sandbox / "deep.yaml"
    path.write_text("model:\n  options: " + "{a: " * 40 + "1" + "}" * 40 + "\n")
    refused_train(capsys, sandbox, path, [], "model.options.a.a.a", "nests more than 32 levels deep")
    flow = sandbox / "flow.yaml"
    flow.write_text("name: " + "[" * 100_000 + "]" * 100_000 + "\n")
    refused_train(capsys, sandbox, flow, [], f"{flow}: not valid YAML (line 1): ")


def test_a_50_mb_yaml_is_refused_by_its_size_without_being_read(capsys, sandbox, monkeypatch):
    big = sandbox / "big.yaml"
    with big.open("wb") as handle:
        handle.write(b"name: big\ntrain:\n  epochs: 1\npadding:\n")
        handle.write(b"- 0\n" * (50 * 2**20 // 4))
    assert big.stat().st_size > 50 * 2**20

    def guarded(original):
        @functools.wraps(original)
        def call(*args, **kwargs):
            target = args[0]
            assert str(target) != str(big), f"{big} was opened"
            return original(*args, **kwargs)
        return call

    for name in ("open", "read_text", "read_bytes"):
        monkeypatch.setattr(pathlib.Path, name, guarded(getattr(pathlib.Path, name)))
    monkeypatch.setattr(builtins, "open", guarded(builtins.open))
    refused_train(capsys, sandbox, big, [], f"{big}: {big.stat().st_size} bytes is too large for a configuration "
                  f"file (at most {MAX_YAML_BYTES} bytes); check that this is the right file")


def test_the_size_limit_is_exact(sandbox):
    body = b"name: limit\n"
    at_limit = sandbox / "limit.yaml"
    at_limit.write_bytes(body + b"#" * (MAX_YAML_BYTES - len(body) - 1) + b"\n")
    assert at_limit.stat().st_size == MAX_YAML_BYTES
    assert load_config(at_limit).name == "limit"
    over = sandbox / "over.yaml"
    over.write_bytes(at_limit.read_bytes() + b"\n")
    with pytest.raises(Exception, match="too large for a configuration file"):
        load_config(over)


def test_an_anchor_without_alias_and_a_plain_file_still_load(sandbox):
    path = sandbox / "ok.yaml"
    path.write_text("name: &n ok\ntrain: {epochs: 2}\n")
    config = load_config(path)
    assert config.name == "ok" and config.train.epochs == 2


# ------------------------------------------------------------ path parts
@pytest.mark.parametrize("part", PARTS)
def test_run_names_stay_inside_out_dir(capsys, sandbox, part):
    config = base_config(sandbox)
    config["name"] = part
    path = sandbox / "name.yaml"
    path.write_text(yaml.safe_dump(config))
    line = refused_train(capsys, sandbox, path, [], f"{path}: name=")
    assert any(word in line for word in ("not a name", "names a folder itself", "path separator", "NUL byte",
                                         "drive", "starts with '-'", "longer than 255 bytes"))


def test_bench_only_runs_a_benchmark_never_another_script(capsys, sandbox):
    marker = sandbox / "ran"
    script = sandbox / "evil.py"
    script.write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    benchmarks = ROOT / "benchmarks"
    escape = os.path.relpath(script.with_suffix(""), benchmarks)  # ../../tmp/.../evil
    with creates_nothing(sandbox):
        refused(capsys, ["bench", "--only", escape], "--only=", "path separator")
        for part in PARTS:
            refused(capsys, ["bench", f"--only={part}"], "--only=")
        refused(capsys, ["bench", "--only", "common"], "no benchmark(s) ['common']", "choose from [")
        refused(capsys, ["bench", "--only", "scorign"], "(did you mean 'scoring'?)")
    assert not marker.exists()


# ------------------------------------------------------------ book profiles
@pytest.fixture
def book_tree(sandbox, monkeypatch) -> Path:
    """The notebooks' sources and the profiles copied into ``sandbox/book-root``; the CLI's ``book``
    works on it, and executing a notebook fails the test (every refusal comes first)."""
    root = sandbox / "book-root"
    (root / "notebooks").mkdir(parents=True)
    for source in (ROOT / "notebooks").glob("*.py"):
        shutil.copy(source, root / "notebooks" / source.name)
    shutil.copytree(ROOT / "params", root / "params")

    def no_notebook(stem, *args, **kwargs):
        raise AssertionError(f"notebook {stem} ran")

    monkeypatch.setattr(iqalib.book, "execute_notebook", no_notebook)
    monkeypatch.setattr(iqalib.book, "run_book", functools.partial(run_book, root=root))
    return root


def write_profile(root: Path, name: str, text: str | bytes) -> Path:
    path = root / "params" / f"{name}.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def first_notebook_with(parameter: str) -> str:
    return next(s for s in NOTEBOOKS if parameter in (notebook_parameters(s, ROOT) or ()))


def test_profile_names_stay_inside_params(capsys, sandbox, book_tree):
    outside = sandbox / "x.yaml"
    outside.write_text((book_tree / "params" / "smoke.yaml").read_text())  # a valid profile, outside params/
    with creates_nothing(sandbox):
        refused(capsys, ["book", "--profile", "../x", "--no-build"], "--profile='../x' holds a path separator")
        for part in PARTS:
            refused(capsys, ["book", f"--profile={part}", "--no-build"], "--profile=")
        refused(capsys, ["book", "--profile", "nope", "--no-build"], "no book profile 'nope'", "choose one of [")


def test_notebook_names_stay_inside_notebooks(capsys, sandbox, book_tree):
    with creates_nothing(sandbox):
        for part in PARTS:
            refused(capsys, ["book", "--profile", "smoke", f"--only={part}", "--no-build"], "--only=")
        refused(capsys, ["book", "--profile", "smoke", "--only", f"../notebooks/{NOTEBOOKS[0]}", "--no-build"],
                "path separator")
        refused(capsys, ["book", "--profile", "smoke", "--only", "01_dta", "--no-build"],
                "unknown notebook(s) ['01_dta'] (did you mean '01_data'?)")


def profile_cases():
    stem = first_notebook_with("recipe")
    yield "list", "- common\n- 01_data\n", "a book profile is a mapping of sections"
    yield "section-list", "common: [1, 2]\n", "section 'common' must map parameter names to values, not be a list"
    yield "section-scalar", f"{NOTEBOOKS[0]}: 3\n", f"section '{NOTEBOOKS[0]}' must map parameter names to values"
    yield "not-yaml", "common:\n  seed: 0\n bad: [\n", "not valid YAML (line 3): "
    yield "dup-section", "common: {seed: 0}\ncommon: {seed: 1}\n", "duplicate key 'common' (lines 1 and 2)"
    yield "dup-key", "common:\n  seed: 0\n  seed: 1\n", "duplicate key 'common.seed' (lines 2 and 3)"
    yield "bomb", billion_laughs().replace("model:\n  options:\n    bomb:", "common:\n  bomb:"), "YAML aliases"
    yield "unknown-section", "comon: {seed: 0}\n", "unknown section(s) ['comon'] (did you mean 'common'?)"
    yield "unknown-param", f"{stem}:\n  recipes: {{}}\n", (f"'recipes' in section '{stem}' is not a parameter of "
                                                            f"notebooks/{stem}.py (did you mean 'recipe'?)")
    yield "unknown-recipe-key", f"{stem}:\n  recipe: {{epohcs: 1}}\n", (
        f"'epohcs' in the recipe of section '{stem}' is not a training key (did you mean 'epochs'?)")
    yield "unknown-common", "common:\n  devcie: cpu\n", "'devcie' in section 'common' is not a parameter of"
    yield "bad-name", f"{NOTEBOOKS[0]}:\n  a b: 1\n", f"'a b' in section '{NOTEBOOKS[0]}' is not a parameter name"
    yield "huge", b"common: {}\n" + b"#" * (2 * MAX_YAML_BYTES) + b"\n", "bytes is too large for a book profile"


@pytest.mark.parametrize("name, text, fragment", list(profile_cases()), ids=[c[0] for c in profile_cases()])
def test_bad_profiles_fail_before_any_notebook_runs(capsys, sandbox, book_tree, name, text, fragment):
    path = write_profile(book_tree, name, text)
    with creates_nothing(sandbox):
        line = refused(capsys, ["book", "--profile", name, "--no-build"], fragment, base=sandbox)
    assert line.startswith(f"error: {path}: ")


def test_unwritable_output_folders_fail_before_any_notebook_runs(capsys, sandbox, book_tree):
    blocker = sandbox / "blocker"
    blocker.write_text("a file, not a folder")
    smoke = (book_tree / "params" / "smoke.yaml").read_text()
    write_profile(book_tree, "blocked", smoke.replace("out_dir: runs/book/smoke", f"out_dir: {blocker}/runs"))
    assert f"{blocker}/runs" in (book_tree / "params" / "blocked.yaml").read_text()
    refused(capsys, ["book", "--profile", "blocked", "--no-build"], f"out_dir of params/blocked.yaml",
            f"{blocker}/runs cannot be written (Not a directory); make it a writable folder or choose another")
    assert blocker.read_text() == "a file, not a folder"
    assert not list((book_tree / "book" / "executed").glob("*.ipynb"))

    shutil.rmtree(book_tree / "book")
    (book_tree / "book").write_text("a file where the book folder belongs")
    refused(capsys, ["book", "--profile", "smoke", "--no-build"],
            f"the folder of executed notebooks {book_tree / 'book' / 'executed'} cannot be written")


def test_a_read_only_file_system_fails_before_any_notebook_runs(capsys, sandbox, book_tree, monkeypatch):
    """EROFS (a read-only mount, where even root cannot write), simulated on the probe file."""
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    refused(capsys, ["book", "--profile", "smoke", "--no-build"], "the folder of executed notebooks",
            "cannot be written (Read-only file system); make it a writable folder or choose another")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_fails_before_any_notebook_runs(capsys, sandbox, book_tree):
    (book_tree / "book").mkdir()
    (book_tree / "book").chmod(0o555)
    try:
        refused(capsys, ["book", "--profile", "smoke", "--no-build"], "cannot be written (Permission denied)")
    finally:
        (book_tree / "book").chmod(0o755)


def test_the_real_profiles_pass_every_check(book_tree):
    for profile in sorted(p.stem for p in (ROOT / "params").glob("*.yaml")):
        parameters = iqalib.book.load_profile(profile, book_tree)
        assert set(parameters) == set(NOTEBOOKS)


def test_parameters_cell_reader_agrees_with_jupytext():
    import ast

    import jupytext

    for stem in NOTEBOOKS:
        source = ROOT / "notebooks" / f"{stem}.py"
        if not source.is_file():
            continue
        cells = [c for c in jupytext.read(source).cells if "parameters" in c.metadata.get("tags", [])]
        assert len(cells) == 1, stem
        names = {t.id for node in ast.parse(cells[0].source).body if isinstance(node, ast.Assign)
                 for t in node.targets}
        assert notebook_parameters(stem, ROOT) == names, stem

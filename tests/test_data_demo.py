"""The embedded demo set: images, scoring rule, determinism and the disk cache.

The full default set is built once per session (``demo_table`` in conftest);
the cache and failure tests use tiny sets (one or two references at 64x80).
"""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import integrate, special, stats
from skimage.metrics import structural_similarity

from iqalib.data import demo
from iqalib.data.table import COLUMNS as CONTRACT_COLUMNS
from iqalib.errors import ConfigError, DataError

TINY = dict(references=["moon", "astronaut"], size=(64, 80), workers=1)
TINY_COUNT = 2 * (1 + 6 * 4)


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def details(table) -> pd.DataFrame:
    return table.frame


@pytest.fixture
def no_rebuild(monkeypatch):
    """Make any attempt to generate images fail, to prove a cached set is reused."""
    def fail(*args, **kwargs):
        raise AssertionError("the demo set was rebuilt")
    monkeypatch.setattr(demo, "_generate", fail)


# ------------------------------------------------------------ the rule's parts


@pytest.mark.parametrize("distortion", ["gaussian_blur", "gaussian_noise", "jpeg", "colour_cast"])
def test_ssim_equals_skimage_with_the_documented_settings(distortion):
    reference = demo.reference_image("coffee", (96, 128))
    distorted = demo.distort(reference, distortion, 3, np.random.default_rng(0))
    expected = structural_similarity(
        reference, distorted, channel_axis=-1, gaussian_weights=True, sigma=1.5,
        use_sample_covariance=False, data_range=255,
    )
    # Ours filters float32 images (scipy accumulates in float64): a few ulps off.
    assert demo.ssim(reference, distorted) == pytest.approx(expected, abs=1e-5)
    assert demo.ssim(reference, reference) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("quality", [50.0, 97.0, 100.0])
def test_ratings_are_clipped_normal_draws(quality):
    n = 100_000
    mos, std = demo.simulate_ratings(quality, np.random.default_rng(1), raters=n, sd=12.0)
    # Mean and sd of clip(q + e, 0, 100), e ~ N(0, 12^2), by quadrature.
    pdf = stats.norm(quality, 12.0).pdf
    lo, hi = demo.MOS_RANGE
    moment = [integrate.quad(lambda x: np.clip(x, lo, hi) ** k * pdf(x), -np.inf, np.inf)[0]
              for k in (1, 2)]
    sd_true = np.sqrt(moment[1] - moment[0] ** 2)
    assert abs(mos - moment[0]) < 5 * sd_true / np.sqrt(n)
    assert std == pytest.approx(sd_true, rel=0.02)  # sd of a sample sd: sd / sqrt(2n) = 0.2 %
    assert mos <= hi and mos >= lo


def test_distortions_change_the_image_and_keep_its_format():
    reference = demo.reference_image("chelsea", (64, 80))
    assert reference.shape == (64, 80, 3) and reference.dtype == np.uint8
    for name, levels in demo.DISTORTIONS.items():
        for level in range(1, len(levels) + 1):
            out = demo.distort(reference, name, level, np.random.default_rng(0))
            assert out.shape == reference.shape and out.dtype == np.uint8
            assert not np.array_equal(out, reference), (name, level)


def test_greyscale_references_become_rgb():
    camera = demo.reference_image("camera", (64, 80))
    assert camera.shape == (64, 80, 3)
    assert np.array_equal(camera[..., 0], camera[..., 1])
    assert np.array_equal(camera[..., 0], camera[..., 2])


@pytest.mark.parametrize(
    "call",
    [
        lambda: demo.distort(np.zeros((8, 8, 3), np.uint8), "posterize", 1),
        lambda: demo.distort(np.zeros((8, 8, 3), np.uint8), "jpeg", 5),
        lambda: demo.distort(np.zeros((8, 8, 3), np.uint8), "gaussian_noise", 1),
        lambda: demo.reference_image("lena"),
        lambda: demo.build_demo(references=["astronaut", "logo"]),
        lambda: demo.build_demo(references=["moon", "moon"]),
        lambda: demo.build_demo(size=(16, 80)),
        lambda: demo.build_demo(seed=-1),
    ],
)
def test_bad_parameters_are_config_errors(call):
    with pytest.raises(ConfigError):
        call()


# ------------------------------------------------------------ the full default set


def test_default_set_is_a_valid_synthetic_table(demo_table):
    table = demo_table
    full = details(table)
    n = len(demo.REFERENCES) * (1 + sum(len(v) for v in demo.DISTORTIONS.values()))
    assert len(table) == n == 300
    assert table.name == "demo" and table.synthetic and table.label == "demo (synthetic)"
    assert table.mos_range == (0.0, 100.0)
    assert "van der Walt" in table.citation and "SSIM" in table.citation
    # the contract columns first, then the demo's own columns, row for row
    assert list(table.frame.columns[: len(CONTRACT_COLUMNS)]) == list(CONTRACT_COLUMNS)
    assert set(demo.COLUMNS) <= set(full.columns)
    assert table.frame["split"].isna().all()
    # one group per reference, holding all of that reference's versions
    assert (table.frame["group"] == full["reference"]).all()
    assert table.frame.groupby("group").size().to_dict() == {r: n // 12 for r in demo.REFERENCES}
    manifest = json.loads((table.root / demo.MANIFEST).read_text())
    assert manifest["demo_version"] == demo.DEMO_VERSION
    assert (manifest["seed"], manifest["count"]) == (0, n)


def test_default_images_are_rgb_pngs_of_the_documented_size(demo_table):
    for path in demo_table.paths[::25]:
        with Image.open(path) as image:
            assert (image.format, image.mode, image.size) == ("PNG", "RGB", (384, 288))


def test_pristine_is_the_best_version_of_every_reference(demo_table):
    full = details(demo_table)
    pristine = full[full["distortion"] == demo.PRISTINE]
    assert (pristine["fidelity"] == 100).all() and (pristine["level"] == 0).all()
    distorted = full[full["distortion"] != demo.PRISTINE]
    assert distorted.groupby("reference")["fidelity"].max().lt(100).all()
    # The MOS carries rater noise: the order holds on average over references.
    cell_means = distorted.groupby(["distortion", "level"])["mos"].mean()
    assert pristine["mos"].mean() > cell_means.max()


def test_fidelity_falls_with_level_for_every_reference(demo_table):
    distorted = details(demo_table).query("distortion != @demo.PRISTINE")
    for (reference, distortion), rows in distorted.groupby(["reference", "distortion"]):
        fidelity = rows.sort_values("level")["fidelity"].to_numpy()
        assert np.all(np.diff(fidelity) < 0), (reference, distortion, fidelity)


def test_mos_falls_with_level_on_average(demo_table):
    distorted = details(demo_table).query("distortion != @demo.PRISTINE")
    means = distorted.groupby(["distortion", "level"])["mos"].mean().unstack("level")
    assert (means.diff(axis=1).iloc[:, 1:] < 0).all().all(), means


def test_mos_is_the_fidelity_plus_rater_noise(demo_table):
    full = details(demo_table)
    assert full["mos"].between(0, 100).all() and (full["std"] > 0).all()
    # Far from the scale ends clipping is negligible: MOS - q ~ N(0, 12^2 / 24).
    mid = full[full["fidelity"].between(40, 60)]
    error = mid["mos"] - mid["fidelity"]
    se = demo.RATER_SD / np.sqrt(demo.RATERS)
    assert len(mid) >= 20
    assert abs(error.mean()) < 4 * se / np.sqrt(len(mid))
    assert stats.chi2(len(mid)).cdf(((error / se) ** 2).sum()) < 0.9999
    # E[sample sd] = c4 * sd for normal ratings; its spread is sd * sqrt(1 - c4^2).
    k = demo.RATERS
    c4 = np.sqrt(2 / (k - 1)) * np.exp(special.gammaln(k / 2) - special.gammaln((k - 1) / 2))
    spread = demo.RATER_SD * np.sqrt(1 - c4**2) / np.sqrt(len(mid))
    assert abs(mid["std"].mean() - c4 * demo.RATER_SD) < 4 * spread


def test_scores_spread_over_the_whole_scale(demo_table):
    # As the module docstring promises: every fifth of 0-100 holds some images.
    assert np.histogram(demo_table.mos, bins=5, range=(0, 100))[0].min() > 0


# ------------------------------------------------------------ determinism


def test_a_reduced_build_repeats_the_full_one_byte_for_byte(demo_table, tmp_path):
    root = demo.build_demo(tmp_path / "astronaut", seed=0, references=["astronaut"], workers=1)
    again = pd.read_csv(root / demo.SCORES)
    full = pd.read_csv(demo_table.root / demo.SCORES)
    assert again.equals(full[full["reference"] == "astronaut"].reset_index(drop=True))
    for name in again["image"]:
        assert sha(root / name) == sha(demo_table.root / name), name


def test_same_seed_same_set_in_one_or_two_processes(tmp_path):
    one = demo.build_demo(tmp_path / "one", seed=5, **TINY)
    two = demo.build_demo(tmp_path / "two", seed=5, **{**TINY, "workers": 2})
    assert (one / demo.SCORES).read_bytes() == (two / demo.SCORES).read_bytes()
    names = pd.read_csv(one / demo.SCORES)["image"]
    assert len(names) == TINY_COUNT
    assert [sha(one / n) for n in names] == [sha(two / n) for n in names]


def test_another_seed_draws_new_noise_and_ratings_only(tmp_path):
    a = demo.build_demo(tmp_path / "a", seed=0, **TINY)
    b = demo.build_demo(tmp_path / "b", seed=1, **TINY)
    ta, tb = pd.read_csv(a / demo.SCORES), pd.read_csv(b / demo.SCORES)
    assert ta["image"].equals(tb["image"])
    noisy = ta["distortion"] == "gaussian_noise"
    for name, is_noisy in zip(ta["image"], noisy):
        assert (sha(a / name) != sha(b / name)) == is_noisy, name
    assert ta.loc[~noisy, "fidelity"].equals(tb.loc[~noisy, "fidelity"])
    assert (ta["mos"] != tb["mos"]).all()


# ------------------------------------------------------------ the disk cache


def test_default_root_follows_iqalib_cache(private_cache):
    assert demo.default_root() == private_cache / "demo-seed0"
    assert demo.default_root(7) == private_cache / "demo-seed7"
    reduced = demo.default_root(0, references=TINY["references"], size=TINY["size"])
    assert reduced.parent == private_cache and reduced.name.startswith("demo-seed0-")
    root = demo.build_demo(seed=3, **TINY)
    assert root == demo.default_root(3, references=TINY["references"], size=TINY["size"])
    assert (root / demo.MANIFEST).is_file()


def test_a_complete_build_is_reused(tmp_path, monkeypatch):
    root = demo.build_demo(tmp_path / "set", **TINY)
    stamp = (root / demo.MANIFEST).stat().st_mtime_ns
    calls = []
    real = demo._generate
    monkeypatch.setattr(demo, "_generate", lambda *a: calls.append(a) or real(*a))
    assert demo.build_demo(tmp_path / "set", **TINY) == root
    table = demo.load_demo(tmp_path / "set", references=TINY["references"], size=TINY["size"])
    assert calls == [] and (root / demo.MANIFEST).stat().st_mtime_ns == stamp
    assert len(table) == TINY_COUNT
    demo.build_demo(tmp_path / "set", force=True, **TINY)
    assert len(calls) == 1


def _no_manifest(root):
    (root / demo.MANIFEST).unlink()


def _other_version(root):
    manifest = json.loads((root / demo.MANIFEST).read_text())
    manifest["demo_version"] = demo.DEMO_VERSION - 1
    (root / demo.MANIFEST).write_text(json.dumps(manifest))


def _missing_image(root):
    next((root / demo.IMAGES).glob("*.png")).unlink()


def _no_table(root):
    (root / demo.SCORES).unlink()


@pytest.mark.parametrize("damage", [_no_manifest, _other_version, _missing_image, _no_table])
def test_an_incomplete_or_outdated_build_is_rebuilt(tmp_path, damage):
    root = demo.build_demo(tmp_path / "set", **TINY)
    reference = (root / demo.SCORES).read_bytes()
    damage(root)
    assert demo.build_demo(tmp_path / "set", **TINY) == root
    assert (root / demo.SCORES).read_bytes() == reference
    assert len(list((root / demo.IMAGES).glob("*.png"))) == TINY_COUNT
    assert json.loads((root / demo.MANIFEST).read_text())["demo_version"] == demo.DEMO_VERSION
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no scratch left behind


def test_a_killed_build_is_neither_used_nor_left_behind(tmp_path):
    root = tmp_path / "set"
    # A dead process's half-written scratch folder, complete-looking but unfinished.
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    for kind in ("building", "old"):
        scratch = tmp_path / (demo._scratch_prefix(root, kind, dead.pid) + "x")
        (scratch / demo.IMAGES).mkdir(parents=True)
        (scratch / demo.SCORES).write_text("image,mos\n")
    assert not demo._is_complete(root, demo._spec(0, TINY["references"], TINY["size"]))
    demo.build_demo(root, **TINY)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    assert len(pd.read_csv(root / demo.SCORES)) == TINY_COUNT


def test_a_running_build_keeps_its_scratch_folder(tmp_path):
    root = tmp_path / "set"
    alive = tmp_path / (demo._scratch_prefix(root, "building") + "x")  # this very process
    alive.mkdir()
    demo.build_demo(root, **TINY)
    assert alive.is_dir()


def test_a_folder_with_foreign_files_is_never_replaced(tmp_path, no_rebuild):
    root = tmp_path / "mine"
    root.mkdir()
    (root / "thesis.tex").write_text("keep me")
    with pytest.raises(DataError, match="thesis|does not write"):
        demo.build_demo(root, **TINY)
    assert (root / "thesis.tex").read_text() == "keep me"


def test_load_demo_builds_on_first_use(private_cache):
    table = demo.load_demo(seed=2, references=["moon"], size=(64, 80))
    assert table.root.parent == private_cache
    assert len(table) == 25 and set(table.frame["group"]) == {"moon"}
    assert all(p.is_file() for p in table.paths)

"""The gaze pipeline (nnunet_ext.gaze): heatmap and dense CRF on real Kvasir-SEG images with their real
GazeMedSeg fixations, checked against independent computations; level encoding; CSV formats and edge cases;
the ``nnunet_ext gaze`` command."""
import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import require_shared
from nnunet_ext import gaze
from nnunet_ext.cli import main

SIGMA_KVASIR = 70.0


@pytest.fixture(scope="module")
def kvasir(shared_data):
    """The 5 smallest Kvasir-SEG images (by CSV area, for speed) with fixations, CSV size, image and mask."""
    csv_path = shared_data / "GazeMedSeg" / "kvasir_fixation.csv"
    folder = shared_data / "Kvasir-SEG"
    if not csv_path.is_file() or not (folder / "images").is_dir():
        pytest.skip(f"real-data test skipped: {csv_path} or {folder}/images is absent")
    fixations, sizes = gaze.read_gaze_csv(str(csv_path))
    keys = sorted(fixations, key=lambda k: (sizes[k][0] * sizes[k][1], k))[:5]
    cases = []
    for key in keys:
        image = np.array(Image.open(folder / "images" / f"{key}.jpg").convert("RGB"))
        mask = np.array(Image.open(folder / "masks" / f"{key}.jpg").convert("L")) >= 128
        cases.append({"key": key, "fixations": fixations[key], "size": sizes[key], "image": image, "mask": mask})
    return {"csv": csv_path, "folder": folder, "cases": cases}


def direct_heatmap(fixations, height, width, sigma):
    """The heatmap as an explicit sum of one truncated, normalised Gaussian per fixation (and per mirror image
    of the fixation, which is what a half-sample-symmetric 'reflect' boundary amounts to), min-max normalised."""
    radius = int(4 * sigma + 0.5)
    norm = np.exp(-np.arange(-radius, radius + 1) ** 2 / (2 * sigma ** 2)).sum()

    def profile(position, n):
        pixels = np.arange(n)
        total = np.zeros(n)
        repeats = radius // n + 2
        for m in range(-repeats, repeats + 1):
            for image_position in (position + 2 * n * m, -1 - position + 2 * n * m):
                d = pixels - image_position
                total += np.where(np.abs(d) <= radius, np.exp(-d ** 2 / (2 * sigma ** 2)), 0.0)
        return total / norm

    heat = np.zeros((height, width))
    for x, y, duration in fixations:
        row, column = min(int(np.floor(y * height)), height - 1), min(int(np.floor(x * width)), width - 1)
        heat += duration * np.outer(profile(row, height), profile(column, width))
    return (heat - heat.min()) / (heat.max() - heat.min())


def brute_force_mean_field(image, heatmap, iterations, sxy=80.0, srgb=13.0, compat=1.0):
    """Mean-field inference of the 2-label dense CRF with an exact (all pairs) Gaussian bilateral kernel,
    symmetric normalisation and Potts compatibility, for a small crop."""
    height, width = heatmap.shape
    rows, columns = np.mgrid[:height, :width]
    features = np.concatenate([np.stack([columns, rows], -1) / sxy, image.astype(np.float64) / srgb], -1)
    features = features.reshape(-1, 5)
    squared = (features ** 2).sum(1)
    kernel = np.exp(-np.maximum(squared[:, None] + squared[None, :] - 2 * features @ features.T, 0) / 2)
    norm = 1 / np.sqrt(kernel.sum(1))
    unary = -np.log(np.clip(np.stack([1 - heatmap, heatmap]).reshape(2, -1), 1e-5, 1))

    def softmax(a):
        e = np.exp(a - a.max(0))
        return e / e.sum(0)

    q = softmax(-unary)
    for _ in range(iterations):
        message = norm * (kernel @ (norm * q).T).T
        q = softmax(-unary + compat * message)
    return q[1].reshape(height, width)


# ---------------------------------------------------------------------------------------------- real data


def test_heatmap_equals_direct_sum_of_gaussians_on_real_fixations(kvasir):
    for case in kvasir["cases"]:
        height, width = case["size"]
        assert case["image"].shape[:2] == (height, width)
        heat = gaze.gaze_heatmap(case["fixations"], height, width, SIGMA_KVASIR)
        assert heat.dtype == np.float32 and heat.shape == (height, width)
        assert heat.min() == 0 and heat.max() == 1
        np.testing.assert_allclose(heat, direct_heatmap(case["fixations"], height, width, SIGMA_KVASIR), atol=2e-6)


def test_crf_properties_on_real_images(kvasir):
    dice_heat, dice_crf = [], []
    for case in kvasir["cases"]:
        heat = gaze.gaze_heatmap(case["fixations"], *case["size"], SIGMA_KVASIR)
        crf = gaze.crf_refine(case["image"], heat)
        assert crf.dtype == np.float32 and crf.shape == heat.shape
        assert np.isfinite(crf).all() and crf.min() >= 0 and crf.max() <= 1
        np.testing.assert_array_equal(crf, gaze.crf_refine(case["image"], heat))
        assert np.abs(crf - heat).mean() > 0.01
        dice_heat.append(gaze.overlap(heat >= 0.5, case["mask"])["Dice"])
        dice_crf.append(gaze.overlap(crf >= 0.5, case["mask"])["Dice"])
    print(f"mean Dice over {len(dice_heat)} images: heatmap {np.mean(dice_heat):.4f}, CRF {np.mean(dice_crf):.4f}")
    assert np.mean(dice_crf) > np.mean(dice_heat)


def test_crf_matches_exact_mean_field_on_real_crops(kvasir):
    """pydensecrf filters with a permutohedral lattice (an approximation); an exact all-pairs mean field on
    56 x 56 crops around the heatmap's 0.4 contour must agree to well within the CRF's own effect. (This pins
    the unary, the colour kernel, the normalisation, the Potts sign and weight and the iterations; a crop is
    too small to resolve sxy = 80.) With compat 0 the CRF must return the clipped heatmap itself."""
    size = 56
    for case in kvasir["cases"][:3]:
        heat = gaze.gaze_heatmap(case["fixations"], *case["size"], SIGMA_KVASIR)
        row, column = np.unravel_index(np.argmin(np.abs(heat - 0.4)), heat.shape)
        top = int(np.clip(row - size // 2, 0, heat.shape[0] - size))
        left = int(np.clip(column - size // 2, 0, heat.shape[1] - size))
        crop = (slice(top, top + size), slice(left, left + size))
        image_crop, heat_crop = case["image"][crop], heat[crop]
        for iterations in (1, 10):
            ours = gaze.crf_refine(image_crop, heat_crop, iterations=iterations)
            exact = brute_force_mean_field(image_crop, heat_crop.astype(np.float64), iterations)
            difference = np.abs(ours - exact)
            assert difference.mean() < 0.004 and difference.max() < 0.03
            assert np.abs(exact - heat_crop).mean() > 5 * difference.mean()
        no_pairwise = gaze.crf_refine(image_crop, heat_crop, compat=0.0, iterations=3)
        clipped = np.clip(heat_crop.astype(np.float64), 1e-5, 1)
        np.testing.assert_allclose(no_pairwise, clipped / (clipped + np.clip(1 - heat_crop, 1e-5, 1)), atol=1e-6)


def test_both_nci_isbi_csv_formats_give_the_same_fixations():
    folder = require_shared("GazeMedSeg/nci-isbi_fixation.csv", "GazeMedSeg/nci-isbi_fixation_old.csv") / "GazeMedSeg"
    current, sizes = gaze.read_gaze_csv(str(folder / "nci-isbi_fixation.csv"))
    old, old_sizes = gaze.read_gaze_csv(str(folder / "nci-isbi_fixation_old.csv"))
    assert old_sizes == {} and len(sizes) == len(current) == 789
    assert sorted(old) == sorted(current)
    first = "Prostate3T-01-0027_14"
    assert current[first].shape == old[first].shape and current[first].shape[1] == 3
    np.testing.assert_allclose(old[first], current[first], rtol=1e-12)
    assert current[first][0].tolist() == pytest.approx([0.4846041666666668, 0.4931510416666668, 770])
    for key in current:
        np.testing.assert_allclose(old[key], current[key], rtol=1e-12, err_msg=key)


def test_gaze_command_on_real_images(kvasir, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for case in kvasir["cases"]:
        (images / f"{case['key']}.jpg").symlink_to(kvasir["folder"] / "images" / f"{case['key']}.jpg")
        (masks / f"{case['key']}.jpg").symlink_to(kvasir["folder"] / "masks" / f"{case['key']}.jpg")
    out = tmp_path / "out"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        main(["gaze", "--csv", str(kvasir["csv"]), "--images", str(images), "--masks", str(masks), "-o", str(out),
              "-np", "2", "--previews", "2"])
    report = json.loads((out / "quality_report.json").read_text())
    keys = sorted(case["key"] for case in kvasir["cases"])
    assert sorted(report["per_image"]) == keys
    assert report["settings"]["sigma"] == 70 and report["settings"]["thresholds"] == [0.3, 0.5]
    assert ">= 0.5" in report["binarisation"]
    assert len(list((out / "previews").iterdir())) == 2
    for name in ("heatmap", "crf", "level_1", "level_2"):
        for metric in ("Dice", "IoU", "fraction"):
            assert report["mean"][name][metric] == pytest.approx(
                np.mean([report["per_image"][k][name][metric] for k in keys]))
    assert report["mean"]["crf"]["Dice"] > report["mean"]["heatmap"]["Dice"]
    assert report["mean"]["level_2"]["Dice"] == pytest.approx(report["mean"]["crf"]["Dice"])
    for case in kvasir["cases"]:
        heat = gaze.gaze_heatmap(case["fixations"], *case["size"], SIGMA_KVASIR)
        crf = gaze.crf_refine(case["image"], heat)
        stored_heat = np.array(Image.open(out / "heatmaps" / f"{case['key']}.png")) / 65535
        stored_crf = np.array(Image.open(out / "crf" / f"{case['key']}.png")) / 65535
        np.testing.assert_allclose(stored_heat, heat, atol=1 / 65535)
        np.testing.assert_allclose(stored_crf, crf, atol=1 / 65535)
        levels = np.array(Image.open(out / "levels" / f"{case['key']}.png"))
        np.testing.assert_array_equal(levels, gaze.level_masks(crf, [0.5, 0.3]))
        scores = report["per_image"][case["key"]]
        assert scores["crf"]["Dice"] == pytest.approx(gaze.overlap(crf >= 0.5, case["mask"])["Dice"])
        assert scores["level_1"]["IoU"] == pytest.approx(gaze.overlap(crf >= 0.3, case["mask"])["IoU"])
    table = printed.getvalue()
    assert "mean" in table and all(k in table for k in keys) and "images/s" in table


# ---------------------------------------------------------------------------------------------- levels


def test_level_encoding_round_trip():
    rng = np.random.default_rng(0)
    soft = rng.random((37, 41)).astype(np.float32)
    soft[0, :6] = [0.3, 0.5, 0.2999, 0.4999, 1.0, 0.0]
    for thresholds in ([0.5, 0.3], [0.5, 0.3, 0.35, 0.4, 0.45], [0.2, 0.4]):
        ordinal = gaze.level_masks(soft, thresholds)
        ordered = sorted(thresholds)
        assert ordinal.dtype == np.uint8 and set(np.unique(ordinal)) <= set(range(len(thresholds) + 1))
        np.testing.assert_array_equal(ordinal, gaze.level_masks(soft, thresholds[::-1]))
        masks = [gaze.decode_levels(ordinal, k) for k in range(1, len(thresholds) + 1)]
        for k, mask in enumerate(masks):
            np.testing.assert_array_equal(mask, soft >= ordered[k])
        for looser, stricter in zip(masks, masks[1:]):
            assert (stricter <= looser).all() and stricter.sum() < looser.sum()
        np.testing.assert_array_equal(np.sum(masks, axis=0), ordinal)
        np.testing.assert_array_equal(gaze.level_masks(np.sum(masks, axis=0) / len(thresholds),
                                                       [(k + 0.5) / len(thresholds) for k in range(len(thresholds))]),
                                      ordinal)
    assert gaze.level_masks(soft, [0.5, 0.3])[0, :6].tolist() == [1, 2, 0, 1, 2, 0]
    assert not gaze.decode_levels(gaze.level_masks(soft, [0.5, 0.3]), 3).any()


@pytest.mark.parametrize("thresholds", [[], [0.3, 0.3], [0.0, 0.5], [0.5, 1.2]])
def test_bad_thresholds_are_refused(thresholds):
    with pytest.raises(ValueError, match="threshold"):
        gaze.level_masks(np.zeros((2, 2)), thresholds)


def test_levels_are_numbered_from_one():
    with pytest.raises(ValueError, match="numbered from 1"):
        gaze.decode_levels(np.zeros((2, 2), np.uint8), 0)


def test_presets_and_overrides():
    assert gaze.resolve_settings("kvasir") == (70.0, (0.3, 0.5))
    assert gaze.resolve_settings("nci_isbi") == (50.0, (0.2, 0.4))
    assert gaze.resolve_settings("kvasir", levels=5) == (70.0, (0.3, 0.35, 0.4, 0.45, 0.5))
    assert gaze.resolve_settings("kvasir", sigma=30, thresholds=[0.6, 0.2]) == (30.0, (0.2, 0.6))
    with pytest.raises(ValueError, match="thresholds for \\[2\\] levels"):
        gaze.resolve_settings("nci_isbi", levels=3)
    with pytest.raises(ValueError, match="disagrees"):
        gaze.resolve_settings("kvasir", thresholds=[0.3, 0.5], levels=3)


# ---------------------------------------------------------------------------------------------- edge cases

CURRENT_HEADER = ("IMAGE,CURRENT_FIX_INDEX,CURRENT_FIX_X,CURRENT_FIX_Y,CURRENT_FIX_DURATION,CURRENT_FIX_PUPIL,"
                  "CURRENT_FIX_START,IMAGE_HEIGHT,IMAGE_WIDTH")


def write_csv(path: Path, rows, header=CURRENT_HEADER) -> Path:
    path.write_text("\n".join([header] + rows) + "\n")
    return path


def synthetic_image(folder: Path, name: str, height: int, width: int, seed: int = 0) -> None:
    """A polyp-like bright disc on a noisy background."""
    rng = np.random.default_rng(seed)
    rows, columns = np.mgrid[:height, :width]
    disc = (rows - height / 2) ** 2 + (columns - width / 2) ** 2 < (min(height, width) / 4) ** 2
    image = np.where(disc[..., None], 200, 60) + rng.integers(0, 20, (height, width, 3))
    Image.fromarray(image.astype(np.uint8)).save(folder / name)
    mask_folder = folder.parent / "masks"
    mask_folder.mkdir(exist_ok=True)
    Image.fromarray((disc * 255).astype(np.uint8)).save(mask_folder / (Path(name).stem + ".png"))


def test_fixations_at_the_image_border_and_a_single_fixation():
    height, width = 40, 60
    corner = gaze.gaze_heatmap(np.array([[0.0, 0.0, 300.0]]), height, width, sigma=3)
    assert np.unravel_index(np.argmax(corner), corner.shape) == (0, 0)
    assert corner[0, -1] < 1e-3 and corner[-1, 0] < 1e-3
    far = gaze.gaze_heatmap(np.array([[1.0, 1.0, 300.0]]), height, width, sigma=3)
    assert np.unravel_index(np.argmax(far), far.shape) == (height - 1, width - 1)
    single = gaze.gaze_heatmap(np.array([[0.5, 0.25, 120.0]]), height, width, sigma=5)
    assert single.max() == 1 and single.min() == 0
    assert np.unravel_index(np.argmax(single), single.shape) == (10, 30)
    np.testing.assert_allclose(single, direct_heatmap([[0.5, 0.25, 120.0]], height, width, 5), atol=2e-6)
    np.testing.assert_allclose(single[10, 30 - 7], single[10, 30 + 7], rtol=1e-6)
    with pytest.raises(ValueError, match="constant"):
        gaze.gaze_heatmap(np.array([[0.5, 0.5, 0.0]]), height, width, sigma=5)
    with pytest.raises(ValueError, match="non-empty"):
        gaze.gaze_heatmap(np.zeros((0, 3)), height, width, sigma=5)


def test_synthetic_csv_with_edge_cases(tmp_path):
    csv_path = write_csv(tmp_path / "gaze.csv", [
        "edge.jpg,1,0.0,0.0,200,1000,7,40.0,60.0",
        "edge.jpg,3,1.0,1.0,200,1000,500,40.0,60.0",
        "edge.jpg,2,0.5,0.5,900,1000,300,40.0,60.0",
        "single.jpg,1,0.5,0.5,400,1000,7,30.0,30.0",
    ])
    fixations, sizes = gaze.read_gaze_csv(str(csv_path))
    assert sizes == {"edge": (40, 60), "single": (30, 30)}
    np.testing.assert_array_equal(fixations["edge"][:, 2], [200, 900, 200])
    assert fixations["single"].shape == (1, 3)

    images = tmp_path / "images"
    images.mkdir()
    synthetic_image(images, "edge.jpg", 40, 60)
    synthetic_image(images, "single.png", 30, 30, seed=1)
    report = gaze.run_pipeline(str(csv_path), str(images), str(tmp_path / "out"), masks_dir=str(tmp_path / "masks"),
                               num_processes=0, previews=1, sigma=8)
    assert sorted(report["per_image"]) == ["edge", "single"]
    levels = np.array(Image.open(tmp_path / "out" / "levels" / "single.png"))
    assert levels.shape == (30, 30) and levels[15, 15] == 2
    assert len(list((tmp_path / "out" / "previews").iterdir())) == 1

    synthetic_image(images, "stranger.jpg", 30, 30)
    with pytest.raises(ValueError, match="no fixations for 1 image.*stranger.jpg"):
        gaze.run_pipeline(str(csv_path), str(images), str(tmp_path / "out2"), num_processes=0)
    (images / "stranger.jpg").unlink()

    synthetic_image(images, "single.png", 31, 30)
    with pytest.raises(ValueError, match=r"single.png: the image is 31 x 30 .* gaze CSV gives 30 x 30"):
        gaze.run_pipeline(str(csv_path), str(images), str(tmp_path / "out3"), num_processes=0)


@pytest.mark.parametrize("row, message", [
    ("a.jpg,1,1.2,0.5,100,1,1,10.0,10.0", r"line 2 \(image 'a.jpg'\).*outside the image"),
    ("a.jpg,1,0.5,x,100,1,1,10.0,10.0", r"line 2 .*non-numeric"),
    ("a.jpg,1,0.5,0.5,-3,1,1,10.0,10.0", r"line 2 .*negative"),
    ("a.jpg,1,0.5,0.5,100,1,1,10.5,10.0", r"line 2 .*not a positive integer"),
])
def test_bad_csv_rows_name_file_and_line(tmp_path, row, message):
    csv_path = write_csv(tmp_path / "bad.csv", [row])
    with pytest.raises(ValueError, match=message) as error:
        gaze.read_gaze_csv(str(csv_path))
    assert str(csv_path) in str(error.value)


def test_sizes_that_disagree_within_an_image_and_missing_columns(tmp_path):
    csv_path = write_csv(tmp_path / "sizes.csv", ["a.jpg,1,0.5,0.5,100,1,1,10.0,10.0",
                                                   "a.jpg,2,0.5,0.5,100,1,9,12.0,10.0"])
    with pytest.raises(ValueError, match=r"line 3 .*\(12, 10\) differs from \(10, 10\)"):
        gaze.read_gaze_csv(str(csv_path))
    with pytest.raises(ValueError, match="missing column"):
        gaze.read_gaze_csv(str(write_csv(tmp_path / "cols.csv", ["a.jpg,0.5"], header="IMAGE,CURRENT_FIX_X")))


def test_old_format_without_sizes_uses_the_image_size(tmp_path):
    csv_path = write_csv(tmp_path / "old.csv", ["b.jpg,s1,1,0.25,0.75,300,1000,7", "b.jpg,s1,2,0.5,0.5,100,1000,400"],
                         header="images,RECORDING_SESSION_LABEL,CURRENT_FIX_INDEX,CURRENT_FIX_X,CURRENT_FIX_Y,"
                                "CURRENT_FIX_DURATION,CURRENT_FIX_PUPIL,CURRENT_FIX_START")
    images = tmp_path / "images"
    images.mkdir()
    synthetic_image(images, "b.jpg", 32, 48)
    report = gaze.run_pipeline(str(csv_path), str(images), str(tmp_path / "out"), preset="nci_isbi", sigma=6,
                               num_processes=0, previews=0)
    assert report["settings"]["thresholds"] == [0.2, 0.4] and "Dice" not in report["mean"]["crf"]
    heat = np.array(Image.open(tmp_path / "out" / "heatmaps" / "b.png")) / 65535
    expected = direct_heatmap([[0.25, 0.75, 300], [0.5, 0.5, 100]], 32, 48, 6)
    assert heat.shape == (32, 48)
    np.testing.assert_allclose(heat, expected, atol=1 / 65535)


def test_missing_pydensecrf_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(ImportError, match=r"pydensecrf2.*pip install nnunet_ext\[gaze\]"):
        gaze.crf_refine(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 4)))


def test_zero_one_masks_are_read_as_such_only_from_lossless_files(tmp_path):
    """A PNG of 0/1 is a 0/1 mask; in a JPEG, values 0 and 1 are compression noise of an all-background mask."""
    values = np.zeros((32, 32), np.uint8)
    values[8:20, 8:20] = 1
    Image.fromarray(values).save(tmp_path / "mask.png")
    np.testing.assert_array_equal(gaze.read_mask(str(tmp_path / "mask.png")), values == 1)
    Image.fromarray(values).save(tmp_path / "mask.jpg", quality=75)
    noisy = np.asarray(Image.open(tmp_path / "mask.jpg").convert("L"))
    assert noisy.max() <= 1 and (noisy == 1).any()
    assert not gaze.read_mask(str(tmp_path / "mask.jpg")).any()
    Image.fromarray(values * 255).save(tmp_path / "mask_255.jpg", quality=75)
    assert (gaze.read_mask(str(tmp_path / "mask_255.jpg")) == (values == 1)).mean() > 0.99


CRF_DICE = {"cju0qkwl35piu0993l0dewei2": (0.883770, 0.845481), "cju0qoxqj9q6s0835b43399p4": (0.695461, 0.323992),
            "cju0qx73cjw570799j4n5cjze": (0.866172, 0.863039), "cju0roawvklrq0799vmjorwfv": (0.678539, 0.721472),
            "cju0rx1idathl0835detmsp84": (0.737279, 0.844105), "cju0s2a9ekvms080138tjjpxr": (0.865325, 0.905191)}
"""Dice of the Kvasir preset's pseudo-masks (σ 70 px, dense CRF, levels CRF ≥ 0.3 and ≥ 0.5) against the true
masks of the first six Kvasir-SEG images (sorted ids), recorded when this test was written."""


def test_crf_pseudo_mask_quality_on_real_kvasir_images_is_unchanged():
    """A change of the heatmap, the CRF or the thresholds that changes pseudo-mask quality fails here."""
    shared = require_shared("GazeMedSeg/kvasir_fixation.csv", "Kvasir-SEG/images", "Kvasir-SEG/masks")
    fixations, sizes = gaze.read_gaze_csv(str(shared / "GazeMedSeg" / "kvasir_fixation.csv"))
    sigma, thresholds = gaze.resolve_settings("kvasir", None, None, None)
    assert (sigma, thresholds) == (70.0, (0.3, 0.5))
    for key, expected in CRF_DICE.items():
        image = gaze.read_rgb(str(shared / "Kvasir-SEG" / "images" / f"{key}.jpg"))
        truth = gaze.read_mask(str(shared / "Kvasir-SEG" / "masks" / f"{key}.jpg"))
        levels = gaze.pseudo_label(image, fixations[key], sigma, thresholds, expected_size=sizes[key], name=key).levels
        dice = [gaze.overlap(gaze.decode_levels(levels, k), truth)["Dice"] for k in (1, 2)]
        assert dice == pytest.approx(expected, abs=2e-3), key

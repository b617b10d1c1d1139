"""Tests of ``nnunet_ext.evaluation``: metrics against hand-computed values and an independent brute-force
computation (all pairwise surface distances), the empty-mask rule, the folder evaluation and its JSON, and the
``nnunet_ext evaluate`` command end to end."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage
from scipy.spatial.distance import cdist

from nnunet_ext import evaluation
from nnunet_ext.cli import main
from nnunet_ext.evaluation import EMPTY_MASK_RULE, binary_metrics, evaluate_folders, surface_distances


def write_nifti(path: Path, array: np.ndarray, spacing_zyx=(1.0, 1.0, 1.0)) -> None:
    """Write ``array`` (numpy z, y, x order) with ``spacing_zyx`` in the same order."""
    image = sitk.GetImageFromArray(array.astype(np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    sitk.WriteImage(image, str(path))


def brute_force_surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels written out: in the mask with at least one face neighbour outside it (or off the image)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = tuple(slice(1, -1) for _ in range(mask.ndim))
    all_neighbours_inside = np.ones_like(mask)
    for axis in range(mask.ndim):
        for shift in (-1, 1):
            all_neighbours_inside &= np.roll(padded, shift, axis=axis)[inner]
    return mask & ~all_neighbours_inside


def brute_force_metrics(pred: np.ndarray, ref: np.ndarray, spacing) -> dict:
    """Every metric from all pairwise distances between the surface voxels' coordinates scaled by spacing."""
    pred_points = np.argwhere(brute_force_surface(pred)) * np.asarray(spacing)
    ref_points = np.argwhere(brute_force_surface(ref)) * np.asarray(spacing)
    pairwise = cdist(pred_points, ref_points)
    pred_to_ref, ref_to_pred = pairwise.min(axis=1), pairwise.min(axis=0)
    intersection = np.count_nonzero(pred & ref)
    return {"Dice": 2 * intersection / (pred.sum() + ref.sum()),
            "Jaccard": intersection / np.count_nonzero(pred | ref),
            "HD95": np.percentile(np.concatenate([pred_to_ref, ref_to_pred]), 95),
            "ASD": pred_to_ref.mean(), "ASSD": (pred_to_ref.mean() + ref_to_pred.mean()) / 2,
            "pred_to_ref": pred_to_ref, "ref_to_pred": ref_to_pred}


def random_blob(rng: np.random.Generator, shape, threshold: float = 0.15) -> np.ndarray:
    mask = ndimage.gaussian_filter(rng.normal(size=shape), sigma=1.5) > threshold
    assert mask.any()
    return mask


def cube(shape, start, size) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[tuple(slice(s, s + size) for s in start)] = True
    return mask


def assert_metrics_close(got: dict, expected: dict) -> None:
    for name in ("Dice", "Jaccard", "HD95", "ASD", "ASSD"):
        assert got[name] == pytest.approx(expected[name], rel=1e-9, abs=1e-12), name


# ---------------------------------------------------------------- metrics by hand

def test_disjoint_cubes_by_hand():
    """3×3×3 cubes 5 voxels apart along axis 0. Each cube's surface is its 26 voxels without the centre; the
    nearest partner of a voxel lies straight across on the facing side, 3, 4 or 5 voxels away (9, 8 and 9
    surface voxels), so ASD = (9·3 + 8·4 + 9·5)/26 = 4 voxels, HD95 = 5 voxels, both scaled by axis 0's spacing."""
    spacing = (2.5, 0.7, 1.1)
    ref = cube((11, 5, 5), (1, 1, 1), 3)
    pred = cube((11, 5, 5), (6, 1, 1), 3)
    metrics = binary_metrics(pred, ref, spacing)
    assert metrics["Dice"] == 0 and metrics["Jaccard"] == 0
    assert metrics["HD95"] == pytest.approx(5 * 2.5)
    assert metrics["ASD"] == pytest.approx(4 * 2.5)
    assert metrics["ASSD"] == pytest.approx(4 * 2.5)
    assert (metrics["n_pred"], metrics["n_ref"]) == (27, 27)
    expected = np.sort([3 * 2.5] * 9 + [4 * 2.5] * 8 + [5 * 2.5] * 9)
    for distances in surface_distances(pred, ref, spacing):
        np.testing.assert_allclose(np.sort(distances), expected)


def test_overlapping_cubes_overlap_by_hand():
    """4×4×4 cubes shifted by 2 voxels: 32 shared voxels, so Dice = 64/128 and Jaccard = 32/96."""
    ref = cube((10, 8, 8), (2, 2, 2), 4)
    pred = cube((10, 8, 8), (4, 2, 2), 4)
    metrics = binary_metrics(pred, ref, (1.0, 1.0, 1.0))
    assert metrics["Dice"] == pytest.approx(0.5)
    assert metrics["Jaccard"] == pytest.approx(1 / 3)
    assert metrics["HD95"] == pytest.approx(2.0)


def test_single_voxels_anisotropic_by_hand():
    """Two single voxels 3 rows and 4 columns apart: 5 voxels, or √(6² + 2²) mm with spacing (2, 0.5)."""
    ref = np.zeros((8, 8), dtype=bool)
    pred = np.zeros((8, 8), dtype=bool)
    ref[1, 1] = pred[4, 5] = True
    for spacing, distance in (((1.0, 1.0), 5.0), ((2.0, 0.5), math.sqrt(40))):
        metrics = binary_metrics(pred, ref, spacing)
        assert metrics["HD95"] == metrics["ASD"] == metrics["ASSD"] == pytest.approx(distance)


def test_identical_masks():
    mask = cube((6, 7, 8), (1, 2, 3), 3)
    metrics = binary_metrics(mask, mask, (0.5, 1.0, 3.0))
    assert metrics == {"Dice": 1.0, "Jaccard": 1.0, "HD95": 0.0, "ASD": 0.0, "ASSD": 0.0, "n_pred": 27, "n_ref": 27}


def test_asd_is_directional():
    """ASD runs from the prediction's surface to the reference's: a prediction inside a larger reference is
    close to the reference surface only on its own side."""
    ref = cube((12, 12), (0, 0), 9)
    pred = cube((12, 12), (0, 0), 3)
    forward, backward = binary_metrics(pred, ref), binary_metrics(ref, pred)
    assert forward["ASD"] != pytest.approx(backward["ASD"])
    assert forward["ASSD"] == pytest.approx(backward["ASSD"])
    assert forward["ASSD"] == pytest.approx((forward["ASD"] + backward["ASD"]) / 2)


# ---------------------------------------------------------------- metrics against brute force

@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("shape,spacing", [((23, 31), (0.6, 2.3)), ((9, 17, 13), (3.0, 0.45, 1.2))])
def test_random_blobs_match_brute_force(seed, shape, spacing):
    rng = np.random.default_rng(seed)
    pred, ref = random_blob(rng, shape), random_blob(rng, shape)
    expected = brute_force_metrics(pred, ref, spacing)
    assert_metrics_close(binary_metrics(pred, ref, spacing), expected)
    pred_to_ref, ref_to_pred = surface_distances(pred, ref, spacing)
    np.testing.assert_allclose(np.sort(pred_to_ref), np.sort(expected["pred_to_ref"]), rtol=1e-12)
    np.testing.assert_allclose(np.sort(ref_to_pred), np.sort(expected["ref_to_pred"]), rtol=1e-12)


@pytest.mark.parametrize("corner", [(0, 0, 0), (50, 44, 20), (20, 10, 8)])
def test_small_objects_in_large_volume_match_brute_force(corner):
    """The crop to the union bounding box changes nothing, also for objects touching the image border."""
    rng = np.random.default_rng(7)
    shape = (60, 54, 30)
    pred, ref = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    box = tuple(slice(c, c + 10) for c in corner)
    pred[box], ref[box] = random_blob(rng, (10, 10, 10), 0.0), random_blob(rng, (10, 10, 10), 0.0)
    spacing = (0.8, 1.7, 4.0)
    assert_metrics_close(binary_metrics(pred, ref, spacing), brute_force_metrics(pred, ref, spacing))


def test_matches_medpy():
    """medpy's hd95 and asd give the same values; ASSD is medpy ≤ 0.4's mean of the two ASDs."""
    medpy_binary = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(3)
    for shape, spacing in (((30, 26), (1.3, 0.4)), ((12, 15, 14), (2.5, 0.8, 0.8))):
        pred, ref = random_blob(rng, shape), random_blob(rng, shape)
        metrics = binary_metrics(pred, ref, spacing)
        asd_forward, asd_backward = medpy_binary.asd(pred, ref, spacing), medpy_binary.asd(ref, pred, spacing)
        assert_metrics_close(metrics, {"Dice": medpy_binary.dc(pred, ref), "Jaccard": medpy_binary.jc(pred, ref),
                                       "HD95": medpy_binary.hd95(pred, ref, spacing), "ASD": asd_forward,
                                       "ASSD": (asd_forward + asd_backward) / 2})


# ---------------------------------------------------------------- empty masks

def test_both_empty():
    empty = np.zeros((5, 6, 7), dtype=bool)
    assert binary_metrics(empty, empty, (1.0, 2.0, 3.0)) == {
        "Dice": 1.0, "Jaccard": 1.0, "HD95": 0.0, "ASD": 0.0, "ASSD": 0.0, "n_pred": 0, "n_ref": 0}


@pytest.mark.parametrize("empty_side", ["pred", "ref"])
def test_one_empty_gives_zero_overlap_and_undefined_distances(empty_side):
    empty, full = np.zeros((5, 6, 7), dtype=bool), cube((5, 6, 7), (1, 1, 1), 2)
    pred, ref = (empty, full) if empty_side == "pred" else (full, empty)
    metrics = binary_metrics(pred, ref, (1.0, 2.0, 3.0))
    assert metrics["Dice"] == 0 and metrics["Jaccard"] == 0
    assert all(math.isnan(metrics[m]) for m in ("HD95", "ASD", "ASSD"))
    assert (metrics["n_pred"], metrics["n_ref"]) == ((0, 8) if empty_side == "pred" else (8, 0))
    with pytest.raises(ValueError, match="empty"):
        surface_distances(pred, ref, (1.0, 2.0, 3.0))


def test_rule_is_in_the_module_docstring():
    assert EMPTY_MASK_RULE in " ".join(evaluation.__doc__.split())


def test_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        binary_metrics(np.ones((3, 3)), np.ones((3, 4)))
    with pytest.raises(ValueError, match="Spacing"):
        binary_metrics(np.ones((3, 3)), np.ones((3, 3)), (1.0, 1.0, 1.0))


# ---------------------------------------------------------------- folders, JSON and command

SPACING = (2.5, 0.75, 1.25)


def make_folders(tmp_path: Path, cases: dict) -> tuple:
    """``cases``: file name → (reference array, prediction array); written as NIfTI with SPACING."""
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    for name, (ref, pred) in cases.items():
        write_nifti(ref_dir / name, ref, SPACING)
        write_nifti(pred_dir / name, pred, SPACING)
    return ref_dir, pred_dir


def two_label_cases() -> dict:
    """case_a: label 1 only, predicted 5 voxels off; case_b: labels 1 and 2, label 2 not predicted at all;
    the prediction of case_b also holds a label 3 that no reference has."""
    shape = (11, 5, 5)
    ref_a = cube(shape, (1, 1, 1), 3).astype(np.uint8)
    pred_a = cube(shape, (6, 1, 1), 3).astype(np.uint8)
    ref_b = ref_a.copy()
    ref_b[8:10, 1:3, 1:3] = 2
    pred_b = ref_a.copy()
    pred_b[0, 0, 0] = 3
    return {"case_a.nii.gz": (ref_a, pred_a), "case_b.nii.gz": (ref_b, pred_b)}


def test_summary_json_shape_and_nan_as_null(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    output = tmp_path / "out" / "summary.json"
    summary = evaluate_folders(str(ref_dir), str(pred_dir), output_file=str(output), num_processes=1)

    def refuse(constant):
        raise AssertionError(f"{constant} in JSON")

    written = json.loads(output.read_text(), parse_constant=refuse)
    assert set(written) == {"metric_per_case", "mean", "foreground_mean", "units", "empty_mask_rule"}
    assert written["units"] == "mm" and written["empty_mask_rule"] == EMPTY_MASK_RULE
    assert set(written["mean"]) == {"1", "2"}, "default labels: the union of the references' labels"
    metric_keys = {"Dice", "Jaccard", "HD95", "ASD", "ASSD", "n_pred", "n_ref"}
    case_a, case_b = written["metric_per_case"]
    assert case_a["prediction_file"] == str(pred_dir / "case_a.nii.gz")
    assert case_a["reference_file"] == str(ref_dir / "case_a.nii.gz")
    for case in (case_a, case_b):
        assert set(case["metrics"]) == {"1", "2"}
        assert all(set(m) == metric_keys for m in case["metrics"].values())

    assert case_a["metrics"]["1"]["ASD"] == pytest.approx(4 * 2.5)
    assert case_a["metrics"]["2"] == {"Dice": 1.0, "Jaccard": 1.0, "HD95": 0.0, "ASD": 0.0, "ASSD": 0.0,
                                      "n_pred": 0, "n_ref": 0}
    assert case_b["metrics"]["1"]["Dice"] == 1.0
    assert case_b["metrics"]["2"] == {"Dice": 0.0, "Jaccard": 0.0, "HD95": None, "ASD": None, "ASSD": None,
                                      "n_pred": 0, "n_ref": 8}
    assert math.isnan(summary["metric_per_case"][1]["metrics"]["2"]["HD95"]), "returned with NaN, written as null"

    mean_1, mean_2 = written["mean"]["1"], written["mean"]["2"]
    assert mean_1["Dice"] == pytest.approx(0.5) and mean_1["ASD"] == pytest.approx(5.0)
    assert mean_1["n_undefined_distance"] == 0
    assert mean_2["Dice"] == pytest.approx(0.5)
    assert mean_2["HD95"] == 0.0 and mean_2["n_undefined_distance"] == 1, "means over the finite values only"
    foreground = written["foreground_mean"]
    assert foreground["Dice"] == pytest.approx(0.5)
    assert foreground["HD95"] == pytest.approx((mean_1["HD95"] + mean_2["HD95"]) / 2)
    assert foreground["n_undefined_distance"] == 1


def test_all_distances_undefined_gives_null_mean(tmp_path):
    ref, pred = cube((6, 6, 6), (1, 1, 1), 2).astype(np.uint8), np.zeros((6, 6, 6), dtype=np.uint8)
    ref_dir, pred_dir = make_folders(tmp_path, {"x.nii.gz": (ref, pred)})
    evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)
    written = json.loads((pred_dir / "summary.json").read_text())
    assert written["mean"]["1"]["ASSD"] is None and written["mean"]["1"]["n_undefined_distance"] == 1
    assert written["foreground_mean"]["HD95"] is None


def test_voxel_units_and_explicit_labels(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    in_mm = evaluate_folders(str(ref_dir), str(pred_dir), labels=[1], num_processes=1)
    in_voxels = evaluate_folders(str(ref_dir), str(pred_dir), labels=[1], voxel_units=True, num_processes=1)
    assert set(in_mm["mean"]) == set(in_voxels["mean"]) == {"1"}
    assert (in_mm["units"], in_voxels["units"]) == ("mm", "voxels")
    case_mm, case_voxels = in_mm["metric_per_case"][0]["metrics"]["1"], in_voxels["metric_per_case"][0]["metrics"]["1"]
    assert (case_mm["ASD"], case_mm["HD95"]) == (pytest.approx(10.0), pytest.approx(12.5))
    assert (case_voxels["ASD"], case_voxels["HD95"]) == (pytest.approx(4.0), pytest.approx(5.0))


def test_png_has_spacing_one(tmp_path):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    ref, pred = np.zeros((10, 12), dtype=np.uint8), np.zeros((10, 12), dtype=np.uint8)
    ref[1, 1] = pred[4, 5] = 1
    Image.fromarray(ref).save(ref_dir / "img.png")
    Image.fromarray(pred).save(pred_dir / "img.png")
    summary = evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)
    assert summary["metric_per_case"][0]["metrics"]["1"]["HD95"] == pytest.approx(5.0)


def test_labels_are_read_as_nnunets_own_readers_read_them(tmp_path):
    from nnunetv2.imageio.natural_image_reader_writer import NaturalImage2DIO
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    from nnunetv2.imageio.tif_reader_writer import Tiff3DIO
    from nnunet_ext.evaluation import read_segmentation
    label = np.zeros((6, 8), dtype=np.uint8)
    label[2:4, 3:7] = 2
    planar = sitk.GetImageFromArray(label)
    planar.SetSpacing((0.5, 0.75))
    sitk.WriteImage(planar, str(tmp_path / "planar.nii.gz"))
    array, spacing = read_segmentation(str(tmp_path / "planar.nii.gz"))
    nnunet, properties = SimpleITKIO().read_seg(str(tmp_path / "planar.nii.gz"))
    assert array.dtype == np.uint8 and np.array_equal(array, nnunet[0, 0]) and np.array_equal(array, label)
    assert spacing == (0.75, 0.5) == tuple(properties["spacing"][1:]), "2-D: nnU-Net's dummy axis removed"
    Image.fromarray(label).save(tmp_path / "natural.png")
    assert np.array_equal(read_segmentation(str(tmp_path / "natural.png"))[0],
                          NaturalImage2DIO().read_seg(str(tmp_path / "natural.png"))[0][0, 0])
    volume = np.stack([label, 3 * label])
    Tiff3DIO().write_seg(volume, str(tmp_path / "volume.tif"), {"spacing": (2.0, 0.5, 0.5)})
    array, spacing = read_segmentation(str(tmp_path / "volume.tif"))
    assert np.array_equal(array, volume) and spacing == (2.0, 0.5, 0.5), "3-D TIFF with its .json spacing"
    Image.fromarray(np.stack([label] * 3, axis=-1)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match=r"rgb\.png: a label image must have one channel"):
        read_segmentation(str(tmp_path / "rgb.png"))
    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    with pytest.raises(ValueError, match=r"broken\.nii\.gz: none of nnU-Net's readers opens it"):
        read_segmentation(str(tmp_path / "broken.nii.gz"))


def test_missing_prediction_names_the_file(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    (pred_dir / "case_b.nii.gz").unlink()
    with pytest.raises(ValueError, match=r"prediction missing .*case_b\.nii\.gz"):
        evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)


def test_prediction_without_reference_names_the_file(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    write_nifti(pred_dir / "stray.nii.gz", np.zeros((3, 3, 3)), SPACING)
    (pred_dir / "plans.json").write_text("{}")
    with pytest.raises(ValueError, match=r"without a reference.*stray\.nii\.gz"):
        evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)


def test_file_names_restrict_the_pairing(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    (pred_dir / "case_b.nii.gz").unlink()
    summary = evaluate_folders(str(ref_dir), str(pred_dir), file_names=["case_a.nii.gz"], num_processes=1)
    assert [Path(c["prediction_file"]).name for c in summary["metric_per_case"]] == ["case_a.nii.gz"]


def test_size_mismatch_names_the_file(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    write_nifti(pred_dir / "case_b.nii.gz", np.zeros((11, 5, 6)), SPACING)
    with pytest.raises(ValueError, match=r"case_b\.nii\.gz: size mismatch"):
        evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)


def test_spacing_mismatch_names_the_file(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    write_nifti(pred_dir / "case_a.nii.gz", two_label_cases()["case_a.nii.gz"][1], (2.5, 0.75, 1.0))
    with pytest.raises(ValueError, match=r"case_a\.nii\.gz: spacing mismatch"):
        evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)


def test_command_end_to_end_in_parallel(tmp_path, capsys):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    output = tmp_path / "summary.json"
    main(["evaluate", "-ref", str(ref_dir), "-pred", str(pred_dir), "-o", str(output), "-np", "2"])
    written = json.loads(output.read_text())
    assert [Path(c["prediction_file"]).name for c in written["metric_per_case"]] == ["case_a.nii.gz",
                                                                                      "case_b.nii.gz"]
    assert written["metric_per_case"][0]["metrics"]["1"]["ASD"] == pytest.approx(10.0)
    table = capsys.readouterr().out
    assert "case_a.nii.gz" in table and "foreground mean" in table and "n/a" in table
    assert not (pred_dir / "summary.json").exists()


def test_command_voxel_units_and_default_output(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    main(["evaluate", "-ref", str(ref_dir), "-pred", str(pred_dir), "--voxel-units", "-l", "1", "-np", "1"])
    written = json.loads((pred_dir / "summary.json").read_text())
    assert written["units"] == "voxels" and set(written["mean"]) == {"1"}
    assert written["metric_per_case"][0]["metrics"]["1"]["ASD"] == pytest.approx(4.0)


# ---------------------------------------------------------------- LTUDA's 2-D HD in pixels

def test_slice_hd_by_hand_and_against_medpy():
    """Reference slices 1–3 hold a square; the prediction shifts it by 2 pixels in slice 1, is empty in slice 2
    (skipped) and equals it in slice 3; slice 4 (outside the reference's range) holds a stray blob, not scored."""
    from nnunet_ext.evaluation.metrics import slice_hausdorff_pixels
    ref, pred = np.zeros((6, 12, 12), bool), np.zeros((6, 12, 12), bool)
    ref[1:4, 3:7, 3:7] = True
    pred[1, 5:9, 3:7] = True
    pred[3, 3:7, 3:7] = True
    pred[4, 0:2, 0:2] = True
    assert slice_hausdorff_pixels(pred, ref) == pytest.approx((2.0 + 0.0) / 2)
    assert math.isnan(slice_hausdorff_pixels(pred, np.zeros_like(ref)))
    medpy_binary = pytest.importorskip("medpy.metric.binary")
    rng = np.random.default_rng(4)
    blob_pred, blob_ref = random_blob(rng, (30, 26)), random_blob(rng, (30, 26))
    assert slice_hausdorff_pixels(blob_pred, blob_ref) == pytest.approx(medpy_binary.hd(blob_pred, blob_ref))


def test_command_adds_the_slice_hd_beside_hd95(tmp_path, capsys):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    main(["evaluate", "-ref", str(ref_dir), "-pred", str(pred_dir), "--slice-hd", "-np", "1"])
    written = json.loads((pred_dir / "summary.json").read_text())
    for case in written["metric_per_case"]:
        for metrics in case["metrics"].values():
            assert "slice_HD_px" in metrics and "HD95" in metrics
    assert "slice_HD_px" in written["mean"]["1"] and "slice_HD_px" in written["foreground_mean"]
    assert "slice_HD_px" in capsys.readouterr().out
    main(["evaluate", "-ref", str(ref_dir), "-pred", str(pred_dir), "-np", "1"])
    assert "slice_HD_px" not in json.loads((pred_dir / "summary.json").read_text())["mean"]["1"]


# ---------------------------------------------------------------- regions and partial labels, by hand

def test_regions_of_a_dataset_json_are_scored_on_both_label_maps(tmp_path):
    """BraTS-style nested regions from a dataset.json: whole = {1, 2, 3}, core = {2, 3}, enhancing = {3}. Reference
    voxels (1-D row of 10): 1 1 2 2 3 3 0 0 0 0; prediction: 1 1 1 2 3 0 0 0 0 3."""
    ref = np.array([1, 1, 2, 2, 3, 3, 0, 0, 0, 0], np.uint8).reshape(1, 1, 10)
    pred = np.array([1, 1, 1, 2, 3, 0, 0, 0, 0, 3], np.uint8).reshape(1, 1, 10)
    ref_dir, pred_dir = make_folders(tmp_path, {"brats_1.nii.gz": (ref, pred)})
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3],
                                                   "enhancing_tumor": 3}, "regions_class_order": [1, 2, 3]}))
    output = tmp_path / "summary.json"
    main(["evaluate", "-ref", str(ref_dir), "-pred", str(pred_dir), "-o", str(output), "-np", "1",
                "--regions-from", str(dataset_json)])
    written = json.loads(output.read_text())
    assert written["region_names"] == {"(1, 2, 3)": "whole_tumor", "(2, 3)": "tumor_core", "3": "enhancing_tumor"}
    metrics = written["metric_per_case"][0]["metrics"]
    # whole: ref 6 voxels (0-5), pred 6 (0-4, 9), overlap 5 → 10/12; core: ref 4 (2-5), pred 3 (3, 4, 9), overlap 2
    # → 4/7; enhancing: ref 2 (4, 5), pred 2 (4, 9), overlap 1 → 2/4
    assert metrics["(1, 2, 3)"]["Dice"] == pytest.approx(10 / 12)
    assert metrics["(2, 3)"]["Dice"] == pytest.approx(4 / 7)
    assert metrics["3"]["Dice"] == pytest.approx(0.5) and metrics["3"]["Jaccard"] == pytest.approx(1 / 3)
    assert written["foreground_mean"]["Dice"] == pytest.approx((10 / 12 + 4 / 7 + 0.5) / 3)


def test_partial_labels_score_only_the_classes_a_case_annotates(tmp_path):
    """case_liver annotates the liver (1) only: its predicted kidney (2) voxels and its reference's 0 there are not
    scored; case_both annotates both. The kidney mean is over case_both alone."""
    liver_ref = np.array([1, 1, 1, 1, 0, 0, 0, 0], np.uint8).reshape(1, 1, 8)
    liver_pred = np.array([1, 1, 0, 0, 2, 2, 0, 0], np.uint8).reshape(1, 1, 8)
    both_ref = np.array([1, 1, 0, 0, 2, 2, 2, 2], np.uint8).reshape(1, 1, 8)
    both_pred = np.array([1, 1, 0, 0, 2, 2, 0, 0], np.uint8).reshape(1, 1, 8)
    ref_dir, pred_dir = make_folders(tmp_path, {"case_liver.nii.gz": (liver_ref, liver_pred),
                                                "case_both.nii.gz": (both_ref, both_pred)})
    dataset_json = tmp_path / "dataset.json"
    dataset_json.write_text(json.dumps({"labels": {"background": 0, "liver": 1, "kidney": 2},
                                        "annotated_labels": {"case_liver": [1], "case_both": [1, 2]}}))
    output = tmp_path / "summary.json"
    main(["evaluate", "-ref", str(ref_dir), "-pred", str(pred_dir), "-o", str(output), "-np", "1",
                "--annotated-labels-from", str(dataset_json)])
    written = json.loads(output.read_text())
    per_case = {Path(c["reference_file"]).name: c["metrics"] for c in written["metric_per_case"]}
    assert set(per_case["case_liver.nii.gz"]) == {"1"} and set(per_case["case_both.nii.gz"]) == {"1", "2"}
    assert per_case["case_liver.nii.gz"]["1"]["Dice"] == pytest.approx(4 / 6)
    assert per_case["case_both.nii.gz"]["2"]["Dice"] == pytest.approx(4 / 6)
    assert written["mean"]["1"]["Dice"] == pytest.approx((4 / 6 + 1.0) / 2) and written["mean"]["1"]["n_cases"] == 2
    assert written["mean"]["2"]["Dice"] == pytest.approx(4 / 6) and written["mean"]["2"]["n_cases"] == 1
    without = evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)
    assert without["mean"]["2"]["Dice"] == pytest.approx((0.0 + 4 / 6) / 2), "counted as background otherwise"


def test_partial_labels_name_a_case_without_annotated_labels(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, {"case_x.nii.gz": (np.ones((1, 1, 4), np.uint8),) * 2})
    with pytest.raises(ValueError, match="case_x.nii.gz"):
        evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1, annotated_labels={"other": [1]})


def test_png_distances_are_in_pixels(tmp_path, capsys):
    ref_dir, pred_dir = tmp_path / "ref", tmp_path / "pred"
    ref_dir.mkdir()
    pred_dir.mkdir()
    mask = np.zeros((10, 12), dtype=np.uint8)
    mask[2:5, 3:6] = 1
    Image.fromarray(mask).save(ref_dir / "img.png")
    Image.fromarray(mask).save(pred_dir / "img.png")
    main(["evaluate", str(ref_dir), str(pred_dir), "-np", "1"])
    assert json.loads((pred_dir / "summary.json").read_text())["units"] == "pixels"
    assert "HD95, ASD and ASSD in pixels" in capsys.readouterr().out


def test_positional_folders_as_nnunet_takes_them(tmp_path, capsys):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    main(["evaluate", str(ref_dir), str(pred_dir), "-o", str(tmp_path / "positional.json"), "-np", "1"])
    main(["evaluate", "-ref", str(ref_dir), "-pred", str(pred_dir), "-o", str(tmp_path / "flags.json"), "-np", "1"])
    assert json.loads((tmp_path / "positional.json").read_text()) == json.loads((tmp_path / "flags.json").read_text())
    with pytest.raises(SystemExit):
        main(["evaluate", str(ref_dir), str(pred_dir), "-ref", str(pred_dir)])
    assert "the ref folder is given twice" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["evaluate", str(ref_dir)])
    assert "the following arguments are required: the pred folder" in capsys.readouterr().err


def test_chill_scores_what_is_there_and_lists_the_rest(tmp_path, capsys):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    (pred_dir / "case_b.nii.gz").unlink()
    main(["evaluate", str(ref_dir), str(pred_dir), "--chill", "-np", "1"])
    written = json.loads((pred_dir / "summary.json").read_text())
    assert [Path(c["reference_file"]).name for c in written["metric_per_case"]] == ["case_a.nii.gz"]
    assert written["missing_predictions"] == ["case_b.nii.gz"]
    assert "1 reference(s) without a prediction" in capsys.readouterr().out


def test_a_different_file_ending_is_pointed_out(tmp_path):
    ref_dir, pred_dir = make_folders(tmp_path, two_label_cases())
    (pred_dir / "case_b.nii.gz").rename(pred_dir / "case_b.nii")
    with pytest.raises(ValueError, match=r"found case_b\.nii for case_b\.nii\.gz: only the file ending differs"):
        evaluate_folders(str(ref_dir), str(pred_dir), num_processes=1)


def test_scoring_the_ordinal_labels_of_a_gaze_dataset_warns(tmp_path, capsys):
    dataset = tmp_path / "Dataset811_KvasirGaze"
    (dataset / "labelsTr").mkdir(parents=True)
    (dataset / "pred").mkdir()
    ordinal = np.zeros((10, 12), dtype=np.uint8)
    ordinal[2:8, 2:8], ordinal[4:6, 4:6] = 1, 2
    for folder in ("labelsTr", "pred"):
        Image.fromarray(ordinal).save(dataset / folder / "img.png")
    (dataset / "dataset.json").write_text(json.dumps({"gaze": {"target": "polyp"}}))
    main(["evaluate", str(dataset / "labelsTr"), str(dataset / "pred"), "-np", "1"])
    assert "holds gaze pseudo-masks as ordinal maps" in capsys.readouterr().err
    main(["evaluate", str(dataset / "pred"), str(dataset / "labelsTr"), "-o", str(tmp_path / "s.json"), "-np", "1"])
    assert "ordinal" not in capsys.readouterr().err

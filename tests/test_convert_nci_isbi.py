"""``nnunet_ext convert nci_isbi``: synthetic DICOM series on the geometry of real NCI-ISBI NRRD labels (file names
out of instance order, intensities that encode the slice), the real test-set DICOM series, real gaze fixations;
3-D volumes, gaze 2-D slices, and the reports and errors for broken inputs."""
import contextlib
import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared
from nnunet_ext import gaze
from nnunet_ext.cli import main
from nnunet_ext.dataset_conversion import nci_isbi
from nnunet_ext.splits import leaking_patients

SLICE_CODE = 1000
"""Synthetic pixel value = SLICE_CODE * (z + 1) + x + ZONE_CODE * (label > 0): slice, column and label readable."""
ZONE_CODE = 300
UID_ROOT = "1.2.826.0.1.3680043.2.1125"
GAZED = ["Prostate3T-01-0001_1", "Prostate3T-01-0001_7", "Prostate3T-01-0001_14", "Prostate3T-01-0019_2",
         "Prostate3T-01-0019_18"]


def _ds(value: float) -> str:
    return f"{value:.10g}"


def expected_volume(grid: sitk.Image, mask: np.ndarray) -> np.ndarray:
    """The pixel values a synthetic series on ``grid`` holds, (z, y, x) in position order."""
    depth, rows, columns = mask.shape
    z, _, x = np.meshgrid(np.arange(depth), np.arange(rows), np.arange(columns), indexing="ij")
    return (SLICE_CODE * (z + 1) + x + ZONE_CODE * (mask > 0)).astype(np.uint16)


def write_series(folder: Path, grid: sitk.Image, mask: np.ndarray, case_id: str, seed: int,
                 instance_numbers=None, keep=None) -> None:
    """A DICOM series of ``grid``'s geometry (one file per slice, names shuffled), slices ``keep`` of the grid."""
    direction = np.array(grid.GetDirection()).reshape(3, 3)
    spacing, origin = np.array(grid.GetSpacing()), np.array(grid.GetOrigin())
    volume = expected_volume(grid, mask)
    depth = len(volume)
    rng = np.random.default_rng(seed)
    names = rng.permutation(depth)
    instance_numbers = depth - np.arange(depth) if instance_numbers is None else instance_numbers
    folder.mkdir(parents=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in (range(depth) if keep is None else keep):
        image = sitk.GetImageFromArray(volume[z])
        image.SetSpacing(tuple(spacing[:2]))
        position = origin + direction @ (spacing * np.array([0, 0, z]))
        tags = {"0008|0060": "MR", "0008|0016": "1.2.840.10008.5.1.4.1.1.4", "0010|0020": case_id,
                "0020|000d": f"{UID_ROOT}.{seed}.1", "0020|000e": f"{UID_ROOT}.{seed}.2",
                "0008|0018": f"{UID_ROOT}.{seed}.3.{z + 1}", "0020|0013": str(instance_numbers[z]),
                "0020|0032": "\\".join(_ds(v) for v in position),
                "0020|0037": "\\".join(_ds(v) for v in [*direction[:, 0], *direction[:, 1]]),
                "0028|0030": f"{_ds(spacing[1])}\\{_ds(spacing[0])}", "0018|0050": _ds(spacing[2])}
        for tag, value in tags.items():
            image.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"IM{names[z] + 1}.dcm"))
        writer.Execute(image)


def flipped_label(label: sitk.Image) -> sitk.Image:
    """The same label stored head-to-feet: z reversed, origin at the last slice, slice direction negated."""
    flipped = sitk.GetImageFromArray(sitk.GetArrayFromImage(label)[::-1].copy())
    direction = np.array(label.GetDirection()).reshape(3, 3)
    flipped.SetOrigin(label.TransformIndexToPhysicalPoint((0, 0, label.GetSize()[2] - 1)))
    flipped.SetSpacing(label.GetSpacing())
    direction[:, 2] *= -1
    flipped.SetDirection(tuple(direction.ravel()))
    return flipped


@pytest.fixture(scope="module")
def real(shared_data):
    folder = shared_data / "NCI-ISBI_2013"
    csv_path = shared_data / "GazeMedSeg" / "nci-isbi_fixation.csv"
    if not (folder / "labels_training_nrrd").is_dir() or not csv_path.is_file():
        pytest.skip(f"real-data test skipped: {folder}/labels_training_nrrd or {csv_path} is absent")
    return {"labels": folder / "labels_training_nrrd", "dicom": folder / "images_dicom", "csv": csv_path,
            "old_csv": shared_data / "GazeMedSeg" / "nci-isbi_fixation_old.csv"}


def real_label(real, case: str) -> sitk.Image:
    return sitk.ReadImage(str(real["labels"] / f"{case}.nrrd"))


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def download(real, tmp_path_factory):
    """A TCIA-shaped input folder; what each case is for is in the comments."""
    root = tmp_path_factory.mktemp("tcia")
    labels = root / "labels"
    labels.mkdir()

    def series_folder(case):
        return root / case / "1.2.3.study" / "1.2.3.series"

    # training, plain label name, instance numbers descending along the normal (as in the real series)
    grid = real_label(real, "Prostate3T-01-0001")
    write_series(series_folder("Prostate3T-01-0001"), grid, array(grid), "Prostate3T-01-0001", seed=1)
    (labels / "Prostate3T-01-0001.nrrd").symlink_to(real["labels"] / "Prostate3T-01-0001.nrrd")
    # training, _truth name, only the peripheral zone, instance numbers shuffled
    grid = real_label(real, "Prostate3T-01-0019")
    write_series(series_folder("Prostate3T-01-0019"), grid, array(grid), "Prostate3T-01-0019", seed=2,
                 instance_numbers=np.random.default_rng(0).permutation(grid.GetSize()[2]) + 1)
    (labels / "Prostate3T-01-0019_truth.nrrd").symlink_to(real["labels"] / "Prostate3T-01-0019.nrrd")
    # test case whose label is stored head-to-feet: must be paired by position, not by index
    grid = real_label(real, "Prostate3T-01-0008")
    write_series(series_folder("Prostate3T-03-0002"), grid, array(grid), "Prostate3T-03-0002", seed=3)
    sitk.WriteImage(flipped_label(grid), str(labels / "Prostate3T-03-0002_truth.nrrd"), useCompression=True)
    # the real test-set series, no label: imagesTs only
    for path in sorted(real["dicom"].rglob("*.dcm")):
        target = root / path.relative_to(real["dicom"])
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    # slice count mismatch: label 15 slices, series 14
    write_series(series_folder("Prostate3T-01-0008"), grid, array(grid), "Prostate3T-01-0008", seed=4, keep=range(14))
    (labels / "Prostate3T-01-0008.nrrd").symlink_to(real["labels"] / "Prostate3T-01-0008.nrrd")
    # label without series, training series without label, an NRRD that is not a label
    (labels / "Prostate3T-01-0002.nrrd").symlink_to(real["labels"] / "Prostate3T-01-0002.nrrd")
    small = sitk.Image(32, 32, 3, sitk.sitkUInt8)
    write_series(series_folder("Prostate3T-01-0030"), small, array(small), "Prostate3T-01-0030", seed=5)
    (labels / "segmentation_notes.nrrd").write_text("not read")
    return root


convert = converter("nci_isbi")


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def write_gaze_csv(real, path: Path, keys, change_size=None, old_format=False) -> None:
    """The real fixation rows of ``keys`` (current or older CSV format); ``change_size`` = {key: (H, W)}."""
    source = real["old_csv"] if old_format else real["csv"]
    with open(source, newline="") as f:
        reader = csv.DictReader(f)
        name_column = "images" if old_format else "IMAGE"
        rows = [row for row in reader if gaze.image_key(row[name_column]) in keys]
        fields = reader.fieldnames
    for row in rows:
        size = (change_size or {}).get(gaze.image_key(row[name_column]))
        if size is not None:
            row["IMAGE_HEIGHT"], row["IMAGE_WIDTH"] = (f"{v}.0" for v in size)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fields)
        writer.writeheader()
        writer.writerows(rows)


@pytest.fixture(scope="module")
def converted(download, real, tmp_path_factory):
    """The download converted as 3-D volumes (812, merged labels) and as gazed 2-D slices (813)."""
    raw = tmp_path_factory.mktemp("raw")
    csv_path = tmp_path_factory.mktemp("gaze") / "gaze.csv"
    write_gaze_csv(real, csv_path, set(GAZED) | {"Prostate3T-01-0002_10"})
    with pytest.MonkeyPatch.context() as mp:
        volumes = convert(raw, mp, "-i", str(download), "-d", "812", "-np", "2")
        slices = convert(raw, mp, "-i", str(download), "-d", "813", "--gaze-csv", str(csv_path), "-np", "2")
    return {"raw": raw, "volumes": raw / "Dataset812_NCIISBI", "slices": raw / "Dataset813_NCIISBIGaze",
            "printed": (volumes, slices), "csv": csv_path}


def test_real_series_is_sorted_by_position_not_by_name(real):
    series = nci_isbi.scan_series(str(real["dicom"]), progress=False)
    assert list(series) == ["Prostate3T-03-0001"]
    s = series["Prostate3T-03-0001"]
    assert sorted(s.instance_numbers) == list(range(1, 20)) and s.size == (384, 384, 19)
    assert np.all(np.diff(s.positions) > 2.99) and np.allclose(np.diff(s.positions), 3.0, atol=1e-4)
    assert s.instance_numbers == tuple(range(19, 0, -1)) and s.instance_order == "decreasing"
    names_in_order = [os.path.basename(f) for f in s.files]
    assert names_in_order != sorted(names_in_order) and names_in_order[9] == "000002.dcm"
    assert np.allclose(s.spacing, (0.5, 0.5, 3.0), atol=1e-6)
    image = nci_isbi.read_series_image(s)
    reader = sitk.ImageSeriesReader()
    folder = os.path.dirname(s.files[0])
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(folder))
    independent = reader.Execute()
    np.testing.assert_array_equal(array(image), array(independent))
    assert np.allclose(image.GetOrigin(), independent.GetOrigin(), atol=1e-4)
    assert np.allclose(image.GetDirection(), independent.GetDirection(), atol=1e-6)


def test_volumes_pair_slices_by_position_with_the_dicom_geometry(real, converted):
    folder = converted["volumes"]
    assert names(folder) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTs"]
    assert names(folder / "imagesTr") == ["Prostate3T-01-0001_0000.nii.gz", "Prostate3T-01-0019_0000.nii.gz"]
    assert names(folder / "imagesTs") == ["Prostate3T-03-0001_0000.nii.gz", "Prostate3T-03-0002_0000.nii.gz"]
    assert names(folder / "labelsTs") == ["Prostate3T-03-0002.nii.gz"]
    for case in ("Prostate3T-01-0001", "Prostate3T-01-0019"):
        truth = real_label(real, case)
        image, label = read(folder / "imagesTr" / f"{case}_0000.nii.gz"), read(folder / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_array_equal(array(label), array(truth) > 0)
        np.testing.assert_array_equal(array(image), expected_volume(truth, array(truth)))
        code = array(image).astype(int) % SLICE_CODE - np.arange(image.GetSize()[0])
        np.testing.assert_array_equal(code // ZONE_CODE, array(label))
        assert set(np.unique(array(label))) == {0, 1}
        for written in (image, label):
            assert np.allclose(written.GetOrigin(), truth.GetOrigin(), atol=1e-3)
            assert np.allclose(written.GetSpacing(), truth.GetSpacing(), atol=1e-5)
            assert np.allclose(written.GetDirection(), truth.GetDirection(), atol=1e-5)
    flipped_case = read(folder / "labelsTs" / "Prostate3T-03-0002.nii.gz")
    np.testing.assert_array_equal(array(flipped_case), array(real_label(real, "Prostate3T-01-0008")) > 0)
    real_series = read(folder / "imagesTs" / "Prostate3T-03-0001_0000.nii.gz")
    assert real_series.GetSize() == (384, 384, 19)


def test_report_of_skipped_and_unlabeled_cases(converted):
    dataset_json = json.loads((converted["volumes"] / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "prostate": 1}
    assert dataset_json["channel_names"] == {"0": "T2"} and dataset_json["file_ending"] == ".nii.gz"
    assert dataset_json["numTraining"] == 2
    report = dataset_json["nci_isbi_conversion"]
    assert {case: item["problem"] for case, item in report["skipped"].items()} == {
        "Prostate3T-01-0002": "no_series", "Prostate3T-01-0008": "slice_count_mismatch",
        "Prostate3T-01-0030": "no_label"}
    assert "has 14 slices, the label 15" in report["skipped"]["Prostate3T-01-0008"]["detail"]
    assert report["test_cases_without_label"] == ["Prostate3T-03-0001"]
    assert report["unused_label_files"][0].endswith("segmentation_notes.nrrd")
    cases = report["cases"]
    assert cases["Prostate3T-01-0001"]["instance_numbers"] == "decreasing"
    assert cases["Prostate3T-01-0019"]["instance_numbers"] == "not monotonic"
    assert list(report["warnings"]) == ["Prostate3T-01-0019"]
    assert cases["Prostate3T-01-0001"]["label_grid"] == "same grid"
    assert cases["Prostate3T-03-0002"]["label_grid"] == "same voxels, label axes reordered or flipped"
    assert cases["Prostate3T-01-0019"]["label"].endswith("Prostate3T-01-0019_truth.nrrd")
    printed = converted["printed"][0]
    assert "skipped Prostate3T-01-0008: slice_count_mismatch" in printed
    assert "skipped Prostate3T-01-0002: no_series" in printed and "skipped Prostate3T-01-0030: no_label" in printed
    assert "test cases without label (imagesTs only): Prostate3T-03-0001" in printed


def test_volumes_and_gaze_slices_pass_nnunet_integrity_check(converted):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    with contextlib.redirect_stdout(io.StringIO()):
        verify_dataset_integrity(str(converted["volumes"]), 1)
        verify_dataset_integrity(str(converted["slices"]), 1)


def test_gaze_slices_of_one_patient_stay_in_one_fold(converted):
    """nnU-Net's folds over case ids would put slices of one patient into training and validation; the
    converter's splits_final.json draws them over patients (the cases <case>_<k> of one NCI-ISBI case)."""
    folder = converted["slices"]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    expected = {}
    for key in GAZED:
        expected.setdefault(key.rsplit("_", 1)[0], []).append(key)
    assert dataset_json["patients"] == {patient: sorted(cases) for patient, cases in expected.items()}
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == 2
    assert leaking_patients(splits, dataset_json["patients"]) == []
    assert sorted(case for fold in splits for case in fold["val"]) == sorted(GAZED)
    assert not (converted["volumes"] / "splits_final.json").exists()
    assert "patients" not in json.loads((converted["volumes"] / "dataset.json").read_text())


def test_test_cohorts_choose_what_goes_to_imagesTs(download, real, converted, tmp_path, monkeypatch):
    assert json.loads((converted["volumes"] / "dataset.json").read_text())["test_cohorts"] == ["02", "03"]
    convert(tmp_path, monkeypatch, "-i", str(download), "-d", "816", "--test-cohorts", "02", "-np", "0")
    folder = tmp_path / "Dataset816_NCIISBI"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["test_cohorts"] == ["02"]
    assert names(folder / "imagesTr") == [f"{case}_0000.nii.gz" for case in
                                          ("Prostate3T-01-0001", "Prostate3T-01-0019", "Prostate3T-03-0002")]
    assert not (folder / "imagesTs").exists() or not any((folder / "imagesTs").iterdir())
    assert dataset_json["nci_isbi_conversion"]["skipped"]["Prostate3T-03-0001"]["problem"] == "no_label"
    with pytest.raises(SystemExit):
        convert(tmp_path, monkeypatch, "-i", str(download), "-d", "817", "--test-cohorts", "01")


def test_gaze_slice_k_is_label_slice_k_minus_1_on_the_real_csv_and_labels(real):
    """The slice convention on the real data: the duration-weighted share of the fixations of the 774 gazed
    slices (of the cases with a training label) that fall on the prostate is highest for NRRD slice k - 1, above
    slice k, the slice counted from the other end and the transposed slice k - 1."""
    fixations, _ = gaze.read_gaze_csv(str(real["csv"]))
    labels, shares = {}, {"k - 1": [], "k": [], "reversed": [], "transposed": []}
    for key, points in sorted(fixations.items()):
        case, k = key.rsplit("_", 1)
        path = real["labels"] / f"{case}.nrrd"
        if not path.is_file():
            continue
        if case not in labels:
            labels[case] = array(sitk.ReadImage(str(path))) > 0
        mask, k = labels[case], int(k)
        depth, height, width = mask.shape
        rows = np.minimum((points[:, 1] * height).astype(int), height - 1)
        columns = np.minimum((points[:, 0] * width).astype(int), width - 1)
        weights = points[:, 2] / points[:, 2].sum()

        def share(slice_mask: np.ndarray) -> float:
            return float((slice_mask[rows, columns] * weights).sum())

        shares["k - 1"].append(share(mask[k - 1]))
        shares["k"].append(share(mask[k]) if k < depth else 0.0)
        shares["reversed"].append(share(mask[depth - k]))
        shares["transposed"].append(share(mask[k - 1].T))
    assert len(shares["k - 1"]) == 774
    convention = np.array(shares["k - 1"])
    assert convention.mean() > 0.9
    for other in ("k", "reversed", "transposed"):
        alternative = np.array(shares[other])
        assert alternative.mean() < convention.mean() - 0.05, other
        assert (convention > alternative).sum() > 2 * (convention < alternative).sum(), other


def test_keep_zones(download, real, tmp_path, monkeypatch):
    case_folder = download / "Prostate3T-01-0001"
    convert(tmp_path, monkeypatch, "-i", str(case_folder), "--labels", str(download / "labels"), "-d", "814",
            "--keep-zones", "-np", "0")
    folder = tmp_path / "Dataset814_NCIISBI"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "central_gland": 1, "peripheral_zone": 2}
    label = array(read(folder / "labelsTr" / "Prostate3T-01-0001.nii.gz"))
    np.testing.assert_array_equal(label, array(real_label(real, "Prostate3T-01-0001")))
    assert set(np.unique(label)) == {0, 1, 2}
    assert names(folder / "imagesTr") == ["Prostate3T-01-0001_0000.nii.gz"]


def test_gaze_slices_ordinal_labels_and_reference_masks(real, converted):
    folder = converted["slices"]
    assert names(folder) == ["dataset.json", "imagesTr", "imagesTs", "labelsTr", "labelsTrReference", "labelsTs",
                             "splits_final.json"]
    assert names(folder / "imagesTr") == sorted(f"{key}_0000.nii.gz" for key in GAZED)
    assert names(folder / "labelsTrReference") == sorted(f"{key}.nii.gz" for key in GAZED)
    fixations, sizes = gaze.read_gaze_csv(str(converted["csv"]))
    for key in GAZED:
        case, k = key.rsplit("_", 1)
        truth = real_label(real, case)
        z = int(k) - 1
        image = read(folder / "imagesTr" / f"{key}_0000.nii.gz")
        assert image.GetDimension() == 2 and np.allclose(image.GetSpacing(), truth.GetSpacing()[:2], atol=1e-5)
        expected = expected_volume(truth, array(truth))[z]
        np.testing.assert_array_equal(array(image), expected)
        reference = array(read(folder / "labelsTrReference" / f"{key}.nii.gz"))
        np.testing.assert_array_equal(reference, array(truth)[z] > 0)
        assert reference.any()
        low, high = expected.min(), expected.max()
        grey = ((expected - low) / (high - low) * 255).astype(np.uint8)
        crf = gaze.crf_refine(np.stack([grey] * 3, axis=-1), gaze.gaze_heatmap(fixations[key], *sizes[key], 50))
        np.testing.assert_array_equal(array(read(folder / "labelsTr" / f"{key}.nii.gz")),
                                      (crf >= 0.2).astype(np.uint8) + (crf >= 0.4))
    test_truth = array(real_label(real, "Prostate3T-01-0008"))
    with_prostate = [z + 1 for z in range(len(test_truth)) if test_truth[z].any()]
    assert names(folder / "labelsTs") == sorted(f"Prostate3T-03-0002_{k}.nii.gz" for k in with_prostate)
    for k in with_prostate:
        np.testing.assert_array_equal(array(read(folder / "labelsTs" / f"Prostate3T-03-0002_{k}.nii.gz")),
                                      test_truth[k - 1] > 0)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "gaze_level_1": [1, 2], "gaze_level_2": [2]}
    assert dataset_json["regions_class_order"] == [1, 2] and dataset_json["numTraining"] == len(GAZED)
    assert dataset_json["gaze"]["sigma"] == 50 and dataset_json["gaze"]["thresholds"] == [0.2, 0.4]
    assert dataset_json["gaze"]["target"] == "prostate"
    assert set(dataset_json["gaze"]["pseudo_mask_dice_mean"]) == {"gaze_level_1", "gaze_level_2"}
    report = dataset_json["nci_isbi_conversion"]
    assert report["gaze_images_not_converted"] == ["Prostate3T-01-0002_10"]
    assert report["skipped"]["Prostate3T-03-0001"]["problem"] == "no_label"
    assert "pseudo-mask Dice" in converted["printed"][1]


def test_older_csv_format_gives_the_same_pseudo_masks(download, real, converted, tmp_path, monkeypatch):
    require_shared("GazeMedSeg/nci-isbi_fixation_old.csv")
    old_csv = tmp_path / "old.csv"
    write_gaze_csv(real, old_csv, {"Prostate3T-01-0019_18"}, old_format=True)
    convert(tmp_path / "raw", monkeypatch, "-i", str(download / "Prostate3T-01-0019"), "--labels",
            str(download / "labels"), "-d", "815", "--gaze-csv", str(old_csv), "-np", "0")
    folder = tmp_path / "raw" / "Dataset815_NCIISBIGaze"
    assert names(folder / "labelsTr") == ["Prostate3T-01-0019_18.nii.gz"]
    np.testing.assert_array_equal(array(read(folder / "labelsTr" / "Prostate3T-01-0019_18.nii.gz")),
                                  array(read(converted["slices"] / "labelsTr" / "Prostate3T-01-0019_18.nii.gz")))


def test_gaze_slice_k_is_label_slice_k_minus_1_also_for_a_label_stored_head_to_feet(download, real, converted,
                                                                                    tmp_path, monkeypatch):
    """GazeMedSeg's slice k is NRRD slice k - 1; with the label stored head-to-feet that slice lies at position
    n - k of the series, and the image, reference mask and pseudo-mask are taken from there."""
    case = "Prostate3T-01-0001"
    truth = real_label(real, case)
    flipped = flipped_label(truth)
    labels = tmp_path / "labels"
    labels.mkdir()
    sitk.WriteImage(flipped, str(labels / f"{case}.nrrd"), useCompression=True)
    convert(tmp_path / "raw", monkeypatch, "-i", str(download / case), "--labels", str(labels), "-d", "817",
            "--gaze-csv", str(converted["csv"]), "-np", "0")
    folder = tmp_path / "raw" / "Dataset817_NCIISBIGaze"
    keys = [key for key in GAZED if key.startswith(case)]
    assert names(folder / "labelsTr") == sorted(f"{key}.nii.gz" for key in keys)
    fixations, sizes = gaze.read_gaze_csv(str(converted["csv"]))
    depth = truth.GetSize()[2]
    for key in keys:
        k = int(key.rsplit("_", 1)[1])
        image = array(read(folder / "imagesTr" / f"{key}_0000.nii.gz"))
        assert np.all(image // SLICE_CODE == depth - k + 1)
        reference = array(read(folder / "labelsTrReference" / f"{key}.nii.gz"))
        np.testing.assert_array_equal(reference, array(flipped)[k - 1] > 0)
        np.testing.assert_array_equal(reference, image % SLICE_CODE - np.arange(image.shape[1]) == ZONE_CODE)
        grey = ((image - image.min()) / (image.max() - image.min()) * 255).astype(np.uint8)
        crf = gaze.crf_refine(np.stack([grey] * 3, axis=-1), gaze.gaze_heatmap(fixations[key], *sizes[key], 50))
        np.testing.assert_array_equal(array(read(folder / "labelsTr" / f"{key}.nii.gz")),
                                      (crf >= 0.2).astype(np.uint8) + (crf >= 0.4))


def test_gaze_size_mismatch_and_slice_out_of_range_name_the_case(download, real, tmp_path, monkeypatch):
    bad = tmp_path / "bad.csv"
    write_gaze_csv(real, bad, {"Prostate3T-01-0001_7"}, change_size={"Prostate3T-01-0001_7": (300, 320)})
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match=r"image Prostate3T-01-0001_7 is 300 x 320 \(IMAGE_HEIGHT x IMAGE_WIDTH\), "
                                         r"but the slices of case Prostate3T-01-0001 .* are 320 x 320"):
        convert(raw, monkeypatch, "-i", str(download), "-d", "816", "--gaze-csv", str(bad))
    text = bad.read_text().replace("Prostate3T-01-0001_7.jpg", "Prostate3T-01-0001_16.jpg")
    bad.write_text(text)
    with pytest.raises(ValueError, match="image Prostate3T-01-0001_16 names slice 16, but the DICOM series .* of case "
                                         "Prostate3T-01-0001 has 15 slices"):
        convert(raw, monkeypatch, "-i", str(download), "-d", "816", "--gaze-csv", str(bad))
    assert not raw.exists() or os.listdir(raw) == []
    with pytest.raises(ValueError, match="--keep-zones applies to the 3-D volumes only"):
        convert(raw, monkeypatch, "-i", str(download), "-d", "816", "--gaze-csv", str(bad), "--keep-zones")


def test_label_geometry_mismatch_is_skipped_or_paired_by_index(real, tmp_path, monkeypatch):
    grid = real_label(real, "Prostate3T-01-0019")
    write_series(tmp_path / "in" / "Prostate3T-01-0019" / "s", grid, array(grid), "Prostate3T-01-0019", seed=6)
    shifted = sitk.Image(grid)
    shifted.SetOrigin(tuple(np.array(grid.GetOrigin()) + np.array([0.0, 5.0, 0.0])))
    sitk.WriteImage(shifted, str(tmp_path / "in" / "Prostate3T-01-0019.nrrd"))
    with pytest.raises(ValueError, match="no training case left .* skipped: geometry_mismatch 1 "
                                         r"\(Prostate3T-01-0019\)"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(tmp_path / "in"), "-d", "817", "-np", "0")
    printed = convert(tmp_path / "raw", monkeypatch, "-i", str(tmp_path / "in"), "-d", "817", "-np", "0",
                      "--ignore-label-geometry")
    assert "warning Prostate3T-01-0019: paired by voxel index" in printed and "origins 5 mm apart" in printed
    folder = tmp_path / "raw" / "Dataset817_NCIISBI"
    label = read(folder / "labelsTr" / "Prostate3T-01-0019.nii.gz")
    np.testing.assert_array_equal(array(label), array(grid) > 0)
    assert np.allclose(label.GetOrigin(), grid.GetOrigin(), atol=1e-3)


def test_broken_series_and_labels_name_the_file(real, tmp_path, monkeypatch):
    grid = real_label(real, "Prostate3T-01-0019")
    series = tmp_path / "in" / "Prostate3T-01-0019" / "s"
    write_series(series, grid, array(grid), "Prostate3T-01-0019", seed=7, keep=[z for z in range(18) if z != 9])
    (tmp_path / "in" / "Prostate3T-01-0019.nrrd").symlink_to(real["labels"] / "Prostate3T-01-0019.nrrd")
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match=r"Prostate3T-01-0019\): slice steps are not uniform .* slices are missing"):
        convert(raw, monkeypatch, "-i", str(tmp_path / "in"), "-d", "818")
    broken = series / "IM99.dcm"
    broken.write_text("not DICOM")
    with pytest.raises(ValueError, match=f"{broken}: cannot be read as a DICOM file"):
        convert(raw, monkeypatch, "-i", str(tmp_path / "in"), "-d", "818")
    assert not raw.exists() or os.listdir(raw) == []


def test_label_values_are_checked_while_writing_and_nothing_is_left(real, tmp_path, monkeypatch):
    grid = real_label(real, "Prostate3T-01-0019")
    write_series(tmp_path / "in" / "Prostate3T-01-0019" / "s", grid, array(grid), "Prostate3T-01-0019", seed=8)
    wrong = sitk.Image(grid)
    wrong[10, 10, 3] = 7
    path = tmp_path / "in" / "Prostate3T-01-0019.nrrd"
    sitk.WriteImage(wrong, str(path))
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match=rf"{path}: label values \[7\] found"):
        convert(raw, monkeypatch, "-i", str(tmp_path / "in"), "-d", "819", "-np", "2")
    assert os.listdir(raw) == []


def test_label_file_names(tmp_path):
    folder = tmp_path / "labels"
    (folder / "a").mkdir(parents=True)
    for name in ("ProstateDx-01-0006.nrrd", "a/ProstateDx-01-0006_correctedLabels.nrrd",
                 "Prostate3T-03-0001_truth.nrrd", "Prostate3T-01-0001_seg.nrrd"):
        (folder / name).write_text("")
    labels, unused = nci_isbi.find_labels(str(folder))
    assert labels == {"Prostate3T-03-0001": str(folder / "Prostate3T-03-0001_truth.nrrd"),
                      "ProstateDx-01-0006": str(folder / "a" / "ProstateDx-01-0006_correctedLabels.nrrd")}
    assert unused == [str(folder / "Prostate3T-01-0001_seg.nrrd"), str(folder / "ProstateDx-01-0006.nrrd")]
    (folder / "Prostate3T-03-0001.nrrd").write_text("")
    with pytest.raises(ValueError, match="case Prostate3T-03-0001 has 2 label files"):
        nci_isbi.find_labels(str(folder))


def test_grid_match_accepts_reordered_axes_and_rejects_shifts(real):
    label = real_label(real, "Prostate3T-01-0008")

    def grid(image):
        return nci_isbi._Grid(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())

    assert nci_isbi.grid_match(grid(label), grid(label)) == (pytest.approx(0, abs=1e-6), True)
    deviation, same_axes = nci_isbi.grid_match(grid(flipped_label(label)), grid(label))
    assert deviation < 1e-3 and not same_axes
    half_voxel = sitk.Image(label)
    half_voxel.SetOrigin(tuple(np.array(label.GetOrigin()) + 0.3 * np.array(label.GetSpacing()[0]) *
                               np.array(label.GetDirection()).reshape(3, 3)[:, 0]))
    assert nci_isbi.grid_match(grid(half_voxel), grid(label))[0] == pytest.approx(0.3, abs=1e-3)
    one_slice_off = sitk.Image(label)
    one_slice_off.SetOrigin(label.TransformIndexToPhysicalPoint((0, 0, 1)))
    assert nci_isbi.grid_match(grid(one_slice_off), grid(label)) is None


def test_help_and_gaze_settings_need_the_csv(download, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "nci_isbi", "-h"])
    assert exit_info.value.code == 0 and "--keep-zones" in capsys.readouterr().out
    with pytest.raises(ValueError, match="need --gaze-csv"):
        convert(tmp_path, monkeypatch, "-i", str(download), "-d", "820", "--sigma", "40")

"""``nnunet_ext convert nih_pancreas`` on tiny synthetic TCIA downloads: no Pancreas-CT scan is on hand, so every
patient's DICOM series holds slices of the real TotalSegmentator example CT (a crop around the pancreas: Hounsfield
units, its 3 mm grid and orientation), one file per slice with ImagePositionPatient / ImageOrientationPatient, the
file names in an order that differs from the slice positions and instance numbers that fall along the normal; the
label is TotalSegmentator's pancreas (class 7) of that CT on the same physical grid, as TCIA's labelNNNN.nii.gz (for
one patient stored head-to-feet). The DTC split test uses a download of all 82 patients with 8 x 8 x 3 volumes."""
import json
import shutil
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared
from nnunet_ext.dataset_conversion import nih_pancreas
from test_convert_btcv import no_dataset_left

UID_ROOT = "1.2.826.0.1.3680043.2.1125.7"
PANCREAS = 7
"""TotalSegmentator's pancreas class."""


def real_ct(box: Sequence[slice]) -> Tuple[sitk.Image, sitk.Image]:
    """The TotalSegmentator example CT and its pancreas mask (uint8 0 / 1), cropped to ``box`` (x, y, z)."""
    folder = require_shared("TotalSegmentator_examples/example_ct_sm.nii.gz") / "TotalSegmentator_examples"
    ct = sitk.ReadImage(str(folder / "example_ct_sm.nii.gz"))[box]
    seg = sitk.ReadImage(str(folder / "example_seg.nii.gz"))[box]
    mask = sitk.Cast(seg == PANCREAS, sitk.sitkUInt8)
    mask.CopyInformation(ct)
    return ct, mask


def write_dicom(folder: Path, volume: sitk.Image, patient: str, uid: str, slices: Optional[Sequence[int]] = None):
    """``volume``'s slices ``slices`` (default: all) as one DICOM file each, named in a shuffled order."""
    folder.mkdir(parents=True)
    depth = volume.GetSize()[2]
    names = np.random.default_rng(len(patient) + depth).permutation(depth) + 1
    row, column = np.array(volume.GetDirection()).reshape(3, 3).T[:2]
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    for z in range(depth) if slices is None else slices:
        plane = volume[:, :, z]
        position = volume.TransformIndexToPhysicalPoint((0, 0, z))
        for tag, value in (("0008|0060", "CT"), ("0008|0016", "1.2.840.10008.5.1.4.1.1.2"), ("0010|0020", patient),
                           ("0020|000d", f"{uid}.1"), ("0020|000e", f"{uid}.2"), ("0008|0018", f"{uid}.3.{z}"),
                           ("0020|0013", str(depth - z)), ("0020|0032", "\\".join(f"{v:.6f}" for v in position)),
                           ("0020|0037", "\\".join(f"{v:g}" for v in [*row, *column])),
                           ("0018|0050", f"{volume.GetSpacing()[2]:g}")):
            plane.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"1-{names[z]:03d}.dcm"))
        writer.Execute(plane)


def head_to_feet(label: sitk.Image) -> sitk.Image:
    """The same label stored with its slices reversed: origin at the last slice, slice direction negated."""
    stored = sitk.GetImageFromArray(sitk.GetArrayFromImage(label)[::-1].copy())
    stored.SetSpacing(label.GetSpacing())
    stored.SetOrigin(label.TransformIndexToPhysicalPoint((0, 0, label.GetSize()[2] - 1)))
    stored.SetDirection(tuple((np.array(label.GetDirection()).reshape(3, 3) * (1, 1, -1)).ravel()))
    return stored


def add_patient(root: Path, number: int, ct: sitk.Image, label: Optional[sitk.Image], folder_name: str = "PANCREAS_",
                patient_id: Optional[str] = None, slices: Optional[Sequence[int]] = None) -> Path:
    """Patient ``number`` in TCIA's layout (``Pancreas-CT/PANCREAS_NNNN/<study>/<series>/``) and its label under
    ``TCIA_pancreas_labels-02-05-2017``; returns the series folder."""
    series = root / "Pancreas-CT" / f"{folder_name}{number:04d}" / f"11-24-2015-PANCREAS{number:04d}-Pancreas-{number}"\
        / f"Pancreas-{90000 + number}"
    write_dicom(series, ct, f"PANCREAS_{number:04d}" if patient_id is None else patient_id, f"{UID_ROOT}.{number}",
                slices)
    if label is not None:
        labels = root / "TCIA_pancreas_labels-02-05-2017"
        labels.mkdir(exist_ok=True)
        sitk.WriteImage(label, str(labels / f"label{number:04d}.nii.gz"), useCompression=True)
    return series


convert = converter("nih_pancreas")


def read(path: Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


@pytest.fixture(scope="module")
def scan():
    return real_ct((slice(24, 72), slice(40, 72), slice(0, 22)))


def test_slices_ordered_by_position_and_labels_paired_by_grid(scan, tmp_path, monkeypatch):
    ct, mask = scan
    download = tmp_path / "tcia"
    series = add_patient(download, 1, ct, mask)
    add_patient(download, 2, ct, head_to_feet(mask), folder_name="Pancreas-", patient_id="anonymous")
    by_name = sorted(series.iterdir())
    positions = [float(sitk.ReadImage(str(p)).GetOrigin()[2]) for p in by_name]
    assert positions != sorted(positions) and positions != sorted(positions, reverse=True)
    convert(tmp_path / "raw", monkeypatch, "-i", str(download), "-d", "735", "-np", "2")
    folder = tmp_path / "raw" / "Dataset735_NIHPancreas"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "CT"} and dataset_json["labels"] == {"background": 0, "pancreas": 1}
    assert dataset_json["numTraining"] == 2 and dataset_json["numUnlabeled"] == 0
    assert "Roth" in dataset_json["reference"]
    cases = dataset_json["nih_pancreas_cases"]
    assert cases["pancreas_0001"]["label_grid"] == "same grid"
    assert cases["pancreas_0002"]["label_grid"] == "same voxels, label axes reordered or flipped"
    for case in ("pancreas_0001", "pancreas_0002"):
        image, label = read(folder / "imagesTr" / f"{case}_0000.nii.gz"), read(folder / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_array_equal(array(image), array(ct))
        np.testing.assert_array_equal(array(label), array(mask))
        for written in (image, label):
            assert np.allclose(written.GetOrigin(), ct.GetOrigin(), atol=1e-4)
            assert np.allclose(written.GetDirection(), ct.GetDirection()) and np.allclose(written.GetSpacing(), 3.0)
    assert array(mask).sum() == 644


@pytest.fixture(scope="module")
def tiny():
    """An 8 x 8 x 3 crop of the real CT, part pancreas."""
    ct, mask = real_ct((slice(60, 68), slice(58, 66), slice(5, 8)))
    assert 0 < array(mask).sum() < array(mask).size
    return ct, mask


@pytest.fixture(scope="module")
def all_patients(tiny, tmp_path_factory) -> Path:
    """A download of the 82 Pancreas-CT patients, each the tiny crop with its pancreas."""
    root = tmp_path_factory.mktemp("tcia82")
    for number in range(1, 83):
        add_patient(root, number, *tiny)
    return root


def subset(download: Path, folder: Path, leave_out: Sequence[int] = ()) -> Path:
    """``download`` without the patients ``leave_out``, as symbolic links."""
    for sub, number_at in (("Pancreas-CT", slice(-4, None)), ("TCIA_pancreas_labels-02-05-2017", slice(5, 9))):
        (folder / sub).mkdir(parents=True)
        for item in (download / sub).iterdir():
            if int(item.name[number_at]) not in leave_out:
                (folder / sub / item.name).symlink_to(item)
    return folder


def cases_in(folder: Path, sub: str):
    return sorted(p.name.split(".")[0].removesuffix("_0000") for p in (folder / sub).iterdir())


def test_dtc_split_writes_12_labeled_50_unlabeled_20_test(all_patients, tmp_path, monkeypatch):
    split = nih_pancreas.dtc_split()
    assert split["labeled"][:3] == ["pancreas_0057", "pancreas_0018", "pancreas_0062"]
    assert {role: len(ids) for role, ids in split.items()} == {"labeled": 12, "unlabeled": 50, "test": 20}
    convert(tmp_path, monkeypatch, "-i", str(all_patients), "-d", "735", "--split", "dtc", "-np", "0")
    folder = tmp_path / "Dataset735_NIHPancreasDTC"
    assert cases_in(folder, "imagesTr") == cases_in(folder, "labelsTr") == sorted(split["labeled"])
    assert cases_in(folder, "imagesTrUnlabeled") == cases_in(folder, "labelsTrReference") == sorted(split["unlabeled"])
    assert cases_in(folder, "imagesTs") == cases_in(folder, "labelsTs") == sorted(split["test"])
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["numTraining"] == 12 and dataset_json["numUnlabeled"] == 50
    record = dataset_json["nih_pancreas_split"]
    assert record["split"] == "dtc" and record["labeled"] == split["labeled"] and record["missing"] == []


def test_dtc_split_with_absent_patients(all_patients, tiny, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    without_test_case = subset(all_patients, tmp_path / "no25", leave_out=(25,))
    with pytest.raises(ValueError, match="cases of the DTC split that lack a DICOM series or a label: pancreas_0025; "
                                         "pass --only-present"):
        convert(raw, monkeypatch, "-i", str(without_test_case), "-d", "735", "--split", "dtc")
    without_labeled = subset(all_patients, tmp_path / "no57", leave_out=(57,))
    with pytest.raises(ValueError, match="labeled cases of the DTC split that lack a DICOM series or a label: "
                                         "pancreas_0057; the labeled subset must be complete"):
        convert(raw, monkeypatch, "-i", str(without_labeled), "-d", "735", "--split", "dtc", "--only-present")
    extra = subset(all_patients, tmp_path / "with83")
    add_patient(extra, 83, *tiny)
    with pytest.raises(ValueError, match="pancreas_0083: not in the DTC split lists"):
        convert(raw, monkeypatch, "-i", str(extra), "-d", "735", "--split", "dtc")
    assert no_dataset_left(raw)
    printed = convert(raw, monkeypatch, "-i", str(without_test_case), "-d", "735", "--split", "dtc",
                      "--only-present", "-np", "0")
    assert "DTC split cases absent from the download: pancreas_0025" in printed
    folder = raw / "Dataset735_NIHPancreasDTC"
    assert len(cases_in(folder, "labelsTs")) == 19 and "pancreas_0025" not in cases_in(folder, "imagesTs")
    assert json.loads((folder / "dataset.json").read_text())["nih_pancreas_split"]["missing"] == ["pancreas_0025"]


def test_bad_downloads_fail_naming_the_series_or_file_and_leave_nothing(scan, tmp_path, monkeypatch):
    ct, mask = scan
    raw = tmp_path / "raw"

    def attempt(name: str, pattern: str, build) -> None:
        download = tmp_path / name
        build(download)
        with pytest.raises(ValueError, match=pattern):
            convert(raw, monkeypatch, "-i", str(download), "-d", "735", "-np", "0")

    def duplicate(root):
        series = add_patient(root, 3, ct, mask)
        shutil.copy(sorted(series.iterdir())[0], series / "1-999.dcm")

    attempt("duplicate", r"DICOM series .*Pancreas-90003 \(case pancreas_0003\): .* lie at the same position",
            duplicate)
    attempt("gap", r"Pancreas-90004 \(case pancreas_0004\): slice steps are not uniform .* slices are missing",
            lambda root: add_patient(root, 4, ct, mask, slices=[z for z in range(22) if z != 9]))

    def shifted(root):
        moved = sitk.Image(mask)
        moved.SetOrigin(tuple(np.array(mask.GetOrigin()) + (4.5, 0.0, 0.0)))
        add_patient(root, 5, ct, moved)

    attempt("shifted", r"case pancreas_0005: the label is not on the DICOM series' voxel grid: .*origins 4\.5 mm apart"
                       r".*Pancreas-90005 vs label .*label0005\.nii\.gz", shifted)
    attempt("slices", r"the DICOM series has 22 slices, the label 21 .*label0006\.nii\.gz",
            lambda root: add_patient(root, 6, ct, mask[:, :, :21]))
    twos = sitk.Image(mask) * 2
    attempt("values", r"label0007\.nii\.gz: label values \[2\] are not NIH Pancreas-CT labels",
            lambda root: add_patient(root, 7, ct, twos))
    def unpaired(root):
        add_patient(root, 8, ct, None)
        add_patient(root, 10, ct, mask)
        sitk.WriteImage(mask, str(root / "TCIA_pancreas_labels-02-05-2017" / "label0012.nii.gz"))

    attempt("unpaired", r"DICOM series without a label under .*Pancreas-90008 \(pancreas_0008\); labels without a "
                        r"DICOM series: .*label0012\.nii\.gz; pass --only-present", unpaired)
    attempt("unnamed", r"no folder above it is named like an NIH Pancreas-CT case \(e\.g\. PANCREAS_0001\) and its "
                       r"PatientID 'anonymous' is not one either",
            lambda root: add_patient(root, 9, ct, mask, folder_name="scan", patient_id="anonymous"))
    attempt("empty", r"holds no DICOM file \(\*\.dcm\); expected the TCIA layout Pancreas-CT/PANCREAS_NNNN",
            lambda root: (root / "TCIA_pancreas_labels-02-05-2017").mkdir(parents=True))
    assert no_dataset_left(raw)

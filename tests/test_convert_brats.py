"""``nnunet_ext convert brats`` on real files: the BraTS 2023 case of the shared data (four sequences, no
segmentation → imagesTs) and the BraTS 2015 case with its tumour label, placed into a 2018–2021-style folder: its
two real sequences (FLAIR, T1c), two synthetic ones (T1, T2: noise on its grid), and its label written in the
2018–2021 codes (2015's 1 necrosis and 3 non-enhancing → 1, 2 edema → 2, 4 enhancing → 4)."""
import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared, with_first_voxel

CASE_2018 = "Brats18_2013_6_1"
CODES_2015_TO_2018 = {1: 1, 2: 2, 3: 1, 4: 4}
CODES_2015_TO_OURS = {1: 2, 2: 1, 3: 2, 4: 3}


@pytest.fixture(scope="module")
def shared() -> Path:
    return require_shared("BraTS/BraTS2023_GLI/BraTS-GLI-00001-000",
                          "BraTS/BraTS2015_deepmedic/brats_2013_pat0006_1") / "BraTS"


def release_2018(shared: Path, folder: Path, case: str = CASE_2018, seg: bool = True) -> Path:
    """A 2018-style case folder built from the real BraTS 2015 case (see the module docstring)."""
    source = shared / "BraTS2015_deepmedic" / "brats_2013_pat0006_1"
    case_folder = folder / case
    case_folder.mkdir(parents=True)
    flair = sitk.ReadImage(str(source / "Flair_subtrMeanDivStd.nii.gz"))
    sitk.WriteImage(flair, str(case_folder / f"{case}_flair.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(source / "T1c_subtrMeanDivStd.nii.gz")),
                    str(case_folder / f"{case}_t1ce.nii.gz"))
    rng = np.random.default_rng(0)
    for kind in ("t1", "t2"):
        noise = sitk.GetImageFromArray(rng.normal(size=sitk.GetArrayFromImage(flair).shape).astype(np.float32))
        noise.CopyInformation(flair)
        sitk.WriteImage(noise, str(case_folder / f"{case}_{kind}.nii.gz"))
    if seg:
        label = sitk.ReadImage(str(source / "OTMultiClass.nii.gz"))
        codes = np.rint(sitk.GetArrayFromImage(label)).astype(np.uint8)
        written = np.zeros_like(codes)
        for old, new in CODES_2015_TO_2018.items():
            written[codes == old] = new
        image = sitk.GetImageFromArray(written)
        image.CopyInformation(label)
        sitk.WriteImage(image, str(case_folder / f"{case}_seg.nii.gz"))
    return case_folder


convert = converter("brats")


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture(scope="module")
def converted_2018(shared, tmp_path_factory):
    source = tmp_path_factory.mktemp("brats18")
    release_2018(shared, source)
    raw = tmp_path_factory.mktemp("raw")
    with pytest.MonkeyPatch.context() as mp:
        printed = convert(raw, mp, "-i", str(source), "-d", "721", "-np", "2")
    return {"source": source, "folder": raw / "Dataset721_BraTS", "printed": printed}


def test_2018_case_channels_in_order_and_labels_in_nnunets_convention(shared, converted_2018):
    folder, case_folder = converted_2018["folder"], converted_2018["source"] / CASE_2018
    assert names(folder / "imagesTr") == [f"{CASE_2018}_{i:04d}.nii.gz" for i in range(4)]
    for channel, kind in enumerate(("t1", "t1ce", "t2", "flair")):
        written = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "imagesTr" / f"{CASE_2018}_{channel:04d}.nii.gz")))
        np.testing.assert_array_equal(written, sitk.GetArrayFromImage(sitk.ReadImage(
            str(case_folder / f"{CASE_2018}_{kind}.nii.gz"))))
    codes = np.rint(sitk.GetArrayFromImage(sitk.ReadImage(
        str(shared / "BraTS2015_deepmedic" / "brats_2013_pat0006_1" / "OTMultiClass.nii.gz")))).astype(int)
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / f"{CASE_2018}.nii.gz")))
    expected = np.zeros_like(codes)
    for old, ours in CODES_2015_TO_OURS.items():
        expected[codes == old] = ours
    np.testing.assert_array_equal(label, expected)
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3}
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
    assert dataset_json["labels"] == {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3],
                                      "enhancing_tumor": [3]}
    assert dataset_json["regions_class_order"] == [1, 2, 3] and dataset_json["brats_release"] == "2018"


def test_stock_nnunet_accepts_the_regions_dataset(converted_2018):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    with contextlib.redirect_stdout(io.StringIO()):
        verify_dataset_integrity(str(converted_2018["folder"]), 1)


def test_labels_as_labels(converted_2018, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(converted_2018["source"]), "-d", "722", "--labels-as", "labels",
            "--release", "2018", "-np", "0")
    dataset_json = json.loads((tmp_path / "Dataset722_BraTS" / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "edema": 1, "non_enhancing_and_necrosis": 2,
                                      "enhancing_tumor": 3}
    assert "regions_class_order" not in dataset_json


def test_2023_validation_case_goes_to_imagesTs(shared, tmp_path, monkeypatch):
    """The real 2023 case has no segmentation: a validation release, given after a training release (a 2023-named
    copy of the 2018-style case, its values 4 → 3 as 2023 writes enhancing tumour)."""
    training = tmp_path / "training"
    case_2018 = release_2018(shared, tmp_path / "as_2018", "case")
    (training / "BraTS-GLI-99999-000").mkdir(parents=True)
    for old, new in (("t1", "t1n"), ("t1ce", "t1c"), ("t2", "t2w"), ("flair", "t2f"), ("seg", "seg")):
        image = sitk.ReadImage(str(case_2018 / f"case_{old}.nii.gz"))
        if old == "seg":
            values = sitk.GetArrayFromImage(image)
            values[values == 4] = 3
            changed = sitk.GetImageFromArray(values)
            changed.CopyInformation(image)
            image = changed
        sitk.WriteImage(image, str(training / "BraTS-GLI-99999-000" / f"BraTS-GLI-99999-000-{new}.nii.gz"))
    with pytest.raises(ValueError, match=r"has a segmentation \(a validation release\?\): give the training"):
        convert(tmp_path, monkeypatch, "-i", str(shared / "BraTS2023_GLI"), "-d", "723")
    convert(tmp_path, monkeypatch, "-i", str(training), str(shared / "BraTS2023_GLI"), "-d", "723", "-np", "0")
    folder = tmp_path / "Dataset723_BraTS"
    assert names(folder / "imagesTs") == [f"BraTS-GLI-00001-000_{i:04d}.nii.gz" for i in range(4)]
    assert names(folder / "labelsTr") == ["BraTS-GLI-99999-000.nii.gz"] and not (folder / "labelsTs").exists()
    label = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / "BraTS-GLI-99999-000.nii.gz")))
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3}
    case = shared / "BraTS2023_GLI" / "BraTS-GLI-00001-000"
    for channel, kind in enumerate(("t1n", "t1c", "t2w", "t2f")):
        written = sitk.ReadImage(str(folder / "imagesTs" / f"BraTS-GLI-00001-000_{channel:04d}.nii.gz"))
        np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(
            sitk.ReadImage(str(case / f"BraTS-GLI-00001-000-{kind}.nii.gz"))))
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["brats_release"] == "2023" and dataset_json["numTraining"] == 1
    with pytest.raises(ValueError, match="--release 2020 expects the 2018-2021 file names"):
        convert(tmp_path, monkeypatch, "-i", str(shared / "BraTS2023_GLI"), "-d", "724", "--release", "2020")


def test_broken_releases_name_the_problem_and_leave_nothing(shared, converted_2018, tmp_path, monkeypatch):
    mixed = tmp_path / "mixed"
    release_2018(shared, mixed)
    (mixed / "BraTS-GLI-00001-000").symlink_to(shared / "BraTS2023_GLI" / "BraTS-GLI-00001-000")
    with pytest.raises(ValueError, match="mixes BraTS releases"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(mixed), "-d", "725")
    unsegmented = tmp_path / "unsegmented"
    (unsegmented / CASE_2018).mkdir(parents=True)
    for path in (converted_2018["source"] / CASE_2018).iterdir():
        (unsegmented / CASE_2018 / path.name).symlink_to(path)
    release_2018(shared, unsegmented, "Brats18_2013_7_1", seg=False)
    with pytest.raises(ValueError, match="1 case\\(s\\) have no segmentation: Brats18_2013_7_1"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(unsegmented), "-d", "725")
    (unsegmented / "Brats18_2013_7_1" / "Brats18_2013_7_1_t2.nii.gz").unlink()
    with pytest.raises(ValueError, match="Brats18_2013_7_1 lacks Brats18_2013_7_1_t2.nii.gz"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(unsegmented), "-d", "725")
    wrong = tmp_path / "wrong_values"
    case_folder = release_2018(shared, wrong)
    with_first_voxel(case_folder / f"{CASE_2018}_seg.nii.gz", 3)
    with pytest.raises(ValueError, match=r"_seg\.nii\.gz: label values \[3\] are not BraTS 2018-2021 labels"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(wrong), "-d", "725", "-np", "0")
    assert not (tmp_path / "raw").exists() or not any(p.name.startswith(("Dataset725", "."))
                                                       for p in (tmp_path / "raw").iterdir())

"""``nnunet_ext convert myops`` on the 10 real MyoPS cases of the shared data: channels, label mapping (voxel
counts per code), the recorded split, nnU-Net's integrity check, and the errors for broken inputs."""
import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared
from nnunet_ext.dataset_conversion.held_out import split_ids
from nnunet_ext.dataset_conversion.myops import LABEL_CODES

CASES = [f"Case{3001 + i}" for i in range(10)]


@pytest.fixture(scope="module")
def source() -> Path:
    return require_shared("MyoPS_multiseq/Train") / "MyoPS_multiseq" / "Train"


convert = converter("myops")


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    with pytest.MonkeyPatch.context() as mp:
        convert(raw, mp, "-i", str(source), "-d", "705", "-np", "2")
    return raw / "Dataset705_MyoPS"


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def test_channels_split_and_dataset_json(converted):
    train, test = split_ids(CASES, 0.2, 0)
    assert names(converted / "imagesTr") == [f"{c}_{i:04d}.nii.gz" for c in train for i in range(3)]
    assert names(converted / "labelsTs") == [f"{c}.nii.gz" for c in test] and len(test) == 2
    dataset_json = json.loads((converted / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "C0", "1": "LGE", "2": "T2"}
    assert dataset_json["labels"] == {"background": 0, "lv_blood_pool": 1, "myocardium": 2, "rv_blood_pool": 3,
                                      "edema": 4, "scar": 5}
    assert (dataset_json["myops_split"]["train"], dataset_json["myops_split"]["test"]) == (train, test)


def test_images_are_the_sequences_and_labels_the_mapped_codes(source, converted):
    for case in CASES:
        part = "Tr" if (converted / "labelsTr" / f"{case}.nii.gz").exists() else "Ts"
        for channel, sequence in enumerate(("C0", "LGE", "T2")):
            written = sitk.ReadImage(str(converted / f"images{part}" / f"{case}_{channel:04d}.nii.gz"))
            original = sitk.ReadImage(str(source / case / f"{case}_{sequence}.nii.gz"))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(written), sitk.GetArrayFromImage(original))
            assert written.GetSpacing() == pytest.approx(original.GetSpacing())
        codes = sitk.GetArrayFromImage(sitk.ReadImage(str(source / case / f"{case}_gd.nii.gz")))
        label = sitk.GetArrayFromImage(sitk.ReadImage(str(converted / f"labels{part}" / f"{case}.nii.gz")))
        for code, value in LABEL_CODES.items():
            assert np.array_equal(label == value, codes == code), (case, code)
        assert np.array_equal(label == 0, codes == 0)


def test_stock_nnunet_accepts_the_dataset(converted):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    with contextlib.redirect_stdout(io.StringIO()):
        verify_dataset_integrity(str(converted), 1)


def test_recorded_split_is_reused(source, converted, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(source), "-d", "706", "--split-file", str(converted / "dataset.json"),
            "-np", "0")
    assert names(tmp_path / "Dataset706_MyoPS" / "labelsTs") == names(converted / "labelsTs")


def copied_case(source: Path, folder: Path, case: str = "Case3001") -> Path:
    folder.mkdir(parents=True)
    for path in (source / case).iterdir():
        shutil.copy(path, folder / path.name)
    return folder


def test_unlabeled_case_goes_to_imagesTs(source, tmp_path, monkeypatch):
    data = copied_case(source, tmp_path / "in" / "Case3001")
    copied_case(source, tmp_path / "in" / "Case3002", "Case3002")
    (data / "Case3001_gd.nii.gz").unlink()
    convert(tmp_path / "raw", monkeypatch, "-i", str(tmp_path / "in"), "-d", "707", "--test-fraction", "0", "-np", "0")
    folder = tmp_path / "raw" / "Dataset707_MyoPS"
    assert names(folder / "imagesTs") == [f"Case3001_{i:04d}.nii.gz" for i in range(3)]
    assert names(folder / "labelsTr") == ["Case3002.nii.gz"] and not (folder / "labelsTs").exists()


@pytest.mark.parametrize("problem, message", [
    ("missing_sequence", r"Case3001 lacks Case3001_T2\.nii\.gz"),
    ("unknown_code", r"Case3001_gd\.nii\.gz: label values \[300\] are not MyoPS labels"),
    ("label_grid", r"Case3001.*Case3001_gd\.nii\.gz"),
])
def test_broken_inputs_name_the_file_and_leave_nothing(source, tmp_path, monkeypatch, problem, message):
    data = copied_case(source, tmp_path / "in" / "Case3001")
    label_path = data / "Case3001_gd.nii.gz"
    if problem == "missing_sequence":
        (data / "Case3001_T2.nii.gz").unlink()
    else:
        label = sitk.ReadImage(str(label_path))
        if problem == "unknown_code":
            array = sitk.GetArrayFromImage(label)
            array[0, 0, 0] = 300
            changed = sitk.GetImageFromArray(array)
            changed.CopyInformation(label)
            label = changed
        else:
            label.SetSpacing(tuple(s * 1.5 for s in label.GetSpacing()))
        sitk.WriteImage(label, str(label_path))
    with pytest.raises(ValueError, match=message):
        convert(tmp_path / "raw", monkeypatch, "-i", str(tmp_path / "in"), "-d", "708", "--test-fraction", "0",
                "-np", "0")
    assert not (tmp_path / "raw").exists() or not any(p.name.startswith("Dataset708") or p.name.startswith(".")
                                                       for p in (tmp_path / "raw").iterdir())

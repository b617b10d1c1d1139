"""``nnunet_ext convert acdc`` on the 20 real ACDC volumes of the shared data (10 patients, ED and ES frames, WSL4MIS's
h5 release): the patient split, images and labels as stored, scribbles with nnU-Net's ignore label, nnU-Net's
integrity check, and the errors for broken inputs."""
import contextlib
import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared
from nnunet_ext.dataset_conversion.held_out import split_ids

VOLUMES = "ACDC_h5/ACDC/ACDC_training_volumes"
PATIENTS = [f"patient{i:03d}" for i in range(1, 11)]

convert = converter("acdc")


@pytest.fixture(scope="module")
def source() -> Path:
    return require_shared(VOLUMES) / VOLUMES


@pytest.fixture(scope="module")
def converted(source, tmp_path_factory) -> Path:
    raw = tmp_path_factory.mktemp("raw")
    with pytest.MonkeyPatch.context() as mp:
        convert(raw, mp, "-i", str(source.parent.parent), "-d", "960", "--test-fraction", "0.4", "--spacing", "1.5",
                "1.5", "10", "-np", "2")
    return raw / "Dataset960_ACDC"


def stems(folder: Path):
    return sorted(p.name.split(".")[0] for p in folder.iterdir())


def test_both_frames_of_a_patient_stay_on_one_side_of_the_split(converted):
    train, test = split_ids(PATIENTS, 0.4, 0)
    dataset_json = json.loads((converted / "dataset.json").read_text())
    assert (dataset_json["acdc_split"]["train"], dataset_json["acdc_split"]["test"]) == (train, test)
    assert sorted({case.split("_frame")[0] for case in stems(converted / "labelsTr")}) == train
    assert sorted({case.split("_frame")[0] for case in stems(converted / "labelsTs")}) == test
    assert len(stems(converted / "labelsTr")) == 12 and len(stems(converted / "imagesTs")) == 8, \
        "the 2-D slice files of the release are not converted again"
    assert dataset_json["patients"]["patient001"] == ["patient001_frame01", "patient001_frame12"]
    assert dataset_json["labels"] == {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
    assert dataset_json["channel_names"] == {"0": "MRI"}


def test_images_and_labels_are_the_h5_arrays_with_the_given_spacing(source, converted):
    for path in sorted(source.glob("*.h5")):
        case = path.stem
        part = "Tr" if (converted / "labelsTr" / f"{case}.nii.gz").exists() else "Ts"
        image = sitk.ReadImage(str(converted / f"images{part}" / f"{case}_0000.nii.gz"))
        label = sitk.ReadImage(str(converted / f"labels{part}" / f"{case}.nii.gz"))
        with h5py.File(path, "r") as f:
            np.testing.assert_array_equal(sitk.GetArrayFromImage(image), f["image"][()])
            np.testing.assert_array_equal(sitk.GetArrayFromImage(label), f["label"][()])
        assert image.GetSpacing() == (1.5, 1.5, 10.0)


def test_stock_nnunet_accepts_the_dataset(converted):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    with contextlib.redirect_stdout(io.StringIO()):
        verify_dataset_integrity(str(converted), 1)


def copied(source: Path, folder: Path, names=("patient001_frame01", "patient002_frame01")) -> Path:
    folder.mkdir(parents=True)
    for name in names:
        (folder / f"{name}.h5").write_bytes((source / f"{name}.h5").read_bytes())
    return folder


def test_scribbles_train_with_the_ignore_label_and_keep_the_dense_reference(source, tmp_path, monkeypatch):
    convert(tmp_path / "raw", monkeypatch, "-i", str(copied(source, tmp_path / "in")), "-d", "961", "--test-fraction",
            "0", "--scribbles", "-np", "0")
    folder = tmp_path / "raw" / "Dataset961_ACDC"
    assert json.loads((folder / "dataset.json").read_text())["labels"]["ignore"] == 4
    with h5py.File(source / "patient001_frame01.h5", "r") as f:
        scribble, dense = f["scribble"][()], f["label"][()]
    trained = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTr" / "patient001_frame01.nii.gz")))
    reference = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "labelsTrReference" /
                                                          "patient001_frame01.nii.gz")))
    np.testing.assert_array_equal(trained, scribble)
    np.testing.assert_array_equal(reference, dense)
    assert (trained == 4).mean() > 0.9, "most pixels are unannotated"


@pytest.mark.parametrize("problem, message", [
    ("no_label", r"patient001_frame01\.h5: no 'label' dataset"),
    ("unknown_value", r"patient001_frame01\.h5: label values \[7\] are not ACDC's"),
    ("shapes", r"patient001_frame01\.h5: image \(10, 256, 216\), label \(10, 256, 215\)"),
    ("not_h5", r"patient001_frame01\.h5: cannot be read as an HDF5 file"),
])
def test_broken_inputs_name_the_file_and_leave_nothing(source, tmp_path, monkeypatch, problem, message):
    folder = copied(source, tmp_path / "in")
    path = folder / "patient001_frame01.h5"
    if problem == "not_h5":
        path.write_bytes(b"not an h5 file")
    else:
        with h5py.File(path, "r+") as f:
            label = f["label"][()]
            del f["label"]
            if problem == "unknown_value":
                label[0, 0, 0] = 7
            if problem != "no_label":
                f["label"] = label[..., :-1] if problem == "shapes" else label
    with pytest.raises(ValueError, match=message):
        convert(tmp_path / "raw", monkeypatch, "-i", str(folder), "-d", "962", "--test-fraction", "0", "-np", "0")
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())

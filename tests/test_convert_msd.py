"""``nnunet_ext convert msd`` on two task folders built from real files.

* Task05 Prostate: the 32 real MSD training labels and the real dataset.json of the shared data (labels only),
  with synthetic 4-D images written in the test on each label's grid (MSD's multi-modal layout: the T2 and ADC
  channels along the 4th axis, each filled with its own value pattern so that the split's order shows), two more
  synthetic 4-D images in imagesTs, and macOS ``._`` files beside the real ones.
* A Task09 Spleen-style task made from the TotalSegmentator CT example (real CT, 3 mm) and its spleen
  (TotalSegmentator class 1, a model output), with a dataset.json written as MSD's: 3-D single-channel CT.
"""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared

SPLEEN = 1
"""TotalSegmentator's class of the spleen."""
CHANNEL_OFFSETS = (300, 1000)
"""Synthetic 4-D images: channel c holds ``CHANNEL_OFFSETS[c] + 10 (c + 1) * label``."""


def array_of(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def save_like(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))


def four_d_image(label: sitk.Image) -> sitk.Image:
    """A two-channel 4-D image on the label's grid (4-D spacing 1 and identity direction on the channel axis)."""
    codes = sitk.GetArrayFromImage(label).astype(np.int16)
    channels = np.stack([offset + 10 * (c + 1) * codes for c, offset in enumerate(CHANNEL_OFFSETS)])
    image = sitk.GetImageFromArray(channels, isVector=False)
    direction = np.eye(4)
    direction[:3, :3] = np.reshape(label.GetDirection(), (3, 3))
    image.SetSpacing(label.GetSpacing() + (1.0,))
    image.SetOrigin(label.GetOrigin() + (0.0,))
    image.SetDirection(direction.ravel().tolist())
    return image


@pytest.fixture(scope="module")
def prostate(tmp_path_factory) -> Path:
    shared = require_shared("MSD_Task05_Prostate_labels_only/dataset.json") / "MSD_Task05_Prostate_labels_only"
    task = tmp_path_factory.mktemp("msd") / "Task05_Prostate"
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub).mkdir(parents=True)
    (task / "dataset.json").symlink_to(shared / "dataset.json")
    for path in sorted((shared / "labelsTr").iterdir()):
        (task / "labelsTr" / path.name).symlink_to(path)
        sitk.WriteImage(four_d_image(sitk.ReadImage(str(path))), str(task / "imagesTr" / path.name))
    for case, grid in (("prostate_08", "prostate_00"), ("prostate_22", "prostate_01")):
        sitk.WriteImage(four_d_image(sitk.ReadImage(str(shared / "labelsTr" / f"{grid}.nii.gz"))),
                        str(task / "imagesTs" / f"{case}.nii.gz"))
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (task / sub / "._prostate_00.nii.gz").write_bytes(b"\x00\x05\x16\x07 AppleDouble resource fork")
    return task


convert = converter("msd")


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def test_task05_4d_images_split_into_channels(prostate, tmp_path, monkeypatch):
    printed = convert(tmp_path, monkeypatch, "-i", str(prostate), "-d", "735", "-np", "0")
    assert "32 training cases, 2 test cases" in printed
    folder = tmp_path / "Dataset735_Prostate"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "T2", "1": "ADC"}
    assert dataset_json["labels"] == {"background": 0, "PZ": 1, "TZ": 2}
    assert dataset_json["numTraining"] == 32 and dataset_json["msd_task"] == "Task05_Prostate"
    assert dataset_json["name"] == "PROSTATE" and dataset_json["release"] == "1.0 04/05/2018"
    assert "Radboud" in dataset_json["reference"] and "Medical Segmentation Decathlon" in dataset_json["reference"]
    cases = sorted(p.name[:-7] for p in (prostate / "labelsTr").iterdir() if not p.name.startswith("."))
    assert len(cases) == 32 and names(folder / "labelsTr") == [f"{case}.nii.gz" for case in cases]
    assert names(folder / "imagesTr") == sorted(f"{case}_{c:04d}.nii.gz" for case in cases for c in range(2))
    assert names(folder / "imagesTs") == [f"{case}_{c:04d}.nii.gz" for case in ("prostate_08", "prostate_22")
                                          for c in range(2)]
    for case in cases[:4]:
        label_file = prostate / "labelsTr" / f"{case}.nii.gz"
        assert (folder / "labelsTr" / f"{case}.nii.gz").read_bytes() == label_file.read_bytes()
        label = sitk.ReadImage(str(label_file))
        for c, offset in enumerate(CHANNEL_OFFSETS):
            channel = sitk.ReadImage(str(folder / "imagesTr" / f"{case}_{c:04d}.nii.gz"))
            np.testing.assert_array_equal(sitk.GetArrayFromImage(channel),
                                          offset + 10 * (c + 1) * sitk.GetArrayFromImage(label).astype(np.int16))
            assert channel.GetSize() == label.GetSize()
            np.testing.assert_allclose(channel.GetSpacing(), label.GetSpacing(), rtol=1e-6)
            np.testing.assert_allclose(channel.GetOrigin(), label.GetOrigin(), atol=1e-4)
            np.testing.assert_allclose(channel.GetDirection(), label.GetDirection(), atol=1e-6)


def spleen_task(folder: Path) -> Path:
    """A Task09 Spleen-style folder: two training cases (the CT example, and flipped), one test case."""
    examples = require_shared("TotalSegmentator_examples/example_ct_sm.nii.gz") / "TotalSegmentator_examples"
    ct = sitk.ReadImage(str(examples / "example_ct_sm.nii.gz"))
    spleen = (array_of(examples / "example_seg.nii.gz") == SPLEEN).astype(np.uint8)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (folder / sub).mkdir(parents=True)
    for case, flip in (("spleen_2", False), ("spleen_3", True)):
        for sub, array in (("imagesTr", sitk.GetArrayFromImage(ct)), ("labelsTr", spleen)):
            save_like(array[..., ::-1].copy() if flip else array, ct, folder / sub / f"{case}.nii.gz")
    (folder / "imagesTs" / "spleen_1.nii.gz").symlink_to(examples / "example_ct_sm.nii.gz")
    task = {"name": "Spleen", "description": "Spleen Segmentation", "reference": "Memorial Sloan Kettering Cancer "
            "Center", "licence": "CC-BY-SA 4.0", "relase": "1.0 06/08/2018", "tensorImageSize": "3D",
            "modality": {"0": "CT"}, "labels": {"0": "background", "1": "spleen"}, "numTraining": 2, "numTest": 1,
            "training": [{"image": f"./imagesTr/{c}.nii.gz", "label": f"./labelsTr/{c}.nii.gz"}
                         for c in ("spleen_2", "spleen_3")], "test": ["./imagesTs/spleen_1.nii.gz"]}
    (folder / "dataset.json").write_text(json.dumps(task))
    return folder


def test_3d_ct_task_copied_as_is(tmp_path, monkeypatch):
    task = spleen_task(tmp_path / "Task09_Spleen")
    convert(tmp_path / "raw", monkeypatch, "-i", str(task), "-d", "733", "-np", "0")
    folder = tmp_path / "raw" / "Dataset733_Spleen"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "CT"} and dataset_json["labels"] == {"background": 0, "spleen": 1}
    assert dataset_json["release"] == "1.0 06/08/2018" and dataset_json["tensorImageSize"] == "3D"
    assert names(folder / "imagesTr") == ["spleen_2_0000.nii.gz", "spleen_3_0000.nii.gz"]
    assert names(folder / "imagesTs") == ["spleen_1_0000.nii.gz"]
    for case in ("spleen_2", "spleen_3"):
        assert (folder / "imagesTr" / f"{case}_0000.nii.gz").read_bytes() == \
            (task / "imagesTr" / f"{case}.nii.gz").read_bytes()
        assert (folder / "labelsTr" / f"{case}.nii.gz").read_bytes() == \
            (task / "labelsTr" / f"{case}.nii.gz").read_bytes()
    convert(tmp_path / "named", monkeypatch, "-i", str(task), "-d", "733", "--name", "MSDSpleen", "-np", "0")
    assert names(tmp_path / "named") == ["Dataset733_MSDSpleen"]


def assert_nothing_written(raw: Path) -> None:
    assert not raw.exists() or not any(raw.iterdir()), f"left behind: {names(raw)}"


def test_bad_tasks_name_the_file_and_write_nothing(prostate, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    task = spleen_task(tmp_path / "Task09_Spleen")
    with pytest.raises(ValueError, match="has no dataset.json; expected an MSD task folder"):
        convert(raw, monkeypatch, "-i", str(task / "imagesTr"), "-d", "733")
    good_json = (task / "dataset.json").read_text()
    (task / "dataset.json").write_text(json.dumps({"labels": {"0": "background"}}))
    with pytest.raises(ValueError, match=r"dataset\.json: not an MSD dataset\.json with 'modality' and 'labels'"):
        convert(raw, monkeypatch, "-i", str(task), "-d", "733")
    (task / "dataset.json").write_text(good_json)

    (task / "imagesTr" / "spleen_4.nii.gz").symlink_to(task / "imagesTr" / "spleen_2.nii.gz")
    with pytest.raises(ValueError, match=r"images without a label in labelsTr/: .*imagesTr/spleen_4\.nii\.gz"):
        convert(raw, monkeypatch, "-i", str(task), "-d", "733")
    (task / "imagesTr" / "spleen_4.nii.gz").unlink()

    label_file = task / "labelsTr" / "spleen_3.nii.gz"
    good_label = sitk.ReadImage(str(label_file))
    outside = sitk.GetArrayFromImage(good_label)
    outside[0, 0, 0] = 2
    save_like(outside, good_label, label_file)
    with pytest.raises(ValueError, match=r"labelsTr/spleen_3\.nii\.gz\): label values \[2\] are not among the "
                                         r"declared label values \[0, 1\]"):
        convert(raw, monkeypatch, "-i", str(task), "-d", "733", "-np", "0")
    good_label.SetSpacing((3.0, 3.0, 2.0))
    sitk.WriteImage(good_label, str(label_file))
    with pytest.raises(ValueError, match=r"labelsTr/spleen_3\.nii\.gz\): label geometry differs from the image"):
        convert(raw, monkeypatch, "-i", str(task), "-d", "733", "-np", "0")

    three_d = tmp_path / "Task05_3D"
    for sub in ("imagesTr", "labelsTr"):
        (three_d / sub).mkdir(parents=True)
    (three_d / "dataset.json").symlink_to(prostate / "dataset.json")
    (three_d / "labelsTr" / "prostate_00.nii.gz").symlink_to(prostate / "labelsTr" / "prostate_00.nii.gz")
    (three_d / "imagesTr" / "prostate_00.nii.gz").symlink_to(prostate / "labelsTr" / "prostate_00.nii.gz")
    with pytest.raises(ValueError, match=r"imagesTr/prostate_00\.nii\.gz.*1 channel\(s\) given .* declares 2"):
        convert(raw, monkeypatch, "-i", str(three_d), "-d", "735", "-np", "0")
    assert_nothing_written(raw)

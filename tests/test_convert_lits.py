"""``nnunet_ext convert lits`` on a tiny synthetic LiTS release (the real LiTS is not in the shared data), built
from real files: every volume is the TotalSegmentator CT example (real CT, 122 x 101 x 30 at 3 mm), its LiTS
liver code 1 the example's liver (TotalSegmentator class 5, a model output) and its tumour code 2 synthetic (the
liver voxels of a ball inside the liver). Layout as LiTS ships it: ``Training Batch 1/volume-0.nii`` +
``segmentation-0.nii`` (uncompressed), ``Training Batch 2/volume-1.nii.gz`` + ``segmentation-1.nii.gz`` (the scan
flipped left-right), ``volume-2.nii`` without segmentation, and the test release's ``Test/test-volume-0.nii``."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared

LIVER = 5
"""TotalSegmentator's class of the liver."""


def save(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))


def array_of(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    examples = require_shared("TotalSegmentator_examples/example_ct_sm.nii.gz") / "TotalSegmentator_examples"
    ct = sitk.ReadImage(str(examples / "example_ct_sm.nii.gz"))
    liver = array_of(examples / "example_seg.nii.gz") == LIVER
    z, y, x = np.indices(liver.shape)
    centre = np.argwhere(liver).mean(0).round()
    ball = (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= 16
    codes = np.where(liver, np.where(ball, 2, 1), 0).astype(np.uint8)
    assert (codes == 2).sum() > 50 and (codes == 1).sum() > 30000
    pixels = sitk.GetArrayFromImage(ct)
    folder = tmp_path_factory.mktemp("lits")
    save(pixels, ct, folder / "Training Batch 1" / "volume-0.nii")
    save(codes, ct, folder / "Training Batch 1" / "segmentation-0.nii")
    save(pixels[..., ::-1].copy(), ct, folder / "Training Batch 2" / "volume-1.nii.gz")
    save(codes[..., ::-1].copy(), ct, folder / "Training Batch 2" / "segmentation-1.nii.gz")
    save(pixels, ct, folder / "Training Batch 2" / "volume-2.nii")
    save(pixels, ct, folder / "Test" / "test-volume-0.nii")
    return folder


convert = converter("lits")


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("tumour, expected_labels, workers", [
    ("liver", {"background": 0, "liver": 1}, "2"),
    ("separate", {"background": 0, "liver": 1, "tumor": 2}, "0"),
    ("background", {"background": 0, "liver": 1}, "0"),
])
def test_tumour_modes_case_ids_and_unlabeled_volumes(release, tmp_path, monkeypatch, tumour, expected_labels, workers):
    args = ["-i", str(release), "-d", "732", "-np", workers] + ([] if tumour == "liver" else ["--tumour", tumour])
    printed = convert(tmp_path, monkeypatch, *args)
    folder = tmp_path / "Dataset732_LiTS"
    assert "2 training cases, 2 volumes without segmentation" in printed
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == expected_labels and dataset_json["channel_names"] == {"0": "CT"}
    assert dataset_json["lits_tumour"] == tumour and "LiTS" in dataset_json["reference"]
    assert dataset_json["test_cases_without_label"] == ["lits_2", "lits_test_0"]
    assert names(folder / "imagesTr") == ["lits_0_0000.nii.gz", "lits_1_0000.nii.gz"]
    assert names(folder / "imagesTs") == ["lits_2_0000.nii.gz", "lits_test_0_0000.nii.gz"]
    assert not (folder / "labelsTs").exists()
    for case, batch, ending in (("lits_0", "Training Batch 1", ".nii"), ("lits_1", "Training Batch 2", ".nii.gz")):
        number = case.split("_")[1]
        codes = array_of(release / batch / f"segmentation-{number}{ending}")
        expected = {"liver": codes > 0, "separate": codes, "background": codes == 1}[tumour]
        np.testing.assert_array_equal(array_of(folder / "labelsTr" / f"{case}.nii.gz"), expected)
        np.testing.assert_array_equal(array_of(folder / "imagesTr" / f"{case}_0000.nii.gz"),
                                      array_of(release / batch / f"volume-{number}{ending}"))
    assert (release / "Training Batch 2" / "volume-1.nii.gz").read_bytes() == \
        (folder / "imagesTr" / "lits_1_0000.nii.gz").read_bytes()


def assert_nothing_written(raw: Path) -> None:
    assert not raw.exists() or not any(raw.iterdir()), f"left behind: {names(raw)}"


def linked_copy(release: Path, folder: Path, leave_out=()) -> Path:
    """``folder`` holding links to the release's files (flat), except ``leave_out``."""
    folder.mkdir()
    for path in release.rglob("*.nii*"):
        if path.name not in leave_out:
            (folder / path.name).symlink_to(path)
    return folder


def test_bad_releases_name_the_file_and_write_nothing(release, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match="holds no LiTS file"):
        convert(raw, monkeypatch, "-i", str(tmp_path), "-d", "732")
    with pytest.raises(ValueError, match="does not exist"):
        convert(raw, monkeypatch, "-i", str(tmp_path / "nowhere"), "-d", "732")
    with pytest.raises(ValueError, match=r"holds no segmentation-N\.nii .*nothing to train on"):
        convert(raw, monkeypatch, "-i", str(release / "Test"), "-d", "732")
    orphan = linked_copy(release, tmp_path / "orphan", leave_out=("volume-1.nii.gz",))
    with pytest.raises(ValueError, match=r"without their volume-N file: .*segmentation-1\.nii\.gz"):
        convert(raw, monkeypatch, "-i", str(orphan), "-d", "732")
    twice = linked_copy(release, tmp_path / "twice")
    (twice / "volume-0.nii.gz").symlink_to(release / "Training Batch 2" / "volume-1.nii.gz")
    with pytest.raises(ValueError, match=r"volume-0 is there twice"):
        convert(raw, monkeypatch, "-i", str(twice), "-d", "732")

    codes = array_of(release / "Training Batch 1" / "segmentation-0.nii")
    ct = sitk.ReadImage(str(release / "Training Batch 1" / "volume-0.nii"))
    outside = linked_copy(release, tmp_path / "outside", leave_out=("segmentation-0.nii",))
    save(np.where(codes == 2, 3, codes).astype(np.uint8), ct, outside / "segmentation-0.nii")
    with pytest.raises(ValueError, match=r"segmentation-0\.nii: label values \[3\] are not LiTS labels \(0, 1, 2\)"):
        convert(raw, monkeypatch, "-i", str(outside), "-d", "732", "-np", "0")
    shifted = linked_copy(release, tmp_path / "shifted", leave_out=("segmentation-1.nii.gz",))
    moved = sitk.GetImageFromArray(codes[..., ::-1].copy())
    moved.CopyInformation(ct)
    moved.SetSpacing((3.0, 3.0, 3.5))
    sitk.WriteImage(moved, str(shifted / "segmentation-1.nii.gz"))
    with pytest.raises(ValueError, match=r"segmentation-1\.nii\.gz\): label geometry differs from the image"):
        convert(raw, monkeypatch, "-i", str(shifted), "-d", "732", "-np", "0")
    assert_nothing_written(raw)

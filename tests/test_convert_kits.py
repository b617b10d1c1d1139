"""``nnunet_ext convert kits`` on real KiTS19 segmentations (shared data: cases 00000-00004, labels only) with
synthetic images: KiTS's ``imaging.nii.gz`` is not available here, so each case's image is written in the test on
its label's grid (KiTS19's own geometry: the (z, y, x) axis order with direction IPL), its voxels -50 HU plus 100
inside the kidney and tumour. ``case_00004`` is its real file as shipped (64 x 512 x 512); cases 00000-00003 are
their real labels cropped, with the grid's geometry, to the tumour and 8 voxels around it, to keep the test fast.
KiTS21 / KiTS23 folders are made from the same labels with a synthetic cyst (code 3: a ball of kidney voxels)."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared

CROPPED = ("case_00000", "case_00001", "case_00002", "case_00003")


def array_of(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def save_like(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))


def synthetic_image(label: sitk.Image, path: Path) -> None:
    """A CT-like int16 image on the label's grid (see the module docstring)."""
    save_like((sitk.GetArrayViewFromImage(label) > 0).astype(np.int16) * 100 - 50, label, path)


def cropped_to_tumour(label: sitk.Image, margin: int = 8) -> sitk.Image:
    """The label cut, with its geometry, to the bounding box of its tumour plus ``margin`` voxels."""
    tumour = np.argwhere(sitk.GetArrayViewFromImage(label) == 2)
    low = np.maximum(tumour.min(0)[::-1] - margin, 0)
    high = np.minimum(tumour.max(0)[::-1] + margin + 1, label.GetSize())
    return label[int(low[0]):int(high[0]), int(low[1]):int(high[1]), int(low[2]):int(high[2])]


def with_cyst(codes: np.ndarray) -> np.ndarray:
    """KiTS21/23-style codes: a ball of radius 3 voxels around the first kidney voxel as cyst 3."""
    centre = np.argwhere(codes == 1)[0]
    ball = sum((axis - c) ** 2 for axis, c in zip(np.indices(codes.shape), centre)) <= 9
    return np.where(ball & (codes == 1), 3, codes).astype(np.uint8)


@pytest.fixture(scope="module")
def kits19(tmp_path_factory) -> Path:
    shared = require_shared("KiTS19_labels_only/case_00004/segmentation.nii.gz") / "KiTS19_labels_only"
    folder = tmp_path_factory.mktemp("kits19") / "data"
    for case in CROPPED + ("case_00004",):
        real = shared / case / "segmentation.nii.gz"
        (folder / case).mkdir(parents=True)
        if case == "case_00004":
            label = sitk.ReadImage(str(real))
            (folder / case / "segmentation.nii.gz").symlink_to(real)
        else:
            label = cropped_to_tumour(sitk.ReadImage(str(real)))
            sitk.WriteImage(label, str(folder / case / "segmentation.nii.gz"))
        assert set(np.unique(sitk.GetArrayViewFromImage(label)).tolist()) == {0, 1, 2}
        synthetic_image(label, folder / case / "imaging.nii.gz")
    (folder / "case_00005").mkdir()
    (folder / "case_00005" / "imaging.nii.gz").symlink_to(folder / "case_00003" / "imaging.nii.gz")
    return folder


def release_with_cysts(kits19: Path, folder: Path, segmentation: str) -> Path:
    """KiTS21 (``aggregated_MAJ_seg.nii.gz``) or KiTS23 (``segmentation.nii.gz``) case folders made from the
    cropped KiTS19 cases, each with a synthetic cyst."""
    for case in CROPPED:
        (folder / case).mkdir(parents=True)
        (folder / case / "imaging.nii.gz").symlink_to(kits19 / case / "imaging.nii.gz")
        label = sitk.ReadImage(str(kits19 / case / "segmentation.nii.gz"))
        save_like(with_cyst(sitk.GetArrayFromImage(label)), label, folder / case / segmentation)
    return folder


convert = converter("kits")


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def test_kits19_tumour_as_background_by_default(kits19, tmp_path, monkeypatch):
    printed = convert(tmp_path, monkeypatch, "-i", str(kits19.parent), "-d", "734", "-np", "0")
    folder = tmp_path / "Dataset734_KiTS"
    assert "KiTS19, 5 training cases, 1 cases without segmentation" in printed
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "kidney": 1} and dataset_json["channel_names"] == {"0": "CT"}
    assert dataset_json["kits_release"] == "KiTS19" and "KiTS19 challenge" in dataset_json["reference"]
    assert dataset_json["label_codes"] == {"1": 1, "2": 0}
    assert dataset_json["test_cases_without_label"] == ["case_00005"]
    assert names(folder / "labelsTr") == [f"{case}.nii.gz" for case in CROPPED + ("case_00004",)]
    assert names(folder / "imagesTs") == ["case_00005_0000.nii.gz"]
    for case in CROPPED + ("case_00004",):
        source = kits19 / case
        np.testing.assert_array_equal(array_of(folder / "labelsTr" / f"{case}.nii.gz"),
                                      array_of(source / "segmentation.nii.gz") == 1)
        assert (folder / "imagesTr" / f"{case}_0000.nii.gz").read_bytes() == (source / "imaging.nii.gz").read_bytes()
    written = sitk.ReadImage(str(folder / "labelsTr" / "case_00004.nii.gz"))
    real = sitk.ReadImage(str(kits19 / "case_00004" / "segmentation.nii.gz"))
    assert written.GetSize() == real.GetSize() == (64, 512, 512)
    np.testing.assert_allclose(written.GetDirection(), real.GetDirection())
    np.testing.assert_allclose(written.GetSpacing(), real.GetSpacing())


@pytest.mark.parametrize("tumour, expected_labels", [("kidney", {"background": 0, "kidney": 1}),
                                                     ("separate", {"background": 0, "kidney": 1, "tumor": 2})])
def test_kits19_tumour_merged_or_kept(kits19, tmp_path, monkeypatch, tumour, expected_labels):
    cropped = tmp_path / "cropped"
    for case in CROPPED[2:]:
        (cropped / case).mkdir(parents=True)
        for name in ("imaging.nii.gz", "segmentation.nii.gz"):
            (cropped / case / name).symlink_to(kits19 / case / name)
    convert(tmp_path, monkeypatch, "-i", str(cropped), "-d", "734", "--tumour", tumour, "-np", "0")
    folder = tmp_path / "Dataset734_KiTS"
    assert json.loads((folder / "dataset.json").read_text())["labels"] == expected_labels
    for case in CROPPED[2:]:
        codes = array_of(kits19 / case / "segmentation.nii.gz")
        np.testing.assert_array_equal(array_of(folder / "labelsTr" / f"{case}.nii.gz"),
                                      codes > 0 if tumour == "kidney" else codes)


@pytest.mark.parametrize("release, segmentation, marker", [("21", "aggregated_MAJ_seg.nii.gz", None),
                                                           ("23", "segmentation.nii.gz", "kits23.json"),
                                                           ("23", "segmentation.nii.gz", "instances")])
def test_kits21_and_kits23_with_cysts(kits19, tmp_path, monkeypatch, release, segmentation, marker):
    source = release_with_cysts(kits19, tmp_path / f"kits{release}", segmentation)
    if release == "21":
        (source / "case_00000" / "aggregated_AND_seg.nii.gz").symlink_to(source / "case_00000" / segmentation)
    elif marker == "kits23.json":
        (source / marker).write_text("[]")
    else:
        (source / "case_00001" / marker).mkdir()
    for tumour, expected in (("separate", {"background": 0, "kidney": 1, "tumor": 2, "cyst": 3}),
                             ("background", {"background": 0, "kidney": 1})):
        raw = tmp_path / f"raw_{tumour}"
        convert(raw, monkeypatch, "-i", str(source), "-d", "734", "--tumour", tumour, "--name", f"KiTS{release}",
                "-np", "0")
        folder = raw / f"Dataset734_KiTS{release}"
        dataset_json = json.loads((folder / "dataset.json").read_text())
        assert dataset_json["labels"] == expected and dataset_json["kits_release"] == f"KiTS{release}"
        for case in CROPPED:
            codes = array_of(source / case / segmentation)
            assert 3 in codes
            np.testing.assert_array_equal(array_of(folder / "labelsTr" / f"{case}.nii.gz"),
                                          codes if tumour == "separate" else codes == 1)


def assert_nothing_written(raw: Path) -> None:
    assert not raw.exists() or not any(raw.iterdir()), f"left behind: {names(raw)}"


def linked_cases(kits19: Path, folder: Path, cases=CROPPED[2:]) -> Path:
    """Case folders linking to the cropped KiTS19 cases' files."""
    for case in cases:
        (folder / case).mkdir(parents=True)
        for path in (kits19 / case).iterdir():
            (folder / case / path.name).symlink_to(path)
    return folder


def test_bad_folders_name_the_folder_or_file_and_write_nothing(kits19, tmp_path, monkeypatch):
    raw = tmp_path / "raw"
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "imaging.nii.gz").symlink_to(kits19 / "case_00002" / "imaging.nii.gz")
    with pytest.raises(ValueError, match="holds no KiTS case folder case_XXXXX/"):
        convert(raw, monkeypatch, "-i", str(flat), "-d", "734")
    labels_only = require_shared("KiTS19_labels_only") / "KiTS19_labels_only"
    with pytest.raises(ValueError, match=r"case_00000 has no imaging\.nii\.gz"):
        convert(raw, monkeypatch, "-i", str(labels_only), "-d", "734")

    renamed = linked_cases(kits19, tmp_path / "renamed")
    (renamed / "case_00003" / "segmentation.nii.gz").rename(renamed / "case_00003" / "seg.nii.gz")
    with pytest.raises(ValueError, match=r"case_00003 holds seg\.nii\.gz but no KiTS segmentation: "
                                         r"segmentation\.nii\.gz \(KiTS19, KiTS23\) or aggregated_MAJ_seg"):
        convert(raw, monkeypatch, "-i", str(renamed), "-d", "734")
    images_only = tmp_path / "images_only"
    (images_only / "case_00005").mkdir(parents=True)
    (images_only / "case_00005" / "imaging.nii.gz").symlink_to(kits19 / "case_00005" / "imaging.nii.gz")
    with pytest.raises(ValueError, match="no case folder holds a segmentation.*nothing to train on"):
        convert(raw, monkeypatch, "-i", str(images_only), "-d", "734")

    mixed = linked_cases(kits19, tmp_path / "mixed")
    (mixed / "case_00003" / "segmentation.nii.gz").rename(mixed / "case_00003" / "aggregated_MAJ_seg.nii.gz")
    with pytest.raises(ValueError, match="mixes KiTS releases"):
        convert(raw, monkeypatch, "-i", str(mixed), "-d", "734")
    with pytest.raises(ValueError, match=r"--release 21 expects aggregated_MAJ_seg\.nii\.gz"):
        convert(raw, monkeypatch, "-i", str(linked_cases(kits19, tmp_path / "plain")), "-d", "734", "--release", "21")

    cysts = release_with_cysts(kits19, tmp_path / "kits23_unmarked", "segmentation.nii.gz")
    with pytest.raises(ValueError, match=r"case_00000/segmentation\.nii\.gz: label values \[3\] are not KiTS19 "
                                         r"labels \(0, 1, 2\)"):
        convert(raw, monkeypatch, "-i", str(cysts), "-d", "734", "-np", "0")

    moved = linked_cases(kits19, tmp_path / "moved")
    label = sitk.ReadImage(str(kits19 / "case_00003" / "segmentation.nii.gz"))
    label.SetOrigin(tuple(o + 5.0 for o in label.GetOrigin()))
    (moved / "case_00003" / "segmentation.nii.gz").unlink()
    sitk.WriteImage(label, str(moved / "case_00003" / "segmentation.nii.gz"))
    with pytest.raises(ValueError, match=r"case_00003/segmentation\.nii\.gz\): label geometry differs from the image"):
        convert(raw, monkeypatch, "-i", str(moved), "-d", "734", "-np", "0")
    assert_nothing_written(raw)
    convert(raw, monkeypatch, "-i", str(cysts), "-d", "734", "--release", "23", "-np", "0")
    assert names(raw) == ["Dataset734_KiTS"]

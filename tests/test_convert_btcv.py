"""``nnunet_ext convert btcv`` on a tiny synthetic BTCV release: no BTCV scan is on hand, so the labels are the real
AMOS 2022 label amos_0013 (every second voxel in-plane: its origin, direction and 82 slices at 1.56 mm in-plane)
re-coded to BTCV's codes, on a synthetic CT image (organ-wise Hounsfield values) of the same grid, in BTCV's
``RawData/Training/{img,label}`` + ``RawData/Testing/img`` layout; a second case is the first flipped left-right.
The helpers build the AbdomenCT-1K release of tests/test_convert_abdomenct1k.py too."""
import filecmp
import json
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared

AMOS_ORGANS = {1: "spleen", 2: "right_kidney", 3: "left_kidney", 4: "gallbladder", 5: "esophagus", 6: "liver",
               7: "stomach", 8: "aorta", 9: "inferior_vena_cava", 10: "pancreas", 11: "right_adrenal_gland",
               12: "left_adrenal_gland"}
"""AMOS codes of the organs BTCV also has (AMOS 13-15, duodenum, bladder, prostate/uterus, are not BTCV organs)."""
BTCV_CODES = {"spleen": 1, "right_kidney": 2, "left_kidney": 3, "gallbladder": 4, "esophagus": 5, "liver": 6,
              "stomach": 7, "aorta": 8, "inferior_vena_cava": 9, "pancreas": 11, "right_adrenal_gland": 12,
              "left_adrenal_gland": 13}
LTUDA = {"liver": 1, "spleen": 2, "right_kidney": 3, "left_kidney": 3, "pancreas": 4}
"""LTUDA's values of the AMOS organs, written down here independently of the converters."""


def amos_label() -> Tuple[sitk.Image, np.ndarray]:
    """The real AMOS label amos_0013 at every second voxel in-plane (real anatomy, origin and direction), and its
    array."""
    shared = require_shared("AMOS22_label_only/labelsVa/amos_0013.nii.gz")
    grid = sitk.ReadImage(str(shared / "AMOS22_label_only" / "labelsVa" / "amos_0013.nii.gz"))[::2, ::2, :]
    return grid, sitk.GetArrayFromImage(grid)


def recoded(amos: np.ndarray, codes: Dict[str, int]) -> np.ndarray:
    """The AMOS label array with each AMOS organ written as ``codes[organ]`` (organs not in ``codes``: 0)."""
    out = np.zeros(amos.shape, np.uint8)
    for amos_code, organ in AMOS_ORGANS.items():
        out[amos == amos_code] = codes.get(organ, 0)
    return out


def save(array: np.ndarray, grid: sitk.Image, path: Path) -> Path:
    """``array`` written to ``path`` with ``grid``'s geometry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def synthetic_ct(amos: np.ndarray) -> np.ndarray:
    """A CT-like image for an AMOS label: -90 HU outside the organs, each organ at its own value, plus the slice
    index (so slices differ)."""
    depth = np.arange(amos.shape[0], dtype=np.int16)[:, None, None]
    return np.where(amos > 0, 20 + 10 * amos.astype(np.int16), -90) + depth


def write_case(amos: Tuple[sitk.Image, np.ndarray], image: Path, label: Optional[Path], codes: Dict[str, int],
               flip: bool = False) -> None:
    """One case of a synthetic release: the synthetic CT of the AMOS label (flipped left-right with ``flip``) and,
    unless ``label`` is None, that label re-coded with ``codes``."""
    grid, amos_codes = amos
    source = amos_codes[..., ::-1].copy() if flip else amos_codes
    save(synthetic_ct(source), grid, image)
    if label is not None:
        save(recoded(source, codes), grid, label)


def no_dataset_left(raw: Path) -> bool:
    """Whether ``raw`` holds no dataset and no temporary folder (nothing half-written)."""
    return not raw.exists() or not any(raw.iterdir())


@pytest.fixture(scope="module")
def amos():
    return amos_label()


@pytest.fixture(scope="module")
def release(amos, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("btcv") / "RawData"
    for number, flip in (("0001", False), ("0002", True)):
        write_case(amos, root / "Training" / "img" / f"img{number}.nii.gz",
                   root / "Training" / "label" / f"label{number}.nii.gz", BTCV_CODES, flip)
    write_case(amos, root / "Testing" / "img" / "img0061.nii.gz", None, BTCV_CODES, flip=True)
    return root.parent


convert = converter("btcv")


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_full_label_set_keeps_btcv_codes(release, amos, tmp_path, monkeypatch):
    printed = convert(tmp_path, monkeypatch, "-i", str(release), "-d", "736", "-np", "2")
    folder = tmp_path / "Dataset736_BTCV"
    assert "2 labeled cases (imagesTr, labelsTr), 1 images without a label (imagesTs)" in printed
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "CT"} and dataset_json["numTraining"] == 2
    assert list(dataset_json["labels"].values()) == list(range(14))
    assert dataset_json["labels"]["pancreas"] == 11 and dataset_json["labels"]["portal_and_splenic_vein"] == 10
    assert dataset_json["label_set"] == "full" and "Landman" in dataset_json["reference"]
    assert dataset_json["btcv_cases"] == {"labeled": ["btcv_0001", "btcv_0002"], "unlabeled_test": ["btcv_0061"]}
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["btcv_0001.nii.gz", "btcv_0002.nii.gz"]
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["btcv_0061_0000.nii.gz"]
    assert not (folder / "labelsTs").exists()
    np.testing.assert_array_equal(read(folder / "labelsTr" / "btcv_0001.nii.gz"), recoded(amos[1], BTCV_CODES))
    assert filecmp.cmp(folder / "imagesTr" / "btcv_0002_0000.nii.gz",
                       release / "RawData" / "Training" / "img" / "img0002.nii.gz", shallow=False)
    written = sitk.ReadImage(str(folder / "labelsTr" / "btcv_0002.nii.gz"))
    assert written.GetDirection() == amos[0].GetDirection() and np.allclose(written.GetOrigin(), amos[0].GetOrigin())


def test_ltuda_label_set_merges_the_kidneys_and_drops_other_organs(release, amos, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(release), "-d", "746", "--label-set", "ltuda", "--name", "BTCV4",
            "-np", "0")
    folder = tmp_path / "Dataset746_BTCV4"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "pancreas": 4}
    assert dataset_json["label_mapping"] == {"1": 2, "2": 3, "3": 3, "4": 0, "5": 0, "6": 1, "7": 0, "8": 0, "9": 0,
                                             "10": 0, "11": 4, "12": 0, "13": 0}
    for case, amos_codes in (("btcv_0001", amos[1]), ("btcv_0002", amos[1][..., ::-1])):
        label = read(folder / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_array_equal(label, recoded(amos_codes, LTUDA))
        assert set(np.unique(label).tolist()) == {0, 1, 2, 3, 4}


def broken_copy(release: Path, folder: Path) -> Path:
    """A copy of the release made of symbolic links, to break one file of."""
    for path in release.rglob("*.nii.gz"):
        target = folder / path.relative_to(release)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(path)
    return folder


def test_bad_releases_fail_naming_the_file_and_leave_nothing(release, amos, tmp_path, monkeypatch):
    grid, codes = amos
    raw = tmp_path / "raw"
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.nii.gz").write_text("not BTCV")
    with pytest.raises(ValueError, match=r"holds no BTCV image; expected the layout RawData/Training/img/imgNNNN"):
        convert(raw, monkeypatch, "-i", str(empty), "-d", "736")

    orphan = broken_copy(release, tmp_path / "orphan")
    (orphan / "RawData" / "Training" / "label" / "label0003.nii.gz").symlink_to(
        release / "RawData" / "Training" / "label" / "label0001.nii.gz")
    with pytest.raises(ValueError, match=r"labels without their image: .*label0003\.nii\.gz"):
        convert(raw, monkeypatch, "-i", str(orphan), "-d", "736")

    twice = broken_copy(release, tmp_path / "twice")
    (twice / "extra").mkdir()
    (twice / "extra" / "img0001.nii.gz").symlink_to(release / "RawData" / "Training" / "img" / "img0001.nii.gz")
    with pytest.raises(ValueError, match=r"img0001\.nii\.gz is there twice"):
        convert(raw, monkeypatch, "-i", str(twice), "-d", "736")

    values = broken_copy(release, tmp_path / "values")
    bad = values / "RawData" / "Training" / "label" / "label0002.nii.gz"
    bad.unlink()
    label = recoded(codes, BTCV_CODES)
    label[0, 0, :3] = 14
    save(label, grid, bad)
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}: label values \[14\] are not BTCV labels"):
        convert(raw, monkeypatch, "-i", str(values), "-d", "736", "-np", "2")

    shifted = broken_copy(release, tmp_path / "shifted")
    bad = shifted / "RawData" / "Training" / "label" / "label0002.nii.gz"
    bad.unlink()
    moved = sitk.Image(grid)
    moved.SetOrigin(tuple(np.array(grid.GetOrigin()) + (0.0, 0.0, 5.0)))
    save(recoded(codes, BTCV_CODES), moved, bad)
    with pytest.raises(ValueError, match=rf"btcv_0002.*{re.escape(str(bad))}\): label geometry differs from the image"):
        convert(raw, monkeypatch, "-i", str(shifted), "-d", "736", "-np", "0")
    assert no_dataset_left(raw)

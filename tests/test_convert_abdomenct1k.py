"""``nnunet_ext convert abdomenct1k`` on a tiny synthetic AbdomenCT-1K release: no AbdomenCT-1K scan is on hand, so
the masks are the real AMOS 2022 label amos_0013 (every second voxel in-plane, as in tests/test_convert_btcv.py)
re-coded to AbdomenCT-1K's four codes, on a synthetic CT image of the same grid, in the release's
``AbdomenCT-1K-ImagePart1/Case_XXXXX_0000.nii.gz`` + ``Mask/Case_XXXXX.nii.gz`` layout; a second case is the first
flipped left-right, a third image has no mask."""
import json
import re
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter
from test_convert_btcv import LTUDA, amos_label, no_dataset_left, read, recoded, save, write_case

ABDOMENCT1K_CODES = {"liver": 1, "right_kidney": 2, "left_kidney": 2, "spleen": 3, "pancreas": 4}


@pytest.fixture(scope="module")
def amos():
    return amos_label()


@pytest.fixture(scope="module")
def release(amos, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("abdomenct1k")
    for case, flip in (("Case_00001", False), ("Case_00002", True)):
        write_case(amos, root / "AbdomenCT-1K-ImagePart1" / f"{case}_0000.nii.gz", root / "Mask" / f"{case}.nii.gz",
                   ABDOMENCT1K_CODES, flip)
    write_case(amos, root / "AbdomenCT-1K-ImagePart2" / "Case_00003_0000.nii.gz", None, ABDOMENCT1K_CODES)
    return root


convert = converter("abdomenct1k")


def test_full_label_set_keeps_the_release_codes(release, amos, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(release), "-d", "737", "-np", "0")
    folder = tmp_path / "Dataset737_AbdomenCT1K"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "liver": 1, "kidney": 2, "spleen": 3, "pancreas": 4}
    assert dataset_json["channel_names"] == {"0": "CT"} and "Ma et al." in dataset_json["reference"]
    assert dataset_json["abdomenct1k_cases"] == {"labeled": ["Case_00001", "Case_00002"],
                                                 "unlabeled_test": ["Case_00003"]}
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["Case_00003_0000.nii.gz"]
    np.testing.assert_array_equal(read(folder / "labelsTr" / "Case_00002.nii.gz"),
                                  recoded(amos[1][..., ::-1], ABDOMENCT1K_CODES))


def test_ltuda_label_set_swaps_spleen_and_kidney(release, amos, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(release), "-d", "747", "--label-set", "ltuda", "-np", "0")
    folder = tmp_path / "Dataset747_AbdomenCT1KLTUDA"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "pancreas": 4}
    assert dataset_json["label_mapping"] == {"1": 1, "2": 3, "3": 2, "4": 4} and dataset_json["label_set"] == "ltuda"
    label = read(folder / "labelsTr" / "Case_00001.nii.gz")
    np.testing.assert_array_equal(label, recoded(amos[1], LTUDA))
    assert set(np.unique(label).tolist()) == {0, 1, 2, 3, 4}


def test_bad_releases_fail_naming_the_file_and_leave_nothing(release, amos, tmp_path, monkeypatch):
    grid, codes = amos
    raw = tmp_path / "raw"
    with pytest.raises(ValueError, match="holds no AbdomenCT-1K image; expected the layout AbdomenCT-1K-ImagePart"):
        convert(raw, monkeypatch, "-i", str(release / "Mask"), "-d", "737")

    broken = tmp_path / "broken"
    (broken / "images").mkdir(parents=True)
    (broken / "Mask").mkdir()
    for case in ("Case_00001", "Case_00002"):
        (broken / "images" / f"{case}_0000.nii.gz").symlink_to(
            release / "AbdomenCT-1K-ImagePart1" / f"{case}_0000.nii.gz")
    (broken / "Mask" / "Case_00001.nii.gz").symlink_to(release / "Mask" / "Case_00001.nii.gz")
    (broken / "Mask" / "Case_00004.nii.gz").symlink_to(release / "Mask" / "Case_00001.nii.gz")
    with pytest.raises(ValueError, match=r"labels without their image: .*Mask/Case_00004\.nii\.gz"):
        convert(raw, monkeypatch, "-i", str(broken), "-d", "737")
    (broken / "Mask" / "Case_00004.nii.gz").unlink()

    mask = recoded(codes[..., ::-1], ABDOMENCT1K_CODES)
    mask[-1, -1, -1] = 5
    bad = save(mask, grid, broken / "Mask" / "Case_00002.nii.gz")
    with pytest.raises(ValueError, match=rf"{re.escape(str(bad))}: label values \[5\] are not AbdomenCT-1K labels"):
        convert(raw, monkeypatch, "-i", str(broken), "-d", "737", "-np", "0")

    coarse = sitk.Image(grid)
    coarse.SetSpacing(tuple(np.array(grid.GetSpacing()) * (1.0, 1.0, 1.2)))
    save(recoded(codes[..., ::-1], ABDOMENCT1K_CODES), coarse, bad)
    with pytest.raises(ValueError, match=r"case 'Case_00002' .*Case_00002\.nii\.gz\): label geometry differs"):
        convert(raw, monkeypatch, "-i", str(broken), "-d", "737", "-np", "0")
    assert no_dataset_left(raw)

"""``nnunet_ext convert amos`` on an AMOS-style folder built from real files: the TotalSegmentator CT and MR
examples as training scans (their label maps remapped to AMOS ids — spleen, kidneys, gall bladder, liver,
stomach, pancreas, adrenal glands, bladder, prostate — the other structures set to background; each also flipped
left-right as a second scan), and the real AMOS validation label amos_0013 with a synthetic image on its grid."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared

TOTALSEGMENTATOR_TO_AMOS = {1: 1, 2: 2, 3: 3, 4: 4, 5: 6, 6: 7, 7: 10, 8: 11, 9: 12, 21: 14, 22: 15}


def write(array: np.ndarray, reference: sitk.Image, path: Path) -> None:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    sitk.WriteImage(image, str(path))


def add_scan(folder: Path, part: str, case: str, image: sitk.Image, label: np.ndarray, flip: bool = False) -> None:
    (folder / f"images{part}").mkdir(parents=True, exist_ok=True)
    (folder / f"labels{part}").mkdir(parents=True, exist_ok=True)
    pixels = sitk.GetArrayFromImage(image)
    if flip:
        pixels, label = pixels[..., ::-1].copy(), label[..., ::-1].copy()
    write(pixels, image, folder / f"images{part}" / f"{case}.nii.gz")
    write(label, image, folder / f"labels{part}" / f"{case}.nii.gz")


def remapped(path: Path) -> np.ndarray:
    codes = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    label = np.zeros(codes.shape, np.uint8)
    for ours, amos in TOTALSEGMENTATOR_TO_AMOS.items():
        label[codes == ours] = amos
    return label


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> Path:
    shared = require_shared("TotalSegmentator_examples/example_ct_sm.nii.gz", "AMOS22_label_only/labelsVa")
    examples = shared / "TotalSegmentator_examples"
    folder = tmp_path_factory.mktemp("amos")
    ct, mr = (sitk.ReadImage(str(examples / name)) for name in ("example_ct_sm.nii.gz", "example_mr_sm.nii.gz"))
    ct_label, mr_label = remapped(examples / "example_seg.nii.gz"), remapped(examples / "example_seg_mr.nii.gz")
    add_scan(folder, "Tr", "amos_0001", ct, ct_label)
    add_scan(folder, "Tr", "amos_0002", ct, ct_label, flip=True)
    add_scan(folder, "Tr", "amos_0501", mr, mr_label)
    add_scan(folder, "Tr", "amos_0502", mr, mr_label, flip=True)
    add_scan(folder, "Va", "amos_0507", mr, mr_label)
    amos = sitk.ReadImage(str(shared / "AMOS22_label_only" / "labelsVa" / "amos_0013.nii.gz"))
    noise = np.random.default_rng(0).normal(0, 100, sitk.GetArrayFromImage(amos).shape).astype(np.int16)
    image = sitk.GetImageFromArray(noise)
    image.CopyInformation(amos)
    add_scan(folder, "Va", "amos_0013", image, sitk.GetArrayFromImage(amos).astype(np.uint8))
    return folder


convert = converter("amos")


def cases(folder: Path, sub: str):
    return sorted(p.name[:9] for p in (folder / sub).iterdir()) if (folder / sub).is_dir() else []


def label_of(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


def test_two_partner_datasets_with_one_label_set(release, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(release), "-d", "701", "--num-labeled-ct", "1", "--num-labeled-mr",
            "1", "--seed", "3", "-np", "0")
    ct, mr = tmp_path / "Dataset701_AMOSCT", tmp_path / "Dataset702_AMOSMR"
    for folder, other, channel, test_case in ((ct, mr, "CT", "amos_0013"), (mr, ct, "MRI", "amos_0507")):
        dataset_json = json.loads((folder / "dataset.json").read_text())
        assert dataset_json["nnunet_ext_partner"] == other.name and dataset_json["channel_names"] == {"0": channel}
        assert list(dataset_json["labels"].values()) == list(range(14))
        assert len(cases(folder, "labelsTr")) == 1 and len(cases(folder, "imagesTrUnlabeled")) == 1
        assert cases(folder, "labelsTrReference") == cases(folder, "imagesTrUnlabeled")
        assert cases(folder, "labelsTs") == [test_case]
        assert dataset_json["amos_labeled"] == cases(folder, "labelsTr")
    real = label_of(release / "labelsVa" / "amos_0013.nii.gz")
    assert set(np.unique(real).tolist()) == set(range(16))
    np.testing.assert_array_equal(label_of(ct / "labelsTs" / "amos_0013.nii.gz"), np.where(real > 13, 0, real))
    reference = cases(mr, "labelsTrReference")[0]
    np.testing.assert_array_equal(label_of(mr / "labelsTrReference" / f"{reference}.nii.gz"),
                                  np.where(label_of(release / "labelsTr" / f"{reference}.nii.gz") > 13, 0,
                                           label_of(release / "labelsTr" / f"{reference}.nii.gz")))


def test_keep_all_labels_writes_ct_only_with_16_classes(release, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(release), "-d", "703", "--keep-all-labels", "-np", "0")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("Dataset")) == ["Dataset703_AMOSCT"]
    folder = tmp_path / "Dataset703_AMOSCT"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert list(dataset_json["labels"].values()) == list(range(16)) and "nnunet_ext_partner" not in dataset_json
    np.testing.assert_array_equal(label_of(folder / "labelsTs" / "amos_0013.nii.gz"),
                                  label_of(release / "labelsVa" / "amos_0013.nii.gz"))
    assert cases(folder, "labelsTr") == ["amos_0001", "amos_0002"]


def test_bad_releases_name_the_file_and_write_neither_dataset(release, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="has no imagesTr/ folder"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(release / "labelsTr"), "-d", "705")
    broken = tmp_path / "broken"
    for sub in ("imagesTr", "labelsTr"):
        (broken / sub).mkdir(parents=True)
        for path in (release / sub).iterdir():
            (broken / sub / path.name).symlink_to(path)
    (broken / "imagesTr" / "amos_0700.nii.gz").symlink_to(release / "imagesTr" / "amos_0001.nii.gz")
    (broken / "labelsTr" / "amos_0700.nii.gz").symlink_to(release / "labelsTr" / "amos_0001.nii.gz")
    with pytest.raises(ValueError, match=r"amos_0700\.nii\.gz: AMOS id 700 is neither a CT id"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(broken), "-d", "705")
    for sub in ("imagesTr", "labelsTr"):
        (broken / sub / "amos_0700.nii.gz").unlink()
    label = label_of(release / "labelsTr" / "amos_0502.nii.gz")
    label[0, 0, 0] = 16
    (broken / "labelsTr" / "amos_0502.nii.gz").unlink()
    write(label, sitk.ReadImage(str(release / "labelsTr" / "amos_0502.nii.gz")),
          broken / "labelsTr" / "amos_0502.nii.gz")
    with pytest.raises(ValueError, match=r"amos_0502\.nii\.gz: label values \[16\] are not AMOS labels"):
        convert(tmp_path / "raw", monkeypatch, "-i", str(broken), "-d", "705", "-np", "0")
    assert not (tmp_path / "raw").exists() or not any(p.name.startswith(("Dataset70", "."))
                                                       for p in (tmp_path / "raw").iterdir())

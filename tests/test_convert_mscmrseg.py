"""``nnunet_ext convert mscmrseg`` on real files: the MyoPS layout (10 real patients, co-registered C0 / LGE / T2),
the CycleMix split-folder LGE release (10 real subjects, ACDC label codes), and the challenge's release layout
built from real MyoPS files renamed to ``patientN_{C0,DE}[_manual]`` (edema and scar written as myocardium 200,
the challenge's codes)."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conftest import converter, require_shared


@pytest.fixture(scope="module")
def shared() -> Path:
    return require_shared("MyoPS_multiseq/Train", "MSCMRSeg_LGE/MSCMR_dataset")


convert = converter("mscmrseg")


def cases(folder: Path, sub: str):
    return sorted(p.name.split(".")[0].rsplit("_", 1)[0] if sub.startswith("images") else p.name.split(".")[0]
                  for p in (folder / sub).iterdir()) if (folder / sub).is_dir() else []


def array(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))


@pytest.fixture(scope="module")
def paired(shared, tmp_path_factory):
    raw = tmp_path_factory.mktemp("raw")
    with pytest.MonkeyPatch.context() as mp:
        convert(raw, mp, "-i", str(shared / "MyoPS_multiseq"), "-d", "703", "-np", "2")
    return raw / "Dataset703_MSCMRSegC0", raw / "Dataset704_MSCMRSegLGE"


def test_one_dataset_per_sequence_linked_as_partners(shared, paired):
    c0, lge = paired
    for folder, other, sequence in ((c0, lge, "C0"), (lge, c0, "LGE")):
        dataset_json = json.loads((folder / "dataset.json").read_text())
        assert dataset_json["nnunet_ext_partner"] == other.name
        assert dataset_json["channel_names"] == {"0": sequence}
        assert dataset_json["labels"] == {"background": 0, "lv_blood_pool": 1, "myocardium": 2, "rv_blood_pool": 3}
    assert cases(c0, "labelsTr") == cases(lge, "labelsTr") and len(cases(c0, "labelsTs")) == 2
    source = shared / "MyoPS_multiseq" / "Train"
    for patient in cases(c0, "labelsTr"):
        codes = array(source / patient / f"{patient}_gd.nii.gz")
        for folder, sequence in ((c0, "C0"), (lge, "LGE")):
            np.testing.assert_array_equal(array(folder / "imagesTr" / f"{patient}_0000.nii.gz"),
                                          array(source / patient / f"{patient}_{sequence}.nii.gz"))
            label = array(folder / "labelsTr" / f"{patient}.nii.gz")
            assert np.array_equal(label == 1, codes == 500) and np.array_equal(label == 3, codes == 600)
            assert np.array_equal(label == 2, np.isin(codes, (200, 1220, 2221)))


def test_disjoint_patients_and_a_labeled_subset(shared, tmp_path, monkeypatch):
    convert(tmp_path, monkeypatch, "-i", str(shared / "MyoPS_multiseq"), "-d", "705", "--disjoint-patients",
            "--num-labeled", "2", "-np", "0")
    c0, lge = tmp_path / "Dataset705_MSCMRSegC0", tmp_path / "Dataset706_MSCMRSegLGE"
    everyone = {folder: set(cases(folder, "imagesTr") + cases(folder, "imagesTrUnlabeled") + cases(folder, "imagesTs"))
                for folder in (c0, lge)}
    assert not everyone[c0] & everyone[lge] and len(everyone[c0] | everyone[lge]) == 10
    for folder in (c0, lge):
        assert len(cases(folder, "labelsTr")) == 2
        assert cases(folder, "labelsTrReference") == cases(folder, "imagesTrUnlabeled") != []
    assert json.loads((c0 / "dataset.json").read_text())["disjoint_patients"] is True


def test_split_folder_lge_release_with_acdc_codes(shared, tmp_path, monkeypatch):
    source = shared / "MSCMRSeg_LGE" / "MSCMR_dataset"
    convert(tmp_path, monkeypatch, "-i", str(source), "-d", "710", "--sequences", "LGE", "-np", "0")
    folder = tmp_path / "Dataset710_MSCMRSegLGE"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["layout"] == "split_folders" and "nnunet_ext_partner" not in dataset_json
    assert cases(folder, "imagesTrUnlabeled") == ["subject2", "subject7"]
    assert not (folder / "labelsTrReference").exists() or not any((folder / "labelsTrReference").iterdir())
    for patient in cases(folder, "labelsTr"):
        manual = next(source.glob(f"*/labels/{patient}_DE_manual.nii.gz"))
        codes, label = array(manual), array(folder / "labelsTr" / f"{patient}.nii.gz")
        for code, ours in ((3, 1), (2, 2), (1, 3)):
            assert np.array_equal(label == ours, codes == code), (patient, code)
    with pytest.raises(ValueError, match=r"patient subject1 has no C0 image \(subject1_C0\.nii\.gz\)"):
        convert(tmp_path, monkeypatch, "-i", str(source), "-d", "712", "-np", "0")


def challenge_release(shared: Path, folder: Path, myops_codes: bool = False) -> Path:
    """Three real MyoPS patients renamed to the challenge's layout (codes 200 / 500 / 600 unless asked)."""
    source = shared / "MyoPS_multiseq" / "Train"
    folder.mkdir(parents=True)
    for k, case in enumerate(("Case3001", "Case3002", "Case3003"), start=1):
        label = sitk.ReadImage(str(source / case / f"{case}_gd.nii.gz"))
        codes = sitk.GetArrayFromImage(label)
        if not myops_codes:
            codes[np.isin(codes, (1220, 2221))] = 200
        written = sitk.GetImageFromArray(codes)
        written.CopyInformation(label)
        for ours, theirs in (("C0", "C0"), ("DE", "LGE")):
            sitk.WriteImage(sitk.ReadImage(str(source / case / f"{case}_{theirs}.nii.gz")),
                            str(folder / f"patient{k}_{ours}.nii.gz"))
            sitk.WriteImage(written, str(folder / f"patient{k}_{ours}_manual.nii.gz"))
    return folder


def test_challenge_layout_and_its_errors(shared, tmp_path, monkeypatch):
    release = challenge_release(shared, tmp_path / "release")
    convert(tmp_path / "raw", monkeypatch, "-i", str(release), "-d", "720", "--test-fraction", "0", "-np", "0")
    lge = tmp_path / "raw" / "Dataset721_MSCMRSegLGE"
    assert cases(lge, "labelsTr") == ["patient1", "patient2", "patient3"]
    assert json.loads((lge / "dataset.json").read_text())["layout"] == "challenge"
    label = array(lge / "labelsTr" / "patient1.nii.gz")
    codes = array(release / "patient1_DE_manual.nii.gz")
    assert np.array_equal(label == 2, codes == 200) and np.array_equal(label == 1, codes == 500)
    wrong = challenge_release(shared, tmp_path / "myops_codes", myops_codes=True)
    with pytest.raises(ValueError, match=r"patient1_C0_manual\.nii\.gz: label values \[1220, 2221\] are not"):
        convert(tmp_path / "raw2", monkeypatch, "-i", str(wrong), "-d", "730", "-np", "0")
    moved = challenge_release(shared, tmp_path / "moved")
    image = sitk.ReadImage(str(moved / "patient2_DE.nii.gz"))
    image.SetOrigin(tuple(o + 10 for o in image.GetOrigin()))
    sitk.WriteImage(image, str(moved / "patient2_DE.nii.gz"))
    with pytest.raises(ValueError, match=r"patient2"):
        convert(tmp_path / "raw3", monkeypatch, "-i", str(moved), "-d", "740", "--test-fraction", "0", "-np", "0")
    assert not (tmp_path / "raw3").exists() or not any(p.name.startswith(("Dataset74", "."))
                                                        for p in (tmp_path / "raw3").iterdir())

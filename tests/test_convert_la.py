"""``nnunet_ext convert la``: the real LA 2018 h5 release in ../shared/data, and bad inputs on small synthetic h5."""
import contextlib
import io
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import SimpleITK as sitk

from conftest import require_shared
from nnunet_ext.cli import main
from nnunet_ext.dataset_conversion.la2018 import H5_NAME, TRAINING_FOLDER


def read_list(path: Path):
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def la_release():
    """The real LA h5 release in the shared data folder (skipped, with the reason, when it is absent)."""
    return require_shared("LA_2018_h5") / "LA_2018_h5"


@pytest.fixture(scope="module")
def real_la(tmp_path_factory, la_release):
    """The real release converted once for the module: (dataset folder, printed output)."""
    raw = tmp_path_factory.mktemp("la_raw")
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        mp.setenv("nnUNet_raw", str(raw))
        main(["convert", "la", "-i", str(la_release), "-d", "801", "--num-labeled", "16", "--only-present",
              "-np", "2"])
    return raw / "Dataset801_LA", printed.getvalue()


def files(folder: Path):
    return sorted(p.name for p in folder.iterdir())


def test_real_la_layout_and_split(real_la, la_release):
    folder, printed = real_la
    assert sorted(os.listdir(folder.parent)) == ["Dataset801_LA"]
    train_ids, test_ids = read_list(la_release / "train.list"), read_list(la_release / "test.list")
    present = {p.name for p in (la_release / TRAINING_FOLDER).iterdir() if (p / H5_NAME).is_file()}
    labeled = train_ids[:16]
    unlabeled = [i for i in train_ids[16:] if i in present]
    tests = [i for i in test_ids if i in present]
    assert (len(unlabeled), len(tests)) == (24, 10)
    assert files(folder / "imagesTr") == sorted(f"{i}_0000.nii.gz" for i in labeled)
    assert files(folder / "labelsTr") == sorted(f"{i}.nii.gz" for i in labeled)
    assert files(folder / "imagesTrUnlabeled") == sorted(f"{i}_0000.nii.gz" for i in unlabeled)
    assert files(folder / "labelsTrReference") == sorted(f"{i}.nii.gz" for i in unlabeled)
    assert files(folder / "imagesTs") == sorted(f"{i}_0000.nii.gz" for i in tests)
    assert files(folder / "labelsTs") == sorted(f"{i}.nii.gz" for i in tests)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["channel_names"] == {"0": "MRI"}
    assert dataset_json["labels"] == {"background": 0, "left_atrium": 1}
    assert (dataset_json["numTraining"], dataset_json["numUnlabeled"]) == (16, 24)
    assert dataset_json["file_ending"] == ".nii.gz"
    assert "16 labeled" in printed and str(folder) in printed and "skipped 40 train.list and 10 test.list" in printed


@pytest.mark.parametrize("subfolder, label_folder, index", [
    ("imagesTr", "labelsTr", 0), ("imagesTr", "labelsTr", 15), ("imagesTrUnlabeled", "labelsTrReference", 0),
    ("imagesTs", "labelsTs", 9)])
def test_real_la_arrays_and_geometry_match_the_h5(real_la, la_release, subfolder, label_folder, index):
    folder, _ = real_la
    case_id = files(folder / label_folder)[index][:-len(".nii.gz")]
    image = sitk.ReadImage(str(folder / subfolder / f"{case_id}_0000.nii.gz"))
    label = sitk.ReadImage(str(folder / label_folder / f"{case_id}.nii.gz"))
    with h5py.File(la_release / TRAINING_FOLDER / case_id / H5_NAME, "r") as f:
        h5_image, h5_label = f["image"][()], f["label"][()]
    for itk in (image, label):
        assert itk.GetSpacing() == (0.625, 0.625, 0.625)
        assert itk.GetOrigin() == (0.0, 0.0, 0.0)
        assert itk.GetDirection() == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
        assert itk.GetSize() == h5_image.shape
    assert image.GetPixelID() == sitk.sitkFloat32 and label.GetPixelID() == sitk.sitkUInt8
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), h5_image.transpose(2, 1, 0))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(label), h5_label.transpose(2, 1, 0))


# ---------------------------------------------------------------- bad inputs on synthetic releases

TRAIN = [f"CASE{i:02d}" for i in range(6)]
TEST = ["TEST00", "TEST01"]


def make_release(root: Path, train=TRAIN, test=TEST, absent=(), train_lines=None, broken=None) -> Path:
    """A small LA-like release; ``broken`` maps an ID to a dict of the h5 datasets to write instead."""
    rng = np.random.default_rng(0)
    root.mkdir()
    (root / "train.list").write_text("\n".join(train_lines or train) + "\n")
    (root / "test.list").write_text("\n".join(test) + "\n")
    for case_id in [*train, *test]:
        if case_id in absent:
            continue
        (root / TRAINING_FOLDER / case_id).mkdir(parents=True)
        datasets = {"image": rng.normal(size=(10, 9, 8)).astype(np.float32),
                    "label": (rng.random((10, 9, 8)) > 0.7).astype(np.uint8)}
        datasets = (broken or {}).get(case_id, datasets)
        with h5py.File(root / TRAINING_FOLDER / case_id / H5_NAME, "w") as f:
            for key, value in datasets.items():
                f.create_dataset(key, data=value, compression="gzip")
    return root


@pytest.fixture
def raw(tmp_path, monkeypatch):
    folder = tmp_path / "raw"
    folder.mkdir()
    monkeypatch.setenv("nnUNet_raw", str(folder))
    return folder


def convert(release: Path, *extra: str) -> None:
    main(["convert", "la", "-i", str(release), "-d", "802", "--num-labeled", "2", "-np", "0", *extra])


def test_synthetic_release_with_list_variants_and_labeled_list(tmp_path, raw):
    lines = [f"../data/{TRAINING_FOLDER}/{TRAIN[0]}/{H5_NAME}", f"/abs/{TRAIN[1]}", *TRAIN[2:]]
    release = make_release(tmp_path / "release", train_lines=lines)
    convert(release)
    folder = raw / "Dataset802_LA"
    assert files(folder / "labelsTr") == ["CASE00.nii.gz", "CASE01.nii.gz"]
    assert len(files(folder / "imagesTrUnlabeled")) == 4 and len(files(folder / "imagesTs")) == 2
    (tmp_path / "labeled.txt").write_text("CASE03\nCASE05\n")
    main(["convert", "la", "-i", str(release), "-d", "803", "--name", "LAlist", "--labeled-list",
          str(tmp_path / "labeled.txt"), "-np", "1"])
    assert files(raw / "Dataset803_LAlist" / "labelsTr") == ["CASE03.nii.gz", "CASE05.nii.gz"]
    assert "CASE00.nii.gz" in files(raw / "Dataset803_LAlist" / "labelsTrReference")


def test_only_present_skips_absent_unlabeled_and_test_cases(tmp_path, raw, capsys):
    release = make_release(tmp_path / "release", absent=("CASE04", "TEST01"))
    with pytest.raises(ValueError, match="CASE04.*TEST01.*--only-present"):
        convert(release)
    assert os.listdir(raw) == []
    convert(release, "--only-present")
    folder = raw / "Dataset802_LA"
    assert files(folder / "imagesTrUnlabeled") == [f"{i}_0000.nii.gz" for i in ("CASE02", "CASE03", "CASE05")]
    assert files(folder / "imagesTs") == ["TEST00_0000.nii.gz"]
    assert "CASE04" in capsys.readouterr().out


def expect_error(release: Path, raw: Path, pattern: str, *extra: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        convert(release, *extra)
    assert os.listdir(raw) == []


def test_absent_labeled_case_is_an_error_even_with_only_present(tmp_path, raw):
    release = make_release(tmp_path / "release", absent=("CASE01",))
    expect_error(release, raw, "labeled cases without .*CASE01", "--only-present")


def test_folder_that_is_not_an_la_release(tmp_path, raw):
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", raw, "not an LA 2018 h5 release.*train.list")
    release = make_release(tmp_path / "release")
    (release / "train.list").rename(release / "other.list")
    expect_error(release, raw, f"{release} is not an LA 2018 h5 release.*'train.list'")
    expect_error(tmp_path / "nowhere", raw, "does not exist")


@pytest.mark.parametrize("broken, pattern", [
    ({"image": np.zeros((10, 9, 8), np.float32)}, "no 'label' dataset"),
    ({"label": np.zeros((10, 9, 8), np.uint8)}, "no 'image' dataset"),
    ({"image": np.zeros((10, 9, 8), np.float32), "label": np.full((10, 9, 8), 2, np.uint8)},
     r"label values \[2\]"),
    ({"image": np.zeros((10, 9, 8), np.float32), "label": np.zeros((10, 9, 7), np.uint8)},
     r"image shape \(10, 9, 8\) and label shape \(10, 9, 7\)"),
])
def test_bad_h5_names_the_file(tmp_path, raw, broken, pattern):
    release = make_release(tmp_path / "release", broken={"CASE03": broken})
    expect_error(release, raw, f"{TRAINING_FOLDER}/CASE03/{H5_NAME}: {pattern}")


def test_bad_subset_requests(tmp_path, raw):
    release = make_release(tmp_path / "release")
    expect_error(release, raw, "between 1 and 6", "--num-labeled", "0")
    (tmp_path / "labeled.txt").write_text("CASE01\nTEST00\n")
    with pytest.raises(ValueError, match="not in train.list: TEST00"):
        main(["convert", "la", "-i", str(release), "-d", "802", "--labeled-list", str(tmp_path / "labeled.txt")])
    assert os.listdir(raw) == []


def test_convert_help_lists_converters_and_imports_only_the_chosen_one(capsys, monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "nnunet_ext.dataset_conversion.la2018", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "--help"])
    assert exit_info.value.code == 0 and " la " in capsys.readouterr().out
    assert "nnunet_ext.dataset_conversion.la2018" not in sys.modules
    with pytest.raises(SystemExit) as exit_info:
        main(["convert", "la", "--help"])
    assert exit_info.value.code == 0 and "--only-present" in capsys.readouterr().out

"""``nnunet_ext make_semisupervised`` on small raw datasets written here with plain SimpleITK."""
import filecmp
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunet_ext.cli import main

CASES = [f"toy_{i:03d}" for i in range(6)]
SOURCE_JSON = {"channel_names": {"0": "T1", "1": "T2"}, "labels": {"background": 0, "organ": 1, "tumour": 2},
               "numTraining": 6, "file_ending": ".nii.gz", "name": "Toy", "description": "six toy cases",
               "overwrite_image_reader_writer": "SimpleITKIO"}


def write(array: np.ndarray, path: Path) -> None:
    itk = sitk.GetImageFromArray(array)
    itk.SetSpacing((1.0, 1.5, 2.0)[:array.ndim])
    sitk.WriteImage(itk, str(path))


@pytest.fixture
def raw(tmp_path, monkeypatch) -> Path:
    """nnUNet_raw with Dataset010_Toy: 6 training cases of 16^3 voxels, 2 channels, 2 test cases."""
    folder = tmp_path / "raw"
    source = folder / "Dataset010_Toy"
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (source / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for case_id, kind in [(c, "Tr") for c in CASES] + [("test_000", "Ts"), ("test_001", "Ts")]:
        for channel in range(2):
            write(rng.normal(size=(16, 16, 16)).astype(np.float32),
                  source / f"images{kind}" / f"{case_id}_{channel:04d}.nii.gz")
        write(rng.integers(0, 3, (16, 16, 16)).astype(np.uint8), source / f"labels{kind}" / f"{case_id}.nii.gz")
    (source / "dataset.json").write_text(json.dumps(SOURCE_JSON))
    monkeypatch.setenv("nnUNet_raw", str(folder))
    return folder


def names(folder: Path):
    return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []


def cases_in(label_folder: Path):
    return [n[:-len(".nii.gz")] for n in names(label_folder)]


def expected_subset(num_labeled: int, seed: int):
    return sorted(CASES[i] for i in np.random.default_rng(seed).choice(len(CASES), num_labeled, replace=False))


def test_split_layout_json_and_verbatim_copies(raw):
    main(["make_semisupervised", "-d", "10", "-o", "110", "--num-labeled", "2", "-np", "2"])
    source, new = raw / "Dataset010_Toy", raw / "Dataset110_ToySemi2"
    labeled = expected_subset(2, 0)
    unlabeled = sorted(set(CASES) - set(labeled))
    assert names(new / "labelsTr") == [f"{c}.nii.gz" for c in labeled]
    assert names(new / "imagesTr") == [f"{c}_{i:04d}.nii.gz" for c in labeled for i in range(2)]
    assert names(new / "imagesTrUnlabeled") == [f"{c}_{i:04d}.nii.gz" for c in unlabeled for i in range(2)]
    assert names(new / "labelsTrReference") == [f"{c}.nii.gz" for c in unlabeled]
    for sub in ("imagesTs", "labelsTs"):
        assert names(new / sub) == names(source / sub)
    for sub, name in [("imagesTrUnlabeled", f"{unlabeled[0]}_0001.nii.gz"), ("labelsTr", f"{labeled[0]}.nii.gz"),
                      ("labelsTs", "test_000.nii.gz")]:
        source_sub = {"imagesTrUnlabeled": "imagesTr"}.get(sub, sub)
        assert filecmp.cmp(source / source_sub / name, new / sub / name, shallow=False)
    dataset_json = json.loads((new / "dataset.json").read_text())
    assert dataset_json["numTraining"] == 2 and dataset_json["numUnlabeled"] == 4
    for key in ("channel_names", "labels", "file_ending", "name", "description", "overwrite_image_reader_writer"):
        assert dataset_json[key] == SOURCE_JSON[key]
    assert dataset_json["semisupervised_split"] == {"source": "Dataset010_Toy", "num_labeled": 2, "seed": 0,
                                                    "labeled_list": None, "labeled": labeled}
    assert "patients" not in dataset_json and not (new / "splits_final.json").exists()
    assert json.loads((source / "dataset.json").read_text()) == SOURCE_JSON


def test_stock_nnunet_accepts_the_result(raw):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    main(["make_semisupervised", "-d", "Dataset010_Toy", "-o", "Dataset111_Custom", "--num-labeled", "3", "-np", "0"])
    verify_dataset_integrity(str(raw / "Dataset111_Custom"), 1)


def test_seed_reproducibility(raw):
    for destination, seed in (("120", "4"), ("121", "4")):
        main(["make_semisupervised", "-d", "10", "-o", destination, "--num-labeled", "3", "--seed", seed, "-np", "0"])
    first, second = (cases_in(raw / f"Dataset{d}_ToySemi3" / "labelsTr") for d in (120, 121))
    assert first == second == expected_subset(3, 4)
    assert len({tuple(expected_subset(3, s)) for s in range(5)}) > 1


def test_labeled_list(raw, tmp_path):
    (tmp_path / "labeled.txt").write_text("# chosen by hand\ntoy_005\n\ntoy_001\n")
    main(["make_semisupervised", "-d", "10", "-o", "130", "--labeled-list", str(tmp_path / "labeled.txt"), "-np", "0"])
    new = raw / "Dataset130_ToySemi2"
    assert cases_in(new / "labelsTr") == ["toy_001", "toy_005"]
    assert cases_in(new / "labelsTrReference") == ["toy_000", "toy_002", "toy_003", "toy_004"]
    assert json.loads((new / "dataset.json").read_text())["semisupervised_split"]["seed"] is None


def test_recorded_subset_and_patients_carry_over(raw, monkeypatch):
    """The labeled ids recorded in dataset.json reproduce the subset whatever NumPy draws; a source that groups
    its cases by patient gives a destination with its labeled cases' patients and a grouped split."""
    from nnunet_ext.splits import leaking_patients
    source = raw / "Dataset010_Toy"
    patients = {"a": CASES[:2], "b": CASES[2:4], "c": CASES[4:]}
    (source / "dataset.json").write_text(json.dumps({**SOURCE_JSON, "patients": patients}))
    main(["make_semisupervised", "-d", "10", "-o", "140", "--num-labeled", "4", "--seed", "1", "-np", "0"])
    first = raw / "Dataset140_ToySemi4"
    dataset_json = json.loads((first / "dataset.json").read_text())
    labeled = expected_subset(4, 1)
    assert dataset_json["semisupervised_split"]["labeled"] == labeled
    kept = {p: [c for c in cases if c in labeled] for p, cases in patients.items()}
    assert dataset_json["patients"] == {p: cases for p, cases in kept.items() if cases}
    splits = json.loads((first / "splits_final.json").read_text())
    assert leaking_patients(splits, dataset_json["patients"]) == []
    default_rng = np.random.default_rng
    monkeypatch.setattr(np.random, "default_rng", lambda seed: default_rng(seed + 1))
    main(["make_semisupervised", "-d", "10", "-o", "141", "--labeled-list", str(first / "dataset.json"), "-np", "0"])
    assert cases_in(raw / "Dataset141_ToySemi4" / "labelsTr") == labeled


def test_png_dataset_is_copied_byte_for_byte(tmp_path, monkeypatch):
    source = tmp_path / "raw" / "Dataset020_Flat"
    (source / "imagesTr").mkdir(parents=True)
    (source / "labelsTr").mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        write(rng.integers(0, 255, (20, 24)).astype(np.uint8), source / "imagesTr" / f"img{i}_0000.png")
        write(rng.integers(0, 2, (20, 24)).astype(np.uint8), source / "labelsTr" / f"img{i}.png")
    (source / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "gray"}, "labels": {"background": 0, "polyp": 1}, "numTraining": 4,
        "file_ending": ".png", "overwrite_image_reader_writer": "NaturalImage2DIO"}))
    monkeypatch.setenv("nnUNet_raw", str(tmp_path / "raw"))
    main(["make_semisupervised", "-d", "20", "-o", "120", "--num-labeled", "1", "-np", "0"])
    new = tmp_path / "raw" / "Dataset120_FlatSemi1"
    assert len(names(new / "imagesTr")) == 1 and len(names(new / "imagesTrUnlabeled")) == 3
    for name in names(new / "imagesTrUnlabeled"):
        assert filecmp.cmp(source / "imagesTr" / name, new / "imagesTrUnlabeled" / name, shallow=False)
    assert json.loads((new / "dataset.json").read_text())["overwrite_image_reader_writer"] == "NaturalImage2DIO"


@pytest.mark.parametrize("arguments, pattern", [
    (["-d", "10", "-o", "140", "--num-labeled", "6"], "below the 6 training cases"),
    (["-d", "10", "-o", "140", "--num-labeled", "0"], "at least 1"),
    (["-d", "99", "-o", "140", "--num-labeled", "2"], "source dataset '99' not found"),
    (["-d", "Dataset011_Nope", "-o", "140", "--num-labeled", "2"], "'Dataset011_Nope' not found"),
    (["-d", "10", "-o", "Dataset010_ToySemi2", "--num-labeled", "2"], "Dataset010_Toy with dataset id 10"),
    (["-d", "10", "-o", "Dataset010_Toy", "--num-labeled", "2", "--overwrite"], "the destination is the source"),
    (["-d", "10", "-o", "Semi", "--num-labeled", "2"], "DatasetXXX_Name"),
    (["-d", "10", "-o", "140"], "--num-labeled N or --labeled-list"),
])
def test_errors_leave_nothing_behind(raw, arguments, pattern):
    with pytest.raises(ValueError, match=pattern):
        main(["make_semisupervised", *arguments, "-np", "0"])
    assert names(raw) == ["Dataset010_Toy"]


def test_labeled_list_with_unknown_ids(raw, tmp_path):
    (tmp_path / "labeled.txt").write_text("toy_001\nnot_a_case\n")
    with pytest.raises(ValueError, match=r"labeled.txt: ids not among the source's training cases: \['not_a_case'\]"):
        main(["make_semisupervised", "-d", "10", "-o", "140", "--labeled-list", str(tmp_path / "labeled.txt")])
    (tmp_path / "two.txt").write_text("toy_001\ntoy_002\n")
    with pytest.raises(ValueError, match="--num-labeled 3 disagrees with the 2 ids"):
        main(["make_semisupervised", "-d", "10", "-o", "140", "--num-labeled", "3", "--labeled-list",
              str(tmp_path / "two.txt")])
    assert names(raw) == ["Dataset010_Toy"]

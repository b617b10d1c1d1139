"""Patient-grouped splits (nnunet_ext.splits): drawn over patients with nnU-Net's own fold generator, written by
the raw dataset writer where cases share a patient; an existing split with other folds is refused, not
overwritten."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2.utilities.crossval_split import generate_crossval_split

from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
from nnunet_ext.splits import SPLITS_FILE, check_existing_split, grouped_splits, leaking_patients

PATIENTS = {f"p{p}": [f"p{p}_{k}" for k in range(2 + p % 3)] for p in range(7)}


def assert_grouped(splits, patients) -> None:
    """No patient on both sides of a fold; every case validated exactly once."""
    assert leaking_patients(splits, patients) == []
    validated = sorted(case for fold in splits for case in fold["val"])
    assert validated == sorted(case for cases in patients.values() for case in cases)
    for fold in splits:
        assert not set(fold["train"]) & set(fold["val"])


def test_folds_are_nnunets_folds_over_patients():
    splits = grouped_splits(PATIENTS)
    assert len(splits) == 5
    assert_grouped(splits, PATIENTS)
    for fold, stock in zip(splits, generate_crossval_split(sorted(PATIENTS), seed=12345, n_splits=5)):
        assert fold["val"] == sorted(c for p in stock["val"] for c in PATIENTS[p])
    assert len(grouped_splits({"a": ["a_1", "a_2"], "b": ["b_1"]})) == 2
    with pytest.raises(ValueError, match="at least 2 patients"):
        grouped_splits({"a": ["a_1", "a_2"]})


def test_a_case_level_split_of_such_cases_leaks():
    """What nnU-Net draws by itself over case ids mixes patients, and leaking_patients says where."""
    cases = sorted(c for cs in PATIENTS.values() for c in cs)
    leaks = leaking_patients(generate_crossval_split(cases, seed=12345, n_splits=5), PATIENTS)
    assert leaks and all(leak.startswith("fold ") and ": patient p" in leak for leak in leaks)


def test_an_existing_split_with_other_folds_is_refused_and_kept(tmp_path):
    raw, preprocessed = tmp_path / "raw", tmp_path / "preprocessed"
    raw.mkdir()
    preprocessed.mkdir()
    (raw / "dataset.json").write_text(json.dumps({"patients": PATIENTS}))
    grouped = grouped_splits(PATIENTS)
    (preprocessed / SPLITS_FILE).write_text(json.dumps(grouped))
    check_existing_split(str(raw), str(preprocessed))
    (raw / SPLITS_FILE).write_text(json.dumps(grouped))
    check_existing_split(str(raw), str(preprocessed))
    (preprocessed / SPLITS_FILE).write_text(json.dumps(grouped + [{"train": [], "val": []}]))
    check_existing_split(str(raw), str(preprocessed))
    mine = [{"train": fold["val"], "val": fold["train"]} for fold in grouped]
    (preprocessed / SPLITS_FILE).write_text(json.dumps(mine))
    with pytest.raises(ValueError, match="holds other folds than the raw dataset's patient-grouped") as error:
        check_existing_split(str(raw), str(preprocessed))
    assert "one patient" not in str(error.value) and "delete" in str(error.value)
    cases = sorted(c for cs in PATIENTS.values() for c in cs)
    leaking = [{k: list(map(str, v)) for k, v in f.items()} for f in generate_crossval_split(cases, 1, 5)]
    (preprocessed / SPLITS_FILE).write_text(json.dumps(leaking))
    with pytest.raises(ValueError, match="puts cases of one patient into training and validation"):
        check_existing_split(str(raw), str(preprocessed))
    assert json.loads((preprocessed / SPLITS_FILE).read_text()) == leaking


def _slice() -> sitk.Image:
    return sitk.GetImageFromArray(np.zeros((4, 5), np.float32))


def _write(raw: Path, dataset_id: int, patients) -> Path:
    with RawDatasetWriter(dataset_id, "Slices", {"0": "MR"}, {"background": 0, "organ": 1}, raw_root=str(raw),
                          num_processes=0) as writer:
        for patient, cases in patients.items():
            for case in cases:
                writer.add_training_case(case, [_slice()], sitk.Cast(_slice(), sitk.sitkUInt8), patient=patient)
        writer.add_unlabeled_case("u_1", [_slice()])
    return Path(writer.final_folder)


def test_writer_records_patients_and_writes_the_grouped_split(tmp_path):
    folder = _write(tmp_path, 5, PATIENTS)
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["patients"] == PATIENTS
    splits = json.loads((folder / SPLITS_FILE).read_text())
    assert splits == grouped_splits(PATIENTS)
    assert_grouped(splits, PATIENTS)


def test_one_patient_gives_no_split_and_no_patients_no_record(tmp_path):
    one = _write(tmp_path, 6, {"p": ["p_1", "p_2"]})
    assert json.loads((one / "dataset.json").read_text())["patients"] == {"p": ["p_1", "p_2"]}
    assert not (one / SPLITS_FILE).exists()
    with RawDatasetWriter(7, "Volumes", {"0": "MR"}, {"background": 0, "organ": 1}, raw_root=str(tmp_path),
                          num_processes=0) as writer:
        writer.add_training_case("c_1", [_slice()], sitk.Cast(_slice(), sitk.sitkUInt8))
    assert "patients" not in json.loads((Path(writer.final_folder) / "dataset.json").read_text())
    assert not (Path(writer.final_folder) / SPLITS_FILE).exists()

"""Patient-grouped cross-validation splits for datasets with several cases per patient (DESIGN.md §3).

nnU-Net draws its five folds over case ids. Where one patient gives several cases (the 2-D slices of a volume,
several frames or sequences), that puts neighbouring slices of one patient into training and validation, and
every validation Dice, ``checkpoint_best``, ``nnUNetv2_find_best_configuration`` and post-processing is then
computed on leaked data. A converter that writes such cases records which cases belong to which patient
(dataset.json ``patients``: ``{patient: [case ids]}``) and writes ``splits_final.json`` into the raw dataset:
nnU-Net's own fold generator (``generate_crossval_split``, seed 12345) applied to the patients, each patient's
cases then going where the patient went. nnU-Net's own planner (``nnUNetv2_plan_and_preprocess`` and ours) copies
that file to where nnU-Net reads it (``nnUNet_preprocessed/<Dataset>/splits_final.json``), never over one that is
already there; ``nnunet_ext plan_and_preprocess`` refuses, before any work, an existing split with other folds.
"""
import json
import os
from typing import Dict, List, Sequence

from nnunetv2.utilities.crossval_split import generate_crossval_split

SPLITS_FILE = "splits_final.json"
PATIENTS_KEY = "patients"
"""dataset.json key: ``{patient: [training case ids]}``."""
NUM_FOLDS = 5
NNUNET_SPLIT_SEED = 12345
"""The seed nnU-Net's ``do_split`` draws its folds with."""

Splits = List[Dict[str, List[str]]]


def grouped_splits(patients: Dict[str, Sequence[str]], num_folds: int = NUM_FOLDS) -> Splits:
    """nnU-Net's folds drawn over patients: ``[{"train": [case ids], "val": [case ids]}, …]``.

    With fewer patients than ``num_folds`` there is one fold per patient. ``ValueError`` for fewer than two
    patients (no fold could validate on a patient it did not train on).
    """
    ids = sorted(patients)
    if len(ids) < 2:
        raise ValueError(f"a patient-grouped split needs at least 2 patients, got {len(ids)}")
    folds = generate_crossval_split(ids, seed=NNUNET_SPLIT_SEED, n_splits=min(num_folds, len(ids)))
    return [{key: sorted(str(case) for patient in fold[key] for case in patients[str(patient)])
             for key in ("train", "val")} for fold in folds]


def leaking_patients(splits: Splits, patients: Dict[str, Sequence[str]]) -> List[str]:
    """``"fold F: patient P"`` for every patient with cases in both the training and validation keys of a fold."""
    patient_of = {case: patient for patient, cases in patients.items() for case in cases}
    leaks = []
    for index, fold in enumerate(splits):
        train = {patient_of.get(case, case) for case in fold["train"]}
        val = {patient_of.get(case, case) for case in fold["val"]}
        leaks += [f"fold {index}: patient {patient}" for patient in sorted(train & val)]
    return leaks


def write_splits(splits: Splits, path: str) -> None:
    """``splits_final.json`` in nnU-Net's format."""
    with open(path, "w") as f:
        json.dump(splits, f, indent=4)


def check_existing_split(raw_folder: str, preprocessed_folder: str) -> None:
    """Refuse, before any work, a split in ``preprocessed_folder`` that disagrees with the raw dataset's.

    nnU-Net's planner copies a raw ``splits_final.json`` to the preprocessed folder unless one is there, and stops
    with a bare ``AssertionError`` when the one there has other folds (it accepts extra folds). This says the
    same in words, and whether the existing split mixes a patient's cases across training and validation.
    """
    source, target = os.path.join(raw_folder, SPLITS_FILE), os.path.join(preprocessed_folder, SPLITS_FILE)
    if not (os.path.isfile(source) and os.path.isfile(target)):
        return
    with open(source) as f:
        grouped = json.load(f)
    with open(target) as f:
        existing = json.load(f)
    if len(existing) >= len(grouped) and all(set(a[key]) == set(b[key]) for a, b in zip(grouped, existing)
                                             for key in ("train", "val")):
        return
    with open(os.path.join(raw_folder, "dataset.json")) as f:
        patients = json.load(f).get(PATIENTS_KEY, {})
    leaks = leaking_patients(existing, patients)
    mixing = (f", and it puts cases of one patient into training and validation ({len(leaks)}: "
              f"{', '.join(leaks[:5])}{', …' if len(leaks) > 5 else ''})" if leaks else "")
    raise ValueError(f"{target} holds other folds than the raw dataset's patient-grouped {source}{mixing}; "
                     f"nnU-Net's planner stops on this: delete {target} to use the grouped split, or {source} to "
                     f"keep yours")

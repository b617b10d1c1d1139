"""``nnunet_ext make_semisupervised``: split an nnU-Net raw dataset into a labeled subset and unlabeled cases.

The new dataset keeps ``num_labeled`` training cases in imagesTr/labelsTr, so stock nnU-Net sees an ordinary
(smaller) labeled dataset; the other training cases move to imagesTrUnlabeled, and their labels to
labelsTrReference (reporting only, never trained on). imagesTs/labelsTs and an existing
imagesTrUnlabeled/labelsTrReference are carried over. Every file goes through :class:`RawDatasetWriter`:
it is validated (geometry, channels, label values) with SimpleITK and copied byte for byte, so NIfTI headers
and 2-D PNGs stay exactly as they were.

The labeled subset is ``num_labeled`` cases drawn with ``numpy.random.default_rng(seed)`` from the sorted
case ids (reproducible for a given seed), or the ids of a list file. dataset.json keeps every key of the
source, with ``numTraining`` = the labeled count, ``numUnlabeled`` added and the split recorded under
``semisupervised_split``, the labeled ids included (``labeled``), so that ``--labeled-list`` given that
dataset.json reproduces the subset whatever NumPy draws. Where the source groups its cases by patient
(dataset.json ``patients``, :mod:`nnunet_ext.splits`), the labeled cases keep their patients and the new dataset
gets its own patient-grouped ``splits_final.json``.
"""
import argparse
import json
import os
import re
from typing import Dict, List, Optional, Tuple

import numpy as np

from nnunet_ext.dataset_conversion.raw_dataset_writer import RESERVED_JSON_KEYS, RawDatasetWriter
from nnunet_ext.paths import REFERENCE_LABELS_DIR, UNLABELED_IMAGES_DIR
from nnunet_ext.splits import PATIENTS_KEY

DATASET_FOLDER = re.compile(r"Dataset(\d{3})_(.+)")


def _raw_root(raw_root: Optional[str]) -> str:
    raw_root = raw_root if raw_root is not None else os.environ.get("nnUNet_raw")
    if not raw_root:
        raise ValueError("the environment variable nnUNet_raw is not set; export it (see nnU-Net's set-up)")
    return raw_root


def resolve_source(source: str, raw_root: str) -> str:
    """The folder of a raw dataset given as an id (``4``), a name (``Dataset004_Hippocampus``) under
    ``raw_root``, or a path to a dataset folder."""
    candidates = [os.path.join(raw_root, source), source]
    if source.isdigit():
        prefix = f"Dataset{int(source):03d}_"
        matches = sorted(d for d in os.listdir(raw_root) if d.startswith(prefix)) if os.path.isdir(raw_root) else []
        if len(matches) > 1:
            raise ValueError(f"dataset id {source} is ambiguous in {raw_root}: {matches}")
        candidates = [os.path.join(raw_root, m) for m in matches]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "dataset.json")):
            return os.path.abspath(folder)
    raise ValueError(f"source dataset {source!r} not found: no dataset.json in {candidates or raw_root} "
                     f"(give an id or a DatasetXXX_Name under nnUNet_raw={raw_root}, or a dataset folder)")


def destination_name(destination: str, source_folder: str, num_labeled: int) -> Tuple[int, str]:
    """(id, name) of the new dataset: ``DatasetXXX_Name`` as given, or for a bare id the source's name plus
    ``Semi{num_labeled}`` (``Dataset004_Hippocampus`` with ``-o 104 --num-labeled 5`` gives
    ``Dataset104_HippocampusSemi5``)."""
    if destination.isdigit():
        match = DATASET_FOLDER.fullmatch(os.path.basename(source_folder))
        base = match.group(2) if match else os.path.basename(source_folder)
        return int(destination), f"{base}Semi{num_labeled}"
    match = DATASET_FOLDER.fullmatch(destination)
    if not match:
        raise ValueError(f"destination {destination!r} must be a dataset id (e.g. 104) or DatasetXXX_Name")
    return int(match.group(1)), match.group(2)


def list_cases(folder: str, file_ending: str) -> Dict[str, List[str]]:
    """Case id -> sorted image files (``{case}_{i:04d}{ending}``) of an images folder; empty if it is absent."""
    if not os.path.isdir(folder):
        return {}
    pattern = re.compile(r"(.+)_\d{4}" + re.escape(file_ending))
    cases: Dict[str, List[str]] = {}
    for name in sorted(os.listdir(folder)):
        match = pattern.fullmatch(name)
        if match:
            cases.setdefault(match.group(1), []).append(os.path.join(folder, name))
    return cases


def _label_file(folder: str, case_id: str, file_ending: str) -> Optional[str]:
    path = os.path.join(folder, case_id + file_ending)
    return path if os.path.isfile(path) else None


def read_case_list(path: str) -> List[str]:
    """Case ids of a list file: one per line, blank lines and ``#`` comments ignored, no duplicates; or, for a
    ``.json`` file, the ``semisupervised_split.labeled`` ids of a dataset.json this command wrote."""
    if path.lower().endswith(".json"):
        with open(path) as f:
            try:
                ids = json.load(f)["semisupervised_split"]["labeled"]
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{path}: not a dataset.json written by make_semisupervised (no "
                                 f"semisupervised_split.labeled list: {type(e).__name__}: {e})") from None
        ids = [str(i) for i in ids]
    else:
        with open(path) as f:
            ids = [line.split("#", 1)[0].strip() for line in f]
    ids = [i for i in ids if i]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: case ids listed more than once: {duplicates}")
    return ids


def choose_labeled(case_ids: List[str], num_labeled: Optional[int], seed: int = 0,
                   labeled_list: Optional[str] = None) -> List[str]:
    """The labeled subset (sorted): drawn with ``default_rng(seed)`` from the sorted ids, or read from a file."""
    case_ids = sorted(case_ids)
    if labeled_list is not None:
        labeled = read_case_list(labeled_list)
        unknown = sorted(set(labeled) - set(case_ids))
        if unknown:
            raise ValueError(f"{labeled_list}: ids not among the source's training cases: {unknown[:10]}"
                             + (f" ({len(unknown)} in all)" if len(unknown) > 10 else ""))
        if num_labeled is not None and num_labeled != len(labeled):
            raise ValueError(f"--num-labeled {num_labeled} disagrees with the {len(labeled)} ids of {labeled_list}")
        num_labeled = len(labeled)
    if num_labeled is None or not 1 <= num_labeled < len(case_ids):
        raise ValueError(f"the labeled count must be at least 1 and below the {len(case_ids)} training cases "
                         f"(at least one must stay unlabeled), got {num_labeled}")
    if labeled_list is not None:
        return sorted(labeled)
    picked = np.random.default_rng(seed).choice(len(case_ids), size=num_labeled, replace=False)
    return sorted(case_ids[i] for i in picked)


def make_semisupervised(source: str, destination: str, num_labeled: Optional[int] = None, seed: int = 0,
                        labeled_list: Optional[str] = None, overwrite: bool = False, num_processes: int = 2,
                        raw_root: Optional[str] = None) -> str:
    """Write the semi-supervised copy of ``source`` (see the module docstring); return its folder."""
    raw_root = _raw_root(raw_root)
    source_folder = resolve_source(source, raw_root)
    with open(os.path.join(source_folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    if "dataset" in dataset_json:
        raise ValueError(f"{source_folder}/dataset.json lists its files under 'dataset'; only datasets in the "
                         f"standard imagesTr/labelsTr layout are supported")
    missing_keys = [k for k in ("channel_names", "labels", "file_ending") if k not in dataset_json]
    if missing_keys:
        raise ValueError(f"{source_folder}/dataset.json lacks {missing_keys}")
    ending = dataset_json["file_ending"]
    training = list_cases(os.path.join(source_folder, "imagesTr"), ending)
    if not training:
        raise ValueError(f"{source_folder}/imagesTr holds no {{case}}_XXXX{ending} images")
    unlabeled_images = [c for c in training if _label_file(os.path.join(source_folder, "labelsTr"), c, ending) is None]
    if unlabeled_images:
        raise ValueError(f"{source_folder}: training cases without a label in labelsTr: {unlabeled_images[:10]}")

    labeled = choose_labeled(list(training), num_labeled, seed, labeled_list)
    dataset_id, name = destination_name(destination, source_folder, len(labeled))
    if os.path.join(os.path.abspath(raw_root), f"Dataset{dataset_id:03d}_{name}") == source_folder:
        raise ValueError(f"the destination is the source {source_folder}; choose another id or name")
    extra = {k: v for k, v in dataset_json.items() if k not in RESERVED_JSON_KEYS}
    extra["semisupervised_split"] = {"source": os.path.basename(source_folder), "num_labeled": len(labeled),
                                     "seed": None if labeled_list else seed,
                                     "labeled_list": os.path.abspath(labeled_list) if labeled_list else None,
                                     "labeled": labeled}
    patient_of = {case: patient for patient, cases in dataset_json.get(PATIENTS_KEY, {}).items() for case in cases}
    old_unlabeled = list_cases(os.path.join(source_folder, UNLABELED_IMAGES_DIR), ending)
    test = list_cases(os.path.join(source_folder, "imagesTs"), ending)
    writer = RawDatasetWriter(dataset_id, name, dataset_json["channel_names"], dataset_json["labels"],
                              file_ending=ending, raw_root=raw_root, overwrite=overwrite, extra_json=extra,
                              num_processes=num_processes,
                              expected_cases=len(training) + len(old_unlabeled) + len(test))
    labels_tr = os.path.join(source_folder, "labelsTr")
    labeled_set = set(labeled)
    with writer:
        for case_id, files in training.items():
            label = _label_file(labels_tr, case_id, ending)
            if case_id in labeled_set:
                writer.add_training_case_from_files(case_id, files, label, source=files[0],
                                                    patient=patient_of.get(case_id))
            else:
                writer.add_unlabeled_case_from_files(case_id, files, label, source=files[0])
        for case_id, files in old_unlabeled.items():
            reference = _label_file(os.path.join(source_folder, REFERENCE_LABELS_DIR), case_id, ending)
            writer.add_unlabeled_case_from_files(case_id, files, reference, source=files[0])
        for case_id, files in test.items():
            label = _label_file(os.path.join(source_folder, "labelsTs"), case_id, ending)
            writer.add_test_case_from_files(case_id, files, label, source=files[0])
    print(f"{writer.final_folder}: {writer.num_training} labeled training cases, {writer.num_unlabeled} unlabeled "
          f"(labels in {REFERENCE_LABELS_DIR}), {writer.num_test} test cases, from {source_folder}")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext make_semisupervised``."""
    parser.description = ("Split an nnU-Net raw dataset into a labeled subset (imagesTr/labelsTr) and unlabeled "
                          "cases (imagesTrUnlabeled, their labels in labelsTrReference).")
    parser.add_argument("-d", "--source", required=True,
                        help="source raw dataset: id (4), name (Dataset004_Hippocampus) or folder")
    parser.add_argument("-o", "--destination", required=True,
                        help="new dataset: id (its name becomes <source name>Semi<N>) or DatasetXXX_Name")
    parser.add_argument("--num-labeled", type=int,
                        help="number of labeled training cases (required unless --labeled-list is given)")
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument("--seed", type=int, default=0, help="seed of the random labeled subset (default: 0)")
    subset.add_argument("--labeled-list", help="file naming the labeled case ids, one per line, or the "
                                               "dataset.json of an earlier make_semisupervised (its labeled ids)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="writer processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination folder")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext make_semisupervised``."""
    if args.num_labeled is None and args.labeled_list is None:
        raise ValueError("give --num-labeled N or --labeled-list FILE")
    make_semisupervised(args.source, args.destination, num_labeled=args.num_labeled, seed=args.seed,
                        labeled_list=args.labeled_list, overwrite=args.overwrite,
                        num_processes=args.num_processes)

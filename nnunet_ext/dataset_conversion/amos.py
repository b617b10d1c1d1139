"""AMOS 2022 (abdominal CT and MRI, 15 organs) to two partner raw datasets, CT and MRI, for CMC.

Input (``-i AMOS22_DIR``): the AMOS 2022 release, ``imagesTr`` / ``labelsTr`` (required) and ``imagesVa`` /
``labelsVa`` (optional), files ``amos_NNNN.nii.gz``; ids up to 500 are CT scans, 501–600 MRI scans (AMOS's
numbering), other ids an error naming the file. ``imagesTs`` (no labels) is not read. ``--unlabeled-dir`` adds
AMOS's unlabeled release (CT scans) as unlabeled CT cases.

Output: the CT scans as ``Dataset{id}_AMOSCT`` (channel ``CT``, so nnU-Net applies its CT normalisation) and the
MRI scans as ``Dataset{partner id}_AMOSMR`` (channel ``MRI``, z-score; ``--partner-id``, default id + 1), with
one label set: AMOS's 0–13 (spleen, right and left kidney, gall bladder, esophagus, liver, stomach, aorta,
postcava, pancreas, right and left adrenal gland, duodenum); 14 bladder and 15 prostate / uterus, which the MRI
scans do not annotate, become background. ``--keep-all-labels`` keeps all 16 classes and writes the CT dataset
only. Per modality, ``--num-labeled-ct`` / ``--num-labeled-mr`` training scans, drawn with
``numpy.random.default_rng(seed)`` from the sorted ids (or the ids of ``--labeled-list``), go to
imagesTr/labelsTr; the other labeled training scans go to imagesTrUnlabeled with their labels in
labelsTrReference; the validation scans go to imagesTs/labelsTs. The two dataset.json name each other
(``nnunet_ext_partner``, DESIGN.md §3) and record the labeled ids. A label value above 15 is an error naming the
file; both datasets are written or neither.
"""
import argparse
import os
import re
from contextlib import ExitStack
from typing import Dict, List, Optional

import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
from nnunet_ext.dataset_conversion.semisupervised import read_case_list
from nnunet_ext.partners import PARTNER_KEY

ORGANS = ("spleen", "right_kidney", "left_kidney", "gall_bladder", "esophagus", "liver", "stomach", "aorta",
          "postcava", "pancreas", "right_adrenal_gland", "left_adrenal_gland", "duodenum", "bladder",
          "prostate_uterus")
"""AMOS's labels 1–15, in order."""
MR_ANNOTATED = 13
"""The MRI scans annotate labels 1–13 only."""
FILE_PATTERN = re.compile(r"amos_(\d{4})\.nii(\.gz)?")
CT_IDS, MR_IDS = range(1, 501), range(501, 601)
REFERENCE = ("Ji et al., AMOS: A large-scale abdominal multi-organ benchmark for versatile medical image "
             "segmentation, NeurIPS 2022")


def labels_json(keep_all: bool) -> Dict[str, int]:
    """background 0 and AMOS's organs 1–13 (1–15 with ``keep_all``)."""
    return {"background": 0, **{name: k for k, name in enumerate(ORGANS[:15 if keep_all else MR_ANNOTATED], start=1)}}


def list_scans(folder: str) -> Dict[str, str]:
    """``{case id: path}`` of the ``amos_NNNN`` files of ``folder`` (empty when it does not exist)."""
    if not os.path.isdir(folder):
        return {}
    scans = {}
    for name in sorted(os.listdir(folder)):
        match = FILE_PATTERN.fullmatch(name)
        if match is not None:
            scans[f"amos_{match.group(1)}"] = os.path.join(folder, name)
    return scans


def modality(case: str, path: str) -> str:
    """``CT`` or ``MR`` from AMOS's id ranges; ``ValueError`` naming the file for an id in neither."""
    number = int(case.split("_")[1])
    if number in CT_IDS:
        return "CT"
    if number in MR_IDS:
        return "MR"
    raise ValueError(f"{path}: AMOS id {number} is neither a CT id (1-500) nor an MRI id (501-600)")


def choose_labeled(ids: List[str], count: Optional[int], seed: int, listed: Optional[List[str]],
                   what: str) -> List[str]:
    """The labeled subset of one modality's training ids: ``count`` drawn with ``default_rng(seed)`` from the
    sorted ids, or those of ``listed``; all of them when neither is given."""
    if listed is not None:
        return sorted(set(listed) & set(ids))
    if count is None:
        return sorted(ids)
    if not 1 <= count <= len(ids):
        raise ValueError(f"--num-labeled-{what} {count}: the release has {len(ids)} {what.upper()} training scans")
    return sorted(ids[i] for i in np.random.default_rng(seed).choice(len(ids), size=count, replace=False))


def convert_amos(input_folder: str, dataset_id: int, num_labeled_ct: Optional[int] = None,
                 num_labeled_mr: Optional[int] = None, seed: int = 0, labeled_list: Optional[str] = None,
                 partner_id: Optional[int] = None, keep_all_labels: bool = False,
                 unlabeled_dir: Optional[str] = None, num_processes: int = 2, overwrite: bool = False,
                 raw_root: Optional[str] = None) -> List[str]:
    """Convert an AMOS 2022 release; return the dataset folders (see the module docstring)."""
    input_folder = os.path.abspath(input_folder)
    for sub in ("imagesTr", "labelsTr"):
        if not os.path.isdir(os.path.join(input_folder, sub)):
            raise ValueError(f"{input_folder} has no {sub}/ folder; expected the AMOS 2022 layout imagesTr/, "
                             f"labelsTr/, imagesVa/, labelsVa/ with amos_NNNN.nii.gz files")
    training = list_scans(os.path.join(input_folder, "imagesTr"))
    validation = list_scans(os.path.join(input_folder, "imagesVa"))
    if not training:
        raise ValueError(f"{os.path.join(input_folder, 'imagesTr')} holds no amos_NNNN.nii.gz image")
    label_folders = {"Tr": os.path.join(input_folder, "labelsTr"), "Va": os.path.join(input_folder, "labelsVa")}
    for part, scans in (("Tr", training), ("Va", validation)):
        missing = [case for case in scans if not os.path.isfile(os.path.join(label_folders[part], f"{case}.nii.gz"))]
        if missing:
            raise ValueError(f"{label_folders[part]}: no label for {', '.join(missing[:10])}")
    by_modality = {m: {"train": [], "test": []} for m in ("CT", "MR")}
    for part, scans in (("train", training), ("test", validation)):
        for case, path in scans.items():
            by_modality[modality(case, path)][part].append(case)
    listed = read_case_list(labeled_list) if labeled_list else None
    modalities = ["CT"] if keep_all_labels else ["CT", "MR"]
    ids = {"CT": dataset_id, "MR": dataset_id + 1 if partner_id is None else partner_id}
    names = {"CT": "AMOSCT", "MR": "AMOSMR"}
    folders = {m: f"Dataset{ids[m]:03d}_{names[m]}" for m in modalities}
    mapping = {k: k if keep_all_labels or k <= MR_ANNOTATED else 0 for k in range(1, len(ORGANS) + 1)}
    unlabeled = list_scans(unlabeled_dir) if unlabeled_dir else {}
    if unlabeled_dir and not unlabeled:
        raise ValueError(f"--unlabeled-dir {unlabeled_dir} holds no amos_NNNN.nii.gz image")
    with ExitStack() as stack:
        writers = {}
        for m in modalities:
            labeled = choose_labeled(by_modality[m]["train"], num_labeled_ct if m == "CT" else num_labeled_mr, seed,
                                     listed, m.lower())
            extra = {"name": f"AMOS 2022 {m}", "reference": REFERENCE, "amos_labeled": labeled,
                     "description": f"AMOS 2022 {'CT' if m == 'CT' else 'MRI'} scans; labels AMOS 0-"
                                    f"{15 if keep_all_labels else 13}" +
                                    ("" if keep_all_labels else " (bladder 14 and prostate/uterus 15 as background, "
                                                                "since the MRI scans do not annotate them)")}
            if len(modalities) == 2:
                extra[PARTNER_KEY] = folders["MR" if m == "CT" else "CT"]
            writer = stack.enter_context(RawDatasetWriter(
                ids[m], names[m], {"0": "CT" if m == "CT" else "MRI"}, labels_json(keep_all_labels),
                raw_root=raw_root, overwrite=overwrite, extra_json=extra, num_processes=num_processes))
            writers[m] = writer
            for case in by_modality[m]["train"]:
                label = read_mapped_label(os.path.join(label_folders["Tr"], f"{case}.nii.gz"), mapping, "AMOS")
                source = training[case]
                if case in labeled:
                    writer.add_training_case(case, [sitk.ReadImage(source)], label, source=source)
                else:
                    writer.add_unlabeled_case(case, [sitk.ReadImage(source)], reference_label=label, source=source)
            for case in by_modality[m]["test"]:
                label = read_mapped_label(os.path.join(label_folders["Va"], f"{case}.nii.gz"), mapping, "AMOS")
                writer.add_test_case(case, [sitk.ReadImage(validation[case])], label, source=validation[case])
            if m == "CT":
                for case, path in unlabeled.items():
                    writer.add_unlabeled_case(case, [sitk.ReadImage(path)], source=path)
    for m, writer in writers.items():
        print(f"{writer.final_folder}: {writer.num_training} labeled + {writer.num_unlabeled} unlabeled {m} training "
              f"cases, {writer.num_test} validation cases (imagesTs)")
    return [writer.final_folder for writer in writers.values()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert amos``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True,
                        help="AMOS 2022 folder with imagesTr/, labelsTr/[, imagesVa/, labelsVa/]")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="dataset id of the CT scans, e.g. 701")
    parser.add_argument("--partner-id", type=int, help="dataset id of the MRI scans (default: the CT id + 1)")
    parser.add_argument("--num-labeled-ct", type=int, help="labeled CT training scans (default: all)")
    parser.add_argument("--num-labeled-mr", type=int, help="labeled MRI training scans (default: all)")
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument("--seed", type=int, default=0, help="seed of the labeled subsets")
    subset.add_argument("--labeled-list", help="file naming the labeled ids (both modalities), one per line")
    parser.add_argument("--keep-all-labels", action="store_true",
                        help="keep bladder (14) and prostate/uterus (15): a CT-only 16-class dataset")
    parser.add_argument("--unlabeled-dir", help="AMOS's unlabeled release (CT scans amos_NNNN.nii.gz)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing dataset folders")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert amos``."""
    convert_amos(args.input, args.dataset_id, num_labeled_ct=args.num_labeled_ct, num_labeled_mr=args.num_labeled_mr,
                 seed=args.seed, labeled_list=args.labeled_list, partner_id=args.partner_id,
                 keep_all_labels=args.keep_all_labels, unlabeled_dir=args.unlabeled_dir,
                 num_processes=args.num_processes, overwrite=args.overwrite)

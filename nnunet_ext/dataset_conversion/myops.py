"""MyoPS (multi-sequence cardiac MR, co-registered) to an nnU-Net raw dataset with three channels.

Input (``-i DIR``): the MyoPS 2020 layout, searched recursively: per patient ``CaseN_C0.nii.gz`` (bSSFP cine),
``CaseN_LGE.nii.gz``, ``CaseN_T2.nii.gz`` and, for labeled cases, ``CaseN_gd.nii.gz``, the three sequences
registered to one grid (the challenge's release; MS-CMRSeg 2019 has the same patients unregistered). A case
needs all three sequences; one without ``_gd`` (the challenge's test release) goes to imagesTs without label.

Output ``Dataset{id}_{name}`` (default name ``MyoPS``), ``.nii.gz``, case id = ``CaseN``: channels in the
fixed order ``{"0": "C0", "1": "LGE", "2": "T2"}``; labels mapped from the MyoPS codes

    500 LV blood pool → 1, 200 myocardium → 2, 600 RV blood pool → 3, 1220 edema → 4, 2221 scar → 5

("myocardium" is the normal myocardium: edema and scar lie inside the myocardial wall and keep their own
labels; MS-CMRSeg 2019 uses the same 200 / 500 / 600 codes). Labeled cases are split into training and test
cases by ``--test-fraction`` / ``--seed`` (default 0.2 / 0) or ``--split-file``, recorded in dataset.json
(``myops_split``); the test cases go to imagesTs/labelsTs. A label value outside the codes, a missing
sequence or a label whose grid differs from the images is an error naming the file; nothing is written then.
"""
import argparse
import os
import re
from typing import Dict, Optional

import SimpleITK as sitk

from nnunet_ext.dataset_conversion.held_out import add_split_arguments, choose_split, split_settings
from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter

SEQUENCES = ("C0", "LGE", "T2")
CHANNEL_NAMES = {str(i): sequence for i, sequence in enumerate(SEQUENCES)}
LABEL_CODES = {500: 1, 200: 2, 600: 3, 1220: 4, 2221: 5}
"""MyoPS code → our label value."""
LABELS = {"background": 0, "lv_blood_pool": 1, "myocardium": 2, "rv_blood_pool": 3, "edema": 4, "scar": 5}
FILE_PATTERN = re.compile(r"(Case\d+)_(C0|LGE|T2|gd)\.nii(\.gz)?")
SPLIT_KEY = "myops_split"
REFERENCE = ("Qiu et al., MyoPS: A benchmark of myocardial pathology segmentation combining three-sequence "
             "cardiac magnetic resonance images, Medical Image Analysis 2023")


def find_cases(input_folder: str) -> Dict[str, Dict[str, str]]:
    """``{case: {"C0": path, "LGE": path, "T2": path[, "gd": path]}}`` of the MyoPS files under ``input_folder``.

    ``ValueError`` for a missing folder, no MyoPS file at all, a file name found twice or a case lacking one of
    the three sequences.
    """
    if not os.path.isdir(input_folder):
        raise ValueError(f"MyoPS folder {input_folder} does not exist")
    cases: Dict[str, Dict[str, str]] = {}
    for folder, _, files in os.walk(input_folder, followlinks=True):
        for name in sorted(files):
            match = FILE_PATTERN.fullmatch(name)
            if match is None:
                continue
            case, kind = match.group(1), match.group(2)
            if kind in cases.setdefault(case, {}):
                raise ValueError(f"{case}_{kind} is there twice: {cases[case][kind]} and {os.path.join(folder, name)}")
            cases[case][kind] = os.path.join(folder, name)
    if not cases:
        raise ValueError(f"{input_folder} holds no MyoPS file CaseN_{{C0,LGE,T2,gd}}.nii.gz")
    incomplete = {case: [s for s in SEQUENCES if s not in files] for case, files in cases.items()}
    incomplete = {case: missing for case, missing in incomplete.items() if missing}
    if incomplete:
        raise ValueError(f"{input_folder}: case(s) without all three sequences: " + "; ".join(
            f"{case} lacks {', '.join(f'{case}_{s}.nii.gz' for s in missing)}" for case, missing in incomplete.items()))
    return dict(sorted(cases.items()))


def convert_myops(input_folder: str, dataset_id: int, test_fraction: float = 0.2, seed: int = 0,
                  split_file: Optional[str] = None, name: Optional[str] = None, num_processes: int = 2,
                  overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert a MyoPS folder; return the dataset folder (see the module docstring)."""
    input_folder = os.path.abspath(input_folder)
    cases = find_cases(input_folder)
    labeled = [case for case, files in cases.items() if "gd" in files]
    if not labeled:
        raise ValueError(f"{input_folder}: no case has a label CaseN_gd.nii.gz, so there is nothing to train on")
    train, test, split = choose_split(labeled, SPLIT_KEY, test_fraction, seed, split_file)
    unlabeled_test = [case for case in cases if case not in labeled]
    extra = {"name": "MyoPS", "reference": REFERENCE, SPLIT_KEY: split,
             "description": "MyoPS multi-sequence cardiac MR, bSSFP (C0), LGE and T2 co-registered; labels mapped "
                            "from the MyoPS codes 500 LV, 200 myocardium, 600 RV, 1220 edema, 2221 scar",
             "label_codes": {str(code): value for code, value in LABEL_CODES.items()},
             "test_cases_without_label": unlabeled_test}
    writer = RawDatasetWriter(dataset_id, name or "MyoPS", CHANNEL_NAMES, LABELS, raw_root=raw_root,
                              overwrite=overwrite, extra_json=extra, num_processes=num_processes,
                              expected_cases=len(cases))
    roles = {**{case: "train" for case in train}, **{case: "test" for case in test + unlabeled_test}}
    with writer:
        for case, files in cases.items():
            if case not in roles:
                continue
            images = [files[s] for s in SEQUENCES]
            label = read_mapped_label(files["gd"], LABEL_CODES, "MyoPS") if "gd" in files else None
            source = ", ".join(images + ([files["gd"]] if label is not None else []))
            if roles[case] == "train":
                writer.add_training_case(case, [sitk.ReadImage(f) for f in images], label, source=source)
            else:
                writer.add_test_case(case, [sitk.ReadImage(f) for f in images], label, source=source)
    print(f"{writer.final_folder}: {writer.num_training} training cases, {writer.num_test} test cases "
          f"({len(unlabeled_test)} of them without label); channels {', '.join(SEQUENCES)}")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert myops``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True, help="folder holding CaseN_{C0,LGE,T2,gd}.nii.gz (any depth)")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id, e.g. 705")
    add_split_arguments(parser)
    parser.add_argument("--name", help="dataset name (default: MyoPS)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert myops``."""
    convert_myops(args.input, args.dataset_id, **split_settings(args), name=args.name,
                  num_processes=args.num_processes, overwrite=args.overwrite)

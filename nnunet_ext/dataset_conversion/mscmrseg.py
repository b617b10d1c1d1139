"""MS-CMRSeg 2019 (multi-sequence cardiac MR) to one nnU-Net raw dataset per sequence, linked as partners.

Input (``-i DIR``, searched recursively), one of three layouts:

* the challenge's release: ``patientN_{C0,DE,T2}.nii.gz`` with ``patientN_{C0,DE,T2}_manual.nii.gz`` (LGE may be
  named ``DE`` or ``LGE``), label codes 500 LV blood pool, 200 myocardium, 600 RV blood pool;
* the split-folder LGE release (CycleMix: ``{train,val,TestSet}/{images,labels}/subjectN_DE[_manual].nii.gz``),
  labels already in the ACDC codes 1 RV, 2 myocardium, 3 LV; its ``_scribble`` files are not read, and its
  folders are pooled (the test patients are drawn as below);
* the MyoPS layout ``CaseN_{C0,LGE,T2,gd}.nii.gz`` (the same patients and protocol, sequences registered to one
  grid, one label for all), codes as the challenge's, edema 1220 and scar 2221 counted as myocardium.

Output, per sequence of ``--sequences`` (e.g. ``C0 LGE``): ``Dataset{id}_MSCMRSeg{sequence}`` with ids ``-d``,
``-d`` + 1, …; one channel named after the sequence; labels ``lv_blood_pool`` 1, ``myocardium`` 2,
``rv_blood_pool`` 3. The labeled patients are split into training and test patients (``--test-fraction`` /
``--seed``, default 0.2 / 0, or ``--split-file``; recorded as ``mscmrseg_split``; the same test patients in every
sequence); test patients go to imagesTs/labelsTs. With ``--num-labeled N`` the first N of a seeded permutation of
each sequence's training patients keep their labels (imagesTr/labelsTr) and the others go to imagesTrUnlabeled
(labels to labelsTrReference); patients without a label are unlabeled training cases. ``--disjoint-patients``
gives each patient to one sequence's dataset only, alternately in a seeded order (the unpaired setting, built
from co-registered data so that each sequence's truth is exact). Two sequences are partners: each dataset.json
names the other (``nnunet_ext_partner``, DESIGN.md §3). A patient lacking a requested sequence, a label value
outside the layout's codes or a label whose grid differs from its image is an error naming the file; all
datasets are written or none.
"""
import argparse
import os
import re
from contextlib import ExitStack
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.held_out import add_split_arguments, choose_split, split_settings
from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
from nnunet_ext.partners import PARTNER_KEY

SEQUENCES = ("C0", "LGE", "T2")
LABELS = {"background": 0, "lv_blood_pool": 1, "myocardium": 2, "rv_blood_pool": 3}
CHALLENGE_CODES = {500: 1, 200: 2, 600: 3}
LAYOUTS = {
    "challenge": (re.compile(r"(?P<patient>patient\d+)_(?P<sequence>C0|DE|LGE|T2)(?P<label>_manual)?\.nii(\.gz)?"),
                  CHALLENGE_CODES),
    "split_folders": (re.compile(r"(?P<patient>subject\d+)_(?P<sequence>C0|DE|LGE|T2)(?P<label>_manual)?"
                                 r"\.nii(\.gz)?"), {3: 1, 2: 2, 1: 3}),
    "myops": (re.compile(r"(?P<patient>Case\d+)_(?P<sequence>C0|LGE|T2|gd)\.nii(\.gz)?"),
              {**CHALLENGE_CODES, 1220: 2, 2221: 2}),
}
"""Layout → (file pattern, its label codes → ours)."""
SPLIT_KEY = "mscmrseg_split"
REFERENCE = ("Zhuang, Multivariate mixture model for myocardial segmentation combining multi-source images, "
             "IEEE TPAMI 2019")

Patients = Dict[str, Dict[str, Tuple[str, Optional[str]]]]
"""patient → sequence → (image path, label path or None)."""


def find_patients(input_folder: str) -> Tuple[str, Patients]:
    """(layout, patients) of the MS-CMRSeg files under ``input_folder``; ``ValueError`` for a missing folder, no
    such file, a folder mixing layouts or a label without its image."""
    if not os.path.isdir(input_folder):
        raise ValueError(f"MS-CMRSeg folder {input_folder} does not exist")
    found: Dict[str, Dict[str, Dict[str, Dict[str, str]]]] = {layout: {} for layout in LAYOUTS}
    for folder, _, files in os.walk(input_folder, followlinks=True):
        for name in sorted(files):
            for layout, (pattern, _) in LAYOUTS.items():
                match = pattern.fullmatch(name)
                if match is not None:
                    sequence = "LGE" if match["sequence"] == "DE" else match["sequence"]
                    kind = "label" if match.groupdict().get("label") or sequence == "gd" else "image"
                    found[layout].setdefault(match["patient"], {}).setdefault(sequence, {})[kind] = \
                        os.path.join(folder, name)
                    break
    layouts = [layout for layout, patients in found.items() if patients]
    if len(layouts) != 1:
        raise ValueError(f"{input_folder} holds no MS-CMRSeg files (patientN_C0.nii.gz, subjectN_DE.nii.gz or "
                         f"CaseN_C0.nii.gz …)" if not layouts else
                         f"{input_folder} mixes layouts ({', '.join(layouts)}); convert one release at a time")
    layout = layouts[0]
    patients: Patients = {}
    for patient, sequences in sorted(found[layout].items()):
        shared_label = sequences.pop("gd", {}).get("label")
        for sequence, files in sequences.items():
            if "image" not in files:
                raise ValueError(f"{files['label']}: a label without its image {patient}_{sequence}.nii.gz")
            patients.setdefault(patient, {})[sequence] = (files["image"], files.get("label", shared_label))
    return layout, patients


def assign(ids: List[str], sequences: Sequence[str], seed: int) -> Dict[str, List[str]]:
    """Each id to one sequence, alternately in a seeded order (``--disjoint-patients``)."""
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    return {sequence: sorted(order[k::len(sequences)]) for k, sequence in enumerate(sequences)}


def convert_mscmrseg(input_folder: str, dataset_id: int, sequences: Sequence[str] = ("C0", "LGE"),
                     num_labeled: Optional[int] = None, disjoint_patients: bool = False, test_fraction: float = 0.2,
                     seed: int = 0, split_file: Optional[str] = None, num_processes: int = 2,
                     overwrite: bool = False, raw_root: Optional[str] = None) -> List[str]:
    """Convert an MS-CMRSeg (or MyoPS) folder; return the dataset folders (see the module docstring)."""
    sequences = list(dict.fromkeys(sequences))
    if not sequences or not set(sequences) <= set(SEQUENCES) or len(sequences) > 2:
        raise ValueError(f"--sequences takes one or two of {', '.join(SEQUENCES)} (partners are pairs), got "
                         f"{sequences}")
    input_folder = os.path.abspath(input_folder)
    layout, patients = find_patients(input_folder)
    for patient, files in patients.items():
        missing = [s for s in sequences if s not in files]
        if missing:
            raise ValueError(f"{input_folder}: patient {patient} has no {' or '.join(missing)} image "
                             f"({patient}_{missing[0]}.nii.gz); choose --sequences it has")
    labeled = [p for p, files in patients.items() if all(files[s][1] is not None for s in sequences)]
    if not labeled:
        raise ValueError(f"{input_folder}: no patient has a label for {', '.join(sequences)}")
    train, test, split = choose_split(labeled, SPLIT_KEY, test_fraction, seed, split_file)
    unlabeled = [p for p in patients if p not in labeled]
    share = {s: set(train + test + unlabeled) for s in sequences}
    if disjoint_patients:
        share = {s: set() for s in sequences}
        for group in (train, test, unlabeled):
            for sequence, ids in assign(group, sequences, seed).items():
                share[sequence].update(ids)
    names = [f"MSCMRSeg{s}" for s in sequences]
    folders = [f"Dataset{dataset_id + k:03d}_{name}" for k, name in enumerate(names)]
    with ExitStack() as stack:
        writers = []
        for k, sequence in enumerate(sequences):
            extra = {"name": f"MS-CMRSeg {sequence}", "reference": REFERENCE, "layout": layout, SPLIT_KEY: split,
                     "description": f"MS-CMRSeg 2019 {sequence} cardiac MR; labels LV blood pool 1, myocardium 2, RV "
                                    f"blood pool 3 (mapped from the {layout} layout's codes)",
                     "label_codes": {str(c): v for c, v in LAYOUTS[layout][1].items()},
                     "disjoint_patients": disjoint_patients}
            if len(sequences) == 2:
                extra[PARTNER_KEY] = folders[1 - k]
            writer = RawDatasetWriter(dataset_id + k, names[k], {"0": sequence}, LABELS, raw_root=raw_root,
                                      overwrite=overwrite, extra_json=extra, num_processes=num_processes)
            writers.append(stack.enter_context(writer))
            ours = [p for p in train if p in share[sequence]]
            keep = set(ours) if num_labeled is None else \
                {ours[i] for i in np.random.default_rng(seed).permutation(len(ours))[:num_labeled]}
            if num_labeled is not None and num_labeled > len(ours):
                raise ValueError(f"--num-labeled {num_labeled}, but {sequence} has {len(ours)} training patients")
            for patient in sorted(share[sequence]):
                image_path, label_path = patients[patient][sequence]
                image = sitk.ReadImage(image_path)
                label = None if label_path is None else read_mapped_label(label_path, LAYOUTS[layout][1],
                                                                          f"MS-CMRSeg ({layout})")
                source = image_path + ("" if label_path is None else f" + {label_path}")
                if patient in test:
                    writer.add_test_case(patient, [image], label, source=source)
                elif patient in keep:
                    writer.add_training_case(patient, [image], label, source=source)
                else:
                    writer.add_unlabeled_case(patient, [image], reference_label=label, source=source)
    for writer, sequence in zip(writers, sequences):
        print(f"{writer.final_folder}: {sequence}, {writer.num_training} labeled + {writer.num_unlabeled} unlabeled "
              f"training cases, {writer.num_test} test cases")
    return [writer.final_folder for writer in writers]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert mscmrseg``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True, help="MS-CMRSeg release, CycleMix split folders or MyoPS")
    parser.add_argument("-d", "--dataset-id", type=int, required=True,
                        help="nnU-Net dataset id of the first sequence; the second gets the next id")
    parser.add_argument("--sequences", nargs="+", choices=SEQUENCES, default=["C0", "LGE"],
                        help="one dataset per sequence; two sequences are partners")
    parser.add_argument("--num-labeled", type=int, help="labeled training patients per sequence (default: all)")
    parser.add_argument("--disjoint-patients", action="store_true",
                        help="each patient in one sequence's dataset only (the unpaired setting)")
    add_split_arguments(parser)
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing dataset folders")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert mscmrseg``."""
    convert_mscmrseg(args.input, args.dataset_id, sequences=args.sequences, num_labeled=args.num_labeled,
                     disjoint_patients=args.disjoint_patients, **split_settings(args),
                     num_processes=args.num_processes, overwrite=args.overwrite)

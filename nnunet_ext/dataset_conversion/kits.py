"""KiTS (Kidney Tumor Segmentation challenge, abdominal CT: KiTS19, KiTS21, KiTS23) to a dataset of the kidneys.

Input (``-i DIR``): a KiTS data folder (``kits19/data``, ``kits21/data``, ``kits23/dataset``), the case folders
``case_XXXXX`` at any depth below it, each holding ``imaging.nii.gz`` and the segmentation of its release:

* KiTS19: ``segmentation.nii.gz``, codes 0 background, 1 kidney, 2 tumour;
* KiTS21: ``aggregated_MAJ_seg.nii.gz`` (the majority vote of the annotators; the ``_AND_`` / ``_OR_`` aggregates
  and ``raw/`` are not read), codes 0 background, 1 kidney, 2 tumour, 3 cyst;
* KiTS23: ``segmentation.nii.gz`` (KiTS19's name), codes 0 background, 1 kidney, 2 tumour, 3 cyst.

The release is detected from the file names: ``aggregated_MAJ_seg.nii.gz`` is KiTS21; ``segmentation.nii.gz`` is
KiTS23 when ``kits23.json`` lies beside the case folders or a case folder has KiTS23's ``instances/`` folder,
KiTS19 otherwise. ``--release`` states it instead (needed for a KiTS23 copy without those). A case folder with
``imaging.nii.gz`` alone (KiTS19's test cases 00210-00299) goes to imagesTs without label.

Output ``Dataset{id}_{name}`` (default name ``KiTS``), ``.nii.gz``, channel ``{"0": "CT"}``, case ids = the KiTS
case names (``case_00000``), ``imaging.nii.gz`` copied byte for byte. ``--tumour`` says what becomes of the
tumour (2) and cyst (3) codes:

* ``background`` (default, as LTUDA): both set to 0, labels {background 0, kidney 1} (kidney parenchyma, left
  and right kidney as one class);
* ``kidney``: both merged into the kidney, labels {background 0, kidney 1} (the whole kidneys);
* ``separate``: kept, labels {background 0, kidney 1, tumor 2} plus cyst 3 for KiTS21 / KiTS23.

Errors, naming the folder or file: no case folder; a case folder twice, without ``imaging.nii.gz``, with both
segmentation names, or with NIfTI files but neither segmentation name; a folder mixing the releases' names; a
code outside the release's set; a segmentation whose grid (size, spacing, origin, direction) differs from the
image's. Nothing is written then.
"""
import argparse
import os
import re
from typing import Dict, Optional, Tuple

from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter, add_writer_arguments

CT_CHANNEL = {"0": "CT"}
CASE_PATTERN = re.compile(r"case_\d{5}")
IMAGE_FILE = "imaging.nii.gz"
RELEASES = {
    "19": {"segmentation": "segmentation.nii.gz", "codes": (1, 2),
           "reference": "Heller et al., The state of the art in kidney and kidney tumor segmentation in "
                        "contrast-enhanced CT imaging: Results of the KiTS19 challenge, Medical Image Analysis 67, "
                        "2021"},
    "21": {"segmentation": "aggregated_MAJ_seg.nii.gz", "codes": (1, 2, 3),
           "reference": "Heller et al., The KiTS21 Challenge: Automatic segmentation of kidneys, renal tumors, and "
                        "renal cysts in corticomedullary-phase CT, arXiv:2307.01984"},
    "23": {"segmentation": "segmentation.nii.gz", "codes": (1, 2, 3),
           "reference": "KiTS23, the 2023 Kidney and Kidney Tumor Segmentation Challenge (Heller et al.), "
                        "https://kits-challenge.org/kits23/"},
}
"""Release → its segmentation file name, its label codes besides 0 and its reference."""
SEGMENTATION_FILES = sorted({release["segmentation"] for release in RELEASES.values()})
NAMING = "segmentation.nii.gz (KiTS19, KiTS23) or aggregated_MAJ_seg.nii.gz (KiTS21)"
TUMOUR_MODES = {"background": {1: 1, 2: 0, 3: 0}, "kidney": {1: 1, 2: 1, 3: 1}, "separate": {1: 1, 2: 2, 3: 3}}
"""``--tumour`` → KiTS code → our label value (code 3, cyst, only in KiTS21 / KiTS23)."""


def labels_json(tumour: str, release: str) -> Dict[str, int]:
    """background 0 and kidney 1, plus tumor 2 (and cyst 3 where the release has it) when kept ``separate``."""
    labels = {"background": 0, "kidney": 1}
    if tumour == "separate":
        labels.update({"tumor": 2, "cyst": 3} if 3 in RELEASES[release]["codes"] else {"tumor": 2})
    return labels


def find_case_folders(input_folder: str) -> Dict[str, str]:
    """``{case name: folder}`` of the ``case_XXXXX`` folders at any depth below ``input_folder`` (not looking
    inside a case folder); ``ValueError`` for a missing folder, no case folder or a case name found twice."""
    if not os.path.isdir(input_folder):
        raise ValueError(f"KiTS folder {input_folder} does not exist")
    cases: Dict[str, str] = {}
    for folder, subfolders, _ in os.walk(input_folder, followlinks=True):
        here = sorted(d for d in subfolders if CASE_PATTERN.fullmatch(d))
        for case in here:
            if case in cases:
                raise ValueError(f"{case} is there twice: {cases[case]} and {os.path.join(folder, case)}")
            cases[case] = os.path.join(folder, case)
        subfolders[:] = [d for d in subfolders if d not in here]
    if not cases:
        raise ValueError(f"{input_folder} holds no KiTS case folder case_XXXXX/ (with {IMAGE_FILE} and {NAMING})")
    return dict(sorted(cases.items()))


def segmentation_of(folder: str) -> Optional[str]:
    """The segmentation file name in a case folder, or None for an image-only (test) case; ``ValueError`` naming
    the folder when the image is missing, both names are there, or other NIfTI files stand in their place."""
    files = set(os.listdir(folder))
    if IMAGE_FILE not in files:
        raise ValueError(f"{folder} has no {IMAGE_FILE} (KiTS's imaging is downloaded separately, by the release's "
                         f"get_imaging script)")
    found = [name for name in SEGMENTATION_FILES if name in files]
    if len(found) > 1:
        raise ValueError(f"{folder} holds both {' and '.join(found)}; keep the one of its release")
    others = sorted(name for name in files - {IMAGE_FILE} if name.endswith((".nii", ".nii.gz")))
    if not found and others:
        raise ValueError(f"{folder} holds {', '.join(others)} but no KiTS segmentation: {NAMING}")
    return found[0] if found else None


def detect_release(input_folder: str, cases: Dict[str, str], segmentations: Dict[str, Optional[str]],
                   release: Optional[str] = None) -> str:
    """The release of the case folders (see the module docstring); ``ValueError`` for a mixture of the
    segmentation names, no segmentation at all, or names other than those of the given ``release``."""
    names = sorted({name for name in segmentations.values() if name is not None})
    if not names:
        raise ValueError(f"{input_folder}: no case folder holds a segmentation, {NAMING}, only {IMAGE_FILE}, so "
                         f"there is nothing to train on")
    if len(names) > 1:
        examples = {name: next(case for case, seg in segmentations.items() if seg == name) for name in names}
        raise ValueError(f"{input_folder} mixes KiTS releases: " + ", ".join(
            f"{case} has {name}" for name, case in examples.items()) + "; convert one release per dataset")
    if release is not None:
        if RELEASES[release]["segmentation"] != names[0]:
            raise ValueError(f"--release {release} expects {RELEASES[release]['segmentation']}, but the case folders "
                             f"of {input_folder} hold {names[0]}")
        return release
    if names[0] == RELEASES["21"]["segmentation"]:
        return "21"
    kits23 = any(os.path.isfile(os.path.join(os.path.dirname(folder), "kits23.json"))
                 or os.path.isdir(os.path.join(folder, "instances")) for folder in cases.values())
    return "23" if kits23 else "19"


def read_release(input_folder: str, release: Optional[str] = None) -> Tuple[str, Dict[str, Tuple[str, Optional[str]]]]:
    """(release, ``{case: (image path, segmentation path or None)}``) of a KiTS data folder."""
    cases = find_case_folders(input_folder)
    segmentations = {case: segmentation_of(folder) for case, folder in cases.items()}
    detected = detect_release(input_folder, cases, segmentations, release)
    return detected, {case: (os.path.join(folder, IMAGE_FILE),
                          os.path.join(folder, segmentations[case]) if segmentations[case] else None)
                   for case, folder in cases.items()}


def convert_kits(input_folder: str, dataset_id: int, tumour: str = "background", release: Optional[str] = None,
                 name: Optional[str] = None, num_processes: int = 2, overwrite: bool = False,
                 raw_root: Optional[str] = None) -> str:
    """Convert a KiTS19 / KiTS21 / KiTS23 data folder; return the dataset folder (see the module docstring)."""
    if tumour not in TUMOUR_MODES:
        raise ValueError(f"--tumour is one of {', '.join(TUMOUR_MODES)}, got {tumour!r}")
    if release is not None and release not in RELEASES:
        raise ValueError(f"--release is one of {', '.join(RELEASES)}, got {release!r}")
    input_folder = os.path.abspath(input_folder)
    release, cases = read_release(input_folder, release)
    codes = RELEASES[release]["codes"]
    mapping = {code: value for code, value in TUMOUR_MODES[tumour].items() if code in codes}
    unlabeled = [case for case, (_, segmentation) in cases.items() if segmentation is None]
    masses = "tumour and cyst" if 3 in codes else "tumour"
    descriptions = {"background": f"{masses} as background (kidney parenchyma)",
                    "kidney": f"{masses} merged into the kidney", "separate": f"{masses} kept as own labels"}
    extra = {"name": f"KiTS{release}", "reference": RELEASES[release]["reference"], "kits_release": f"KiTS{release}",
             "kits_tumour": tumour,
             "description": f"KiTS{release} abdominal CT; KiTS codes 0 background, 1 kidney, 2 tumour"
                            f"{', 3 cyst' if 3 in codes else ''}; {descriptions[tumour]}",
             "label_codes": {str(code): value for code, value in mapping.items()},
             "test_cases_without_label": unlabeled}
    writer = RawDatasetWriter(dataset_id, name or "KiTS", CT_CHANNEL, labels_json(tumour, release), raw_root=raw_root,
                              overwrite=overwrite, extra_json=extra, num_processes=num_processes,
                              expected_cases=len(cases))
    with writer:
        for case, (image, segmentation) in cases.items():
            if segmentation is None:
                writer.add_test_case(case, [image], source=image)
                continue
            label = read_mapped_label(segmentation, mapping, f"KiTS{release}")
            writer.add_training_case(case, [image], label, source=f"{image}, {segmentation}")
    print(f"{writer.final_folder}: KiTS{release}, {writer.num_training} training cases, {writer.num_test} cases "
          f"without segmentation (imagesTs); {descriptions[tumour]}")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert kits``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True,
                        help=f"KiTS data folder holding case_XXXXX/{IMAGE_FILE} with {NAMING}, case folders at any "
                             f"depth")
    add_writer_arguments(parser, 734, "KiTS")
    parser.add_argument("--tumour", choices=tuple(TUMOUR_MODES), default="background",
                        help="tumour (2) and cyst (3): background (as LTUDA), merged into the kidney, or separate "
                             "labels 2 and 3")
    parser.add_argument("--release", choices=tuple(RELEASES),
                        help="KiTS19, 21 or 23 (default: detected: aggregated_MAJ_seg.nii.gz is 21; "
                             "segmentation.nii.gz is 23 beside kits23.json or with instances/ folders, else 19)")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert kits``."""
    convert_kits(args.input, args.dataset_id, tumour=args.tumour, release=args.release, name=args.name,
                 num_processes=args.num_processes, overwrite=args.overwrite)

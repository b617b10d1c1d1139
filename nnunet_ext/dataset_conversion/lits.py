"""LiTS (Liver Tumor Segmentation benchmark, abdominal CT) to an nnU-Net raw dataset of the liver.

Input (``-i DIR``): the LiTS release, searched recursively, so ``Training Batch 1/``, ``Training Batch 2/`` and the
test folder may sit anywhere below ``DIR``: ``volume-N.nii`` with its ``segmentation-N.nii`` and the test
release's ``test-volume-N.nii`` (each also as ``.nii.gz``). LiTS's label codes: 0 background, 1 liver, 2 tumour
(the lesions, inside the liver).

Output ``Dataset{id}_{name}`` (default name ``LiTS``), ``.nii.gz``, channel ``{"0": "CT"}`` (nnU-Net's CT
normalisation). Case ids keep the LiTS numbers: ``volume-N`` with its segmentation goes to imagesTr/labelsTr as
``lits_N``; a ``volume-N`` without segmentation goes to imagesTs as ``lits_N`` and ``test-volume-N`` to imagesTs as
``lits_test_N``, both without label (listed in dataset.json as ``test_cases_without_label``). ``--tumour`` says
what becomes of the tumour code 2:

* ``liver`` (default, as LTUDA): merged into the liver, labels {background 0, liver 1} (the whole liver);
* ``separate``: kept, labels {background 0, liver 1, tumor 2};
* ``background``: set to 0, labels {background 0, liver 1} (the liver without its lesions).

``.nii.gz`` volumes are copied byte for byte, ``.nii`` volumes re-encoded losslessly. A segmentation without its
volume, a file found twice, a label value other than 0, 1, 2, or a segmentation whose grid (size, spacing,
origin, direction) differs from its volume's is an error naming the file; nothing is written then.
"""
import argparse
import os
import re
from typing import Dict, Optional

import SimpleITK as sitk

from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import ImageSource, RawDatasetWriter, add_writer_arguments

CT_CHANNEL = {"0": "CT"}
TUMOUR_MODES = {"liver": {1: 1, 2: 1}, "separate": {1: 1, 2: 2}, "background": {1: 1, 2: 0}}
"""``--tumour`` → LiTS code → our label value."""
FILE_PATTERN = re.compile(r"(?P<kind>test-volume|volume|segmentation)-(?P<number>\d+)\.nii(\.gz)?")
REFERENCE = "Bilic et al., The Liver Tumor Segmentation Benchmark (LiTS), Medical Image Analysis 84, 2023"


def labels_json(tumour: str) -> Dict[str, int]:
    """background 0 and liver 1, plus tumor 2 when the tumour is kept ``separate``."""
    return {"background": 0, "liver": 1, **({"tumor": 2} if tumour == "separate" else {})}


def find_cases(input_folder: str) -> Dict[str, Dict[str, str]]:
    """``{case id: {"volume": path[, "segmentation": path]}}`` of the LiTS files under ``input_folder``.

    ``ValueError`` for a missing folder, no LiTS file at all, a file found twice (``.nii`` and ``.nii.gz``, or in
    two folders) or a segmentation without its volume.
    """
    if not os.path.isdir(input_folder):
        raise ValueError(f"LiTS folder {input_folder} does not exist")
    paths = sorted(os.path.join(folder, name) for folder, _, files in os.walk(input_folder, followlinks=True)
                   for name in files if FILE_PATTERN.fullmatch(name))
    cases: Dict[str, Dict[str, str]] = {}
    for path in paths:
        match = FILE_PATTERN.fullmatch(os.path.basename(path))
        case = ("lits_test_" if match["kind"] == "test-volume" else "lits_") + match["number"]
        kind = "segmentation" if match["kind"] == "segmentation" else "volume"
        if kind in cases.setdefault(case, {}):
            raise ValueError(f"{match['kind']}-{match['number']} is there twice: {cases[case][kind]} and {path}")
        cases[case][kind] = path
    if not cases:
        raise ValueError(f"{input_folder} holds no LiTS file (volume-N.nii with segmentation-N.nii, or "
                         f"test-volume-N.nii; also .nii.gz)")
    orphans = [files["segmentation"] for files in cases.values() if "volume" not in files]
    if orphans:
        raise ValueError(f"segmentation(s) without their volume-N file: {', '.join(sorted(orphans)[:5])}")
    return dict(sorted(cases.items()))


def volume_source(path: str, file_ending: str = ".nii.gz") -> ImageSource:
    """The path itself when the file can be copied as is (it has the dataset's ending), else the image read."""
    return path if path.endswith(file_ending) else sitk.ReadImage(path)


def convert_lits(input_folder: str, dataset_id: int, tumour: str = "liver", name: Optional[str] = None,
                 num_processes: int = 2, overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert a LiTS release; return the dataset folder (see the module docstring)."""
    if tumour not in TUMOUR_MODES:
        raise ValueError(f"--tumour is one of {', '.join(TUMOUR_MODES)}, got {tumour!r}")
    input_folder = os.path.abspath(input_folder)
    cases = find_cases(input_folder)
    unlabeled = [case for case, files in cases.items() if "segmentation" not in files]
    if len(unlabeled) == len(cases):
        raise ValueError(f"{input_folder} holds no segmentation-N.nii (only volumes, e.g. the test release), so "
                         f"there is nothing to train on")
    descriptions = {"liver": "tumour merged into the liver", "separate": "liver 1, tumour 2",
                    "background": "tumour as background (liver without its lesions)"}
    extra = {"name": "LiTS", "reference": REFERENCE, "lits_tumour": tumour,
             "description": f"LiTS abdominal CT; LiTS codes 0 background, 1 liver, 2 tumour; {descriptions[tumour]}",
             "label_codes": {str(code): value for code, value in TUMOUR_MODES[tumour].items()},
             "test_cases_without_label": unlabeled}
    writer = RawDatasetWriter(dataset_id, name or "LiTS", CT_CHANNEL, labels_json(tumour), raw_root=raw_root,
                              overwrite=overwrite, extra_json=extra, num_processes=num_processes,
                              expected_cases=len(cases))
    with writer:
        for case, files in cases.items():
            image = [volume_source(files["volume"])]
            if "segmentation" in files:
                label = read_mapped_label(files["segmentation"], TUMOUR_MODES[tumour], "LiTS")
                writer.add_training_case(case, image, label, source=f"{files['volume']}, {files['segmentation']}")
            else:
                writer.add_test_case(case, image, source=files["volume"])
    print(f"{writer.final_folder}: LiTS, {writer.num_training} training cases, {writer.num_test} volumes without "
          f"segmentation (imagesTs); tumour: {descriptions[tumour]}")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert lits``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True,
                        help="LiTS folder holding volume-N.nii / segmentation-N.nii / test-volume-N.nii (any depth)")
    add_writer_arguments(parser, 732, "LiTS")
    parser.add_argument("--tumour", choices=tuple(TUMOUR_MODES), default="liver",
                        help="tumour code 2: merged into the liver (as LTUDA), a separate label 2, or background")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert lits``."""
    convert_lits(args.input, args.dataset_id, tumour=args.tumour, name=args.name, num_processes=args.num_processes,
                 overwrite=args.overwrite)

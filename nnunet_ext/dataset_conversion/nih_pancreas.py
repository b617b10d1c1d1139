"""NIH Pancreas-CT (TCIA: contrast-enhanced abdominal CT, DICOM series + NIfTI pancreas labels) to an nnU-Net raw
dataset, optionally with the DTC / MC-Net semi-supervised split.

Input (``-i DIR``): the TCIA download, searched recursively (symbolic links followed). DICOM files are the ``*.dcm``
files, grouped by SeriesInstanceUID; a series belongs to the patient named by the nearest folder above it that is
called like a Pancreas-CT patient (``PANCREAS_0001`` or ``Pancreas-0001``, any case, four digits; e.g.
``DIR/Pancreas-CT/PANCREAS_0001/<study>/<series>/1-001.dcm``), else by its PatientID if that is such a name. A
patient must have one series. Labels are the files ``labelNNNN.nii.gz`` (TCIA's ``TCIA_pancreas_labels-*``
folder) under ``--labels`` (default: anywhere under ``DIR``); ``label0001.nii.gz`` is patient 1. Case ids are
``pancreas_NNNN``.

Label codes: 0 background, 1 pancreas; any other value is an error naming the file. Written as background 0,
pancreas 1.

Slice order and pairing (:mod:`~nnunet_ext.dataset_conversion.dicom_series`): the slices are sorted by
ImagePositionPatient along the slice normal, never by file name or instance number, and the volume takes its
geometry from these headers; two slices at one position or a gap in the positions (missing slices) are errors
naming the series. A label is paired with its series by physical position: its voxel grid (size, spacing, origin,
direction; axes may be reordered or flipped, e.g. a label stored head-to-feet) must coincide with the series', else
the conversion fails naming both files; it is then moved onto the image grid (nearest neighbour, exact on
coinciding grids), so image and label carry the DICOM geometry. Pixel values are those of the DICOM reader, i.e.
Hounsfield units after the series' rescale slope / intercept.

Split:

* default: every case to imagesTr/labelsTr (default name ``NIHPancreas``).
* ``--split dtc``: the split of DTC / MC-Net (specs/mt_uamt_dtc_ugmcl_maml.md appendix A, from ``ycwu1997/MC-Net``
  ``data/Pancreas/{train,test}.list``; their ``imageNNNN`` is our ``pancreas_NNNN``): the first 12 cases of the
  62-case train list labeled (imagesTr/labelsTr), the other 50 unlabeled (imagesTrUnlabeled, their labels in
  labelsTrReference, for reporting only), the 20 test cases in imagesTs/labelsTs (default name
  ``NIHPancreasDTC``). DTC/MC-Net also resample to 1 mm and crop around the ground truth; this converter does
  neither (nnU-Net plans its own spacing), so only the case split is theirs.

Missing files: a series without a label, a label without a series, and (``--split dtc``) a listed case absent
from the download are errors naming them; ``--only-present`` converts only the cases that have both (the 12
labeled cases of the DTC split must be there) and records the others in dataset.json (``nih_pancreas_split``).
A case outside the DTC lists is an error with ``--split dtc``.

Output ``Dataset{id}_{name}``, one channel ``{"0": "CT"}``, ``.nii.gz``. Reading the series runs in ``-np`` worker
processes and :class:`RawDatasetWriter` writes in as many, with a progress bar; the dataset appears only once
complete.
"""
import argparse
import os
import re
from typing import Dict, List, Optional, Tuple

import SimpleITK as sitk

from nnunet_ext.dataset_conversion import dicom_series
from nnunet_ext.dataset_conversion.dicom_series import (Grid, Series, files_under, grid_match, grid_problem,
                                                        read_label_grid, read_series_image)
from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter, add_writer_arguments
from nnunet_ext.gaze import map_in_pool

PATIENT_PATTERN = re.compile(r"pancreas[_-](\d{4})", re.IGNORECASE)
LABEL_PATTERN = re.compile(r"label(\d{4})\.nii\.gz")
CHANNEL_NAMES = {"0": "CT"}
LABELS = {"background": 0, "pancreas": 1}
SOURCE_NAME = "NIH Pancreas-CT"
SPLITS = ("dtc",)
LAYOUT = "Pancreas-CT/PANCREAS_NNNN/<study>/<series>/*.dcm + TCIA_pancreas_labels-*/labelNNNN.nii.gz"

DTC_TRAIN = (57, 18, 62, 31, 20, 17, 32, 79, 61, 64, 70, 19, 48, 76, 41, 52, 49, 71, 72, 34, 10, 15, 77, 80, 27, 47,
             22, 14, 68, 58, 7, 11, 24, 42, 82, 35, 12, 55, 75, 78, 16, 13, 53, 23, 56, 33, 38, 30, 81, 29, 36, 44,
             2, 45, 26, 65, 66, 43, 28, 63, 69, 3)
"""MC-Net's ``data/Pancreas/train.list`` in file order (patient numbers); the first ``DTC_NUM_LABELED`` are labeled."""
DTC_TEST = (50, 59, 37, 60, 40, 74, 4, 46, 8, 54, 5, 73, 1, 39, 6, 67, 25, 51, 21, 9)
"""MC-Net's ``data/Pancreas/test.list`` (patient numbers)."""
DTC_NUM_LABELED = 12
"""Labeled cases of DTC's 20 % setting: the first 12 lines of the train list."""

REFERENCE = ("Roth et al., DeepOrgan: Multi-level Deep Convolutional Networks for Automated Pancreas Segmentation, "
             "MICCAI 2015; Roth et al., Data From Pancreas-CT, The Cancer Imaging Archive, 2016, "
             "doi:10.7937/K9/TCIA.2016.tNB1kqBU")
DTC_REFERENCE = ("Luo et al., Semi-supervised Medical Image Segmentation through Dual-task Consistency, AAAI 2021; "
                 "split lists of Wu et al., MC-Net (github.com/ycwu1997/MC-Net, data/Pancreas/train.list, test.list)")


def case_id(number: int) -> str:
    """Our case id of Pancreas-CT patient ``number``: ``pancreas_0001``."""
    return f"pancreas_{number:04d}"


def _patient_case(name: str) -> Optional[str]:
    match = PATIENT_PATTERN.fullmatch(name)
    return case_id(int(match.group(1))) if match else None


def dtc_split() -> Dict[str, List[str]]:
    """``{"labeled", "unlabeled", "test": [case ids]}`` of the DTC / MC-Net split, in the lists' order."""
    train = [case_id(n) for n in DTC_TRAIN]
    return {"labeled": train[:DTC_NUM_LABELED], "unlabeled": train[DTC_NUM_LABELED:],
            "test": [case_id(n) for n in DTC_TEST]}


def find_labels(folder: str) -> Dict[str, str]:
    """``{case id: label path}`` of the ``labelNNNN.nii.gz`` files under ``folder``; a case found twice is an
    error naming both files."""
    labels: Dict[str, str] = {}
    for path in files_under(folder, ".nii.gz"):
        match = LABEL_PATTERN.fullmatch(os.path.basename(path))
        if match is None:
            continue
        case = case_id(int(match.group(1)))
        if case in labels:
            raise ValueError(f"two labels for {case}: {labels[case]} and {path}; keep one")
        labels[case] = path
    return labels


def check_label_grid(series: Series, label_path: str) -> str:
    """How the label's voxels lie on the series' (``same grid`` or ``same voxels, label axes reordered or
    flipped``); ``ValueError`` naming the series and the label where the grids do not coincide."""
    image_grid = Grid(series.size, series.spacing, series.origin, series.direction)
    label_grid = read_label_grid(label_path)
    match = grid_match(label_grid, image_grid)
    problem = grid_problem(label_grid, image_grid, match, label_path, series)
    if problem is not None:
        raise ValueError(f"case {series.case_id}: the label is not on the DICOM series' voxel grid: {problem[1]}")
    return "same grid" if match[1] else "same voxels, label axes reordered or flipped"


def read_case(task: Tuple[Series, str]) -> Tuple[str, sitk.Image, sitk.Image]:
    """(case id, image, label on the image's grid) of one series and its label (runs in a pool worker)."""
    series, label_path = task
    image = read_series_image(series)
    label = read_mapped_label(label_path, {1: 1}, SOURCE_NAME)
    on_grid = sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    return series.case_id, image, on_grid


def plan_roles(cases: List[str], split: Optional[str], only_present: bool) -> Tuple[Dict[str, str], dict]:
    """(``{case: "labeled" | "unlabeled" | "test"}``, split record for dataset.json) of the cases that have both a
    series and a label; ``ValueError`` for a case outside the DTC lists and for listed cases that are absent (labeled
    ones always, others unless ``only_present``)."""
    if split is None:
        return {case: "labeled" for case in cases}, {"split": "none: every case labeled (imagesTr)"}
    if split not in SPLITS:
        raise ValueError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    lists = dtc_split()
    listed = {case: role for role, ids in lists.items() for case in ids}
    outside = sorted(set(cases) - set(listed))
    if outside:
        raise ValueError(f"{', '.join(outside[:10])}: not in the DTC split lists (Pancreas-CT patients 1-82)")
    missing = {role: [case for case in ids if case not in set(cases)] for role, ids in lists.items()}
    if missing["labeled"]:
        raise ValueError(f"labeled cases of the DTC split that lack a DICOM series or a label: "
                         f"{', '.join(missing['labeled'])}; the labeled subset must be complete")
    absent = missing["unlabeled"] + missing["test"]
    if absent and not only_present:
        raise ValueError(f"cases of the DTC split that lack a DICOM series or a label: {', '.join(absent[:10])}"
                         f"{', ...' if len(absent) > 10 else ''}; pass --only-present to convert the cases there")
    record = {"split": "dtc", "reference": DTC_REFERENCE, **lists, "num_labeled": DTC_NUM_LABELED,
              "missing": absent}
    return {case: listed[case] for case in cases}, record


def pair_files(series: Dict[str, Series], labels: Dict[str, str], only_present: bool,
               labels_folder: str) -> Tuple[List[str], Dict[str, str]]:
    """(cases with a series and a label, ``{case: why skipped}``); ``ValueError`` naming the unpaired series and
    labels unless ``only_present``."""
    without_label = sorted(set(series) - set(labels))
    without_series = sorted(set(labels) - set(series))
    if (without_label or without_series) and not only_present:
        problems = [f"DICOM series without a label under {labels_folder}: " +
                    ", ".join(f"{series[c].folder} ({c})" for c in without_label[:5])] if without_label else []
        problems += [f"labels without a DICOM series: {', '.join(labels[c] for c in without_series[:5])}"] \
            if without_series else []
        raise ValueError("; ".join(problems) + "; pass --only-present to convert only the cases that have both")
    skipped = {c: "no label" for c in without_label}
    skipped.update({c: "no DICOM series" for c in without_series})
    return sorted(set(series) & set(labels)), skipped


def convert_nih_pancreas(input_folder: str, dataset_id: int, split: Optional[str] = None,
                         labels_folder: Optional[str] = None, only_present: bool = False, name: Optional[str] = None,
                         num_processes: int = 2, overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert an NIH Pancreas-CT download; return the dataset folder (see the module docstring).

    ``ValueError`` (naming the series or file) for a broken series, a label off the series' grid or with values
    other than 0 / 1, unpaired files and split cases that are absent; nothing is written then.
    """
    input_folder = os.path.abspath(input_folder)
    labels_folder = os.path.abspath(labels_folder or input_folder)
    for what, folder in (("input", input_folder), ("labels", labels_folder)):
        if not os.path.isdir(folder):
            raise ValueError(f"{what} folder {folder} does not exist")
    series = dicom_series.scan_series(input_folder, _patient_case, SOURCE_NAME, "PANCREAS_0001", "one CT series")
    labels = find_labels(labels_folder)
    for found, what, folder in ((series, "DICOM file (*.dcm)", input_folder),
                                (labels, "label (labelNNNN.nii.gz)", labels_folder)):
        if not found:
            raise ValueError(f"{folder} holds no {what}; expected the TCIA layout {LAYOUT} (searched recursively)")
    cases, skipped = pair_files(series, labels, only_present, labels_folder)
    roles, record = plan_roles(cases, split, only_present)
    report = {case: {"series": series[case].folder, "slices": series[case].size[2], "label": labels[case],
                     "label_grid": check_label_grid(series[case], labels[case]), "role": roles[case]}
              for case in cases}
    record.update(skipped=skipped)
    extra = {"name": "NIH Pancreas-CT", "reference": REFERENCE, "source": input_folder, "nih_pancreas_split": record,
             "nih_pancreas_cases": report,
             "slice_order": "slices sorted by ImagePositionPatient along the slice normal, ascending; geometry from "
                            "the DICOM headers; labels paired by physical position",
             "description": "NIH Pancreas-CT abdominal CT (Hounsfield units), label pancreas 1" +
                            ("; DTC/MC-Net split: 12 labeled (imagesTr), 50 unlabeled (imagesTrUnlabeled, true labels "
                             "in labelsTrReference), 20 test (imagesTs/labelsTs)" if split else "")}
    writer = RawDatasetWriter(dataset_id, name or ("NIHPancreasDTC" if split else "NIHPancreas"), CHANNEL_NAMES,
                              LABELS, raw_root=raw_root, overwrite=overwrite, extra_json=extra,
                              num_processes=num_processes, expected_cases=len(cases))
    tasks = [(series[case], labels[case]) for case in cases]
    with writer:
        for case, image, label in map_in_pool(read_case, tasks, num_processes, progress=False):
            source = f"{series[case].folder} + {labels[case]}"
            if roles[case] == "labeled":
                writer.add_training_case(case, [image], label, source=source)
            elif roles[case] == "unlabeled":
                writer.add_unlabeled_case(case, [image], reference_label=label, source=source)
            else:
                writer.add_test_case(case, [image], label, source=source)
    if skipped:
        print(f"--only-present: skipped {len(skipped)} case(s): " +
              ", ".join(f"{case} ({why})" for case, why in sorted(skipped.items())))
    if record.get("missing"):
        print(f"--only-present: DTC split cases absent from the download: {', '.join(record['missing'])}")
    written = {"labeled (imagesTr, labelsTr)": writer.num_training,
               "unlabeled (imagesTrUnlabeled, true labels in labelsTrReference)": writer.num_unlabeled,
               "test (imagesTs, labelsTs)": writer.num_test}
    print(f"{writer.final_folder}: " + ", ".join(f"{count} {role}" for role, count in written.items() if count))
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert nih_pancreas``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True,
                        help="TCIA download: DICOM series (*.dcm) below, in folders named PANCREAS_NNNN")
    parser.add_argument("--split", choices=SPLITS,
                        help="dtc: DTC/MC-Net's 12 labeled + 50 unlabeled + 20 test cases (default: every case "
                             "labeled, imagesTr)")
    parser.add_argument("--labels", help="folder searched for labelNNNN.nii.gz (default: the input folder)")
    parser.add_argument("--only-present", action="store_true",
                        help="convert only the cases with a DICOM series and a label; absent DTC split cases are "
                             "recorded (the 12 labeled ones must be there)")
    add_writer_arguments(parser, 735, "NIHPancreas, or NIHPancreasDTC with --split dtc")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert nih_pancreas``."""
    convert_nih_pancreas(args.input, args.dataset_id, split=args.split, labels_folder=args.labels,
                         only_present=args.only_present, name=args.name, num_processes=args.num_processes,
                         overwrite=args.overwrite)

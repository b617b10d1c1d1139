"""NCI-ISBI 2013 prostate (TCIA DICOM series + NRRD labels) to an nnU-Net raw dataset: 3-D volumes with true
labels, or GazeSup's 2-D slices with gaze pseudo-masks.

Input (``-i DIR``): the TCIA download, searched recursively (symbolic links are followed). DICOM files are the
``*.dcm`` files; they are grouped by SeriesInstanceUID, and a series belongs to the case named by the nearest
folder above it that is called like an NCI-ISBI case (``Prostate3T-01-0001``, ``ProstateDx-03-0005``; e.g.
``DIR/<case>/<StudyUID>/<SeriesUID>/*.dcm``), else by its PatientID if that is such a name. A case must have one
series (NCI-ISBI has one axial T2 series per case). Labels are the ``*.nrrd`` files under ``--labels`` (default:
anywhere under ``DIR``) named ``<case>.nrrd``, ``<case>_truth.nrrd`` or ``<case>_correctedLabels.nrrd``; where a
case has a ``_correctedLabels`` file (the official correction of ProstateDx-01-0006) it replaces the others.
Other ``.nrrd`` names are ignored and listed in the report.

Split: the challenge's cohorts. ``-01`` cases (Prostate3T-01, ProstateDx-01: the 60 training cases) are
training cases; ``-02`` (leaderboard) and ``-03`` (test) cases are test cases (imagesTs, with labelsTs where a
label exists). ``--test-cohorts 03`` sends only the test cohort to imagesTs and makes the leaderboard cases
training cases (``--test-cohorts 02`` the other way round); dataset.json records the choice (``test_cohorts``).
Gaze slices (``<case>_<k>``) are several cases of one patient: dataset.json lists them per patient
(``patients``) and the dataset's ``splits_final.json`` holds nnU-Net's five folds drawn over patients, so that
no patient is in the training and the validation part of a fold (:mod:`nnunet_ext.splits`; ``nnunet_ext
plan_and_preprocess`` puts it where nnU-Net reads it).

Slice order and pairing: the slices of a series are sorted by ImagePositionPatient projected on the slice normal
(row x column direction of ImageOrientationPatient), ascending, never by file name; instance numbers are only
checked (whether they rise or fall along the normal is recorded per case, gaps or repeats are warnings). The volume
takes its geometry from these headers: origin = position of the first sorted slice, spacing = PixelSpacing and
the mean slice step, direction = (row, column, normal). A label is paired with the series by physical position:
its voxel grid must coincide with the image's (every label voxel centre within ``GRID_TOLERANCE`` voxels of
an image voxel centre, one to one; axes may be reordered or flipped, e.g. a label stored head-to-feet), and it is
then moved onto the image grid by nearest-neighbour resampling, which is exact on coinciding grids. The written
label therefore carries exactly the DICOM geometry. Series reading and label pairing are
:mod:`~nnunet_ext.dataset_conversion.dicom_series`'s, shared with the NIH Pancreas-CT converter.

Cases that cannot be paired are skipped with the reason, printed and recorded in dataset.json under
``nci_isbi_conversion`` (problem codes: ``slice_count_mismatch`` — e.g. ProstateDx-01-0055, whose label has 23
slices and its series 34 —, ``size_mismatch``, ``geometry_mismatch``, ``no_label`` for a training series,
``no_series`` for a label, ``no_gaze``, ``gaze_slice_mismatch``; with ``--gaze-csv`` also ``no_label`` for a test
series); test series without a label are written to imagesTs only (3-D) and listed. ``--ignore-label-geometry``
pairs labels of the right size by voxel index where their origin or direction disagree with the DICOM series
(recorded as a warning per case).
If no training case is left the conversion fails with the report.

Output ``Dataset{id}_{name}``, one channel ``{"0": "T2"}``, ``.nii.gz``:

* without ``--gaze-csv`` (default name ``NCIISBI``): 3-D volumes, case id = the NCI-ISBI case; labels background 0,
  prostate 1 (central gland 1 and peripheral zone 2 merged), or with ``--keep-zones`` background 0, central_gland 1,
  peripheral_zone 2. nnU-Net's ``2d`` configuration trains on these slice-wise.
* with ``--gaze-csv`` (GazeMedSeg ``nci-isbi_fixation.csv``, default name ``NCIISBIGaze``): 2-D slices, case id
  ``<case>_<k>``. For a gazed training slice k is the gaze CSV's slice number, which names label slice z = k - 1
  — the GazeMedSeg convention (its masks are NRRD slice k - 1; on the real labels, the gaze heatmaps of the 789
  gazed slices overlap NRRD slice k - 1, as SimpleITK reads it and untransposed, better than slice k, the
  reversed slice order or the transposed slice) — and the image slice is the one holding that label slice: the
  k-th in the sorted order above for a label on the image's grid, the k-th from the end for a label stored
  head-to-feet (a label whose slice axis runs in-plane is skipped, ``gaze_slice_mismatch``). A test slice's k is
  its 1-based index in the sorted order. Training cases are the gazed slices of the training cases; image = the slice
  (original intensities; 2-D geometry: the pixel spacing, origin 0, identity direction), label = GazeSup ordinal
  pseudo-mask (:mod:`nnunet_ext.gaze`: heatmap σ 50 px → dense CRF → thresholds 0.2 / 0.4; value = number of
  thresholds the CRF map reaches, nested regions as :func:`~nnunet_ext.gaze.gaze_labels`
  declares), true prostate mask of the slice in ``labelsTrReference/``. The CRF's colour kernel needs 8-bit RGB:
  each slice is min-max scaled to 0-255 (truncated to uint8) and replicated to three channels for the CRF only, as
  GazeSup does (specs/cmc_gazesup_ltuda.md §2.4). The CSV's IMAGE_HEIGHT / IMAGE_WIDTH must equal the slice size.
  Test cases are the slices of the labeled test cases that show prostate (the paper's protocol), true masks in
  labelsTs. dataset.json's ``gaze`` records the target (prostate), σ, thresholds per level, CRF parameters and the
  mean pseudo-mask Dice against the true masks.

Every file goes through :class:`RawDatasetWriter` (validation, atomic folder, parallel writing); reading the
series and the pseudo-masks run in a pool of ``-np`` workers.
"""
import argparse
import os
import re
from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk

from nnunet_ext import gaze
from nnunet_ext.dataset_conversion import dicom_series
from nnunet_ext.dataset_conversion.dicom_series import Grid as _Grid
from nnunet_ext.dataset_conversion.dicom_series import (Series, files_under, grid_match, grid_problem,
                                                        label_to_image_index, read_label_grid, read_series_image)
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter

CASE_PATTERN = re.compile(r"Prostate(?:3T|Dx)-(\d{2})-\d{4}")
"""An NCI-ISBI case name; the middle number is the cohort (01 training, 02 leaderboard, 03 test)."""

LABEL_FILE_PATTERN = re.compile(r"(Prostate(?:3T|Dx)-\d{2}-\d{4})(_truth|_correctedLabels)?\.nrrd")
GAZE_KEY_PATTERN = re.compile(r"(Prostate(?:3T|Dx)-\d{2}-\d{4})_(\d+)")
TEST_COHORTS = ("02", "03")
"""Cohorts that may go to imagesTs: ``02`` (leaderboard) and ``03`` (test); ``01`` is always training."""
CHANNEL_NAMES = {"0": "T2"}
MERGED_LABELS = {"background": 0, "prostate": 1}
ZONE_LABELS = {"background": 0, "central_gland": 1, "peripheral_zone": 2}
NRRD_LABEL_VALUES = (0, 1, 2)
FILE_ENDING = ".nii.gz"

REFERENCE = ("Bloch et al., NCI-ISBI 2013 Challenge: Automated Segmentation of Prostate Structures, "
             "The Cancer Imaging Archive, 2015")


# ---------------------------------------------------------------------------------------------- finding files


def cohort(case_id: str) -> str:
    """The cohort number of a case name: ``01`` training, ``02`` leaderboard, ``03`` test."""
    return CASE_PATTERN.fullmatch(case_id).group(1)


def find_labels(folder: str) -> Tuple[Dict[str, str], List[str]]:
    """``{case: NRRD path}`` of the label files under ``folder``, and the ``.nrrd`` files not used.

    Names ``<case>.nrrd``, ``<case>_truth.nrrd`` and ``<case>_correctedLabels.nrrd`` are labels; a
    ``_correctedLabels`` file replaces the case's other files (which are listed as not used); two other files for one
    case are an error.
    """
    candidates: Dict[str, List[str]] = {}
    unused = []
    for path in files_under(folder, ".nrrd"):
        match = LABEL_FILE_PATTERN.fullmatch(os.path.basename(path))
        if match is None:
            unused.append(path)
        else:
            candidates.setdefault(match.group(1), []).append(path)
    labels = {}
    for case, paths in sorted(candidates.items()):
        corrected = [p for p in paths if p.endswith("_correctedLabels.nrrd")]
        chosen = corrected if corrected else paths
        if len(chosen) > 1:
            raise ValueError(f"case {case} has {len(chosen)} label files: {', '.join(chosen)}; keep one")
        labels[case] = chosen[0]
        unused += [p for p in paths if p != chosen[0]]
    return labels, sorted(unused)


# ---------------------------------------------------------------------------------------------- DICOM series


def _case_name(name: str) -> Optional[str]:
    return name if CASE_PATTERN.fullmatch(name) else None


def scan_series(root: str, progress: bool = True) -> Dict[str, Series]:
    """``{case: Series}`` of the ``*.dcm`` files under ``root`` (module docstring: how cases are named; reading and
    the errors: :func:`~nnunet_ext.dataset_conversion.dicom_series.scan_series`)."""
    return dicom_series.scan_series(root, _case_name, "NCI-ISBI", "Prostate3T-01-0001", "one axial T2 series",
                                    progress)


# ---------------------------------------------------------------------------------------------- label pairing


def image_slice_of_label_slice(label: _Grid, image: _Grid, z: int) -> Optional[int]:
    """The position-sorted series index of the image slice that holds label slice ``z`` (0-based), for grids
    :func:`grid_match` accepted; None if the label's slices are not the image's (its third axis runs in-plane).
    A label stored head-to-feet holds image slice n − 1 − z as its slice z."""
    linear, shift = label_to_image_index(label, image)
    step = np.round(linear[2, 2])
    if abs(step) != 1:
        return None
    return int(step * z + np.round(shift[2]))


def _short(items: Sequence[str], limit: int = 5) -> str:
    return ", ".join(items[:limit]) + (", ..." if len(items) > limit else "")


def read_label_on_grid(path: str, image: sitk.Image, pair_by_index: bool = False) -> np.ndarray:
    """The NRRD label as an array on the image grid, (z, y, x) like the image's array, values 0 / 1 / 2.

    By default the label is resampled nearest-neighbour onto the image grid, which only moves whole voxels where
    :func:`grid_match` accepted the grids; ``pair_by_index`` takes the label array as it is (same size required).
    ``ValueError`` naming the file for values other than 0, 1, 2.
    """
    try:
        label = sitk.ReadImage(path)
    except RuntimeError as e:
        raise ValueError(f"{path}: cannot be read as an NRRD label ({str(e).strip().splitlines()[-1]})") from None
    if pair_by_index:
        if label.GetSize() != image.GetSize():
            raise ValueError(f"{path}: label size {label.GetSize()} differs from the image's {image.GetSize()}")
    else:
        label = sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    array = sitk.GetArrayFromImage(label)
    unknown = sorted(set(np.unique(array).tolist()) - set(NRRD_LABEL_VALUES))
    if unknown:
        raise ValueError(f"{path}: label values {unknown[:10]} found; NCI-ISBI labels are 0 (background), "
                         f"1 (central gland) and 2 (peripheral zone)")
    return array.astype(np.uint8)


# ---------------------------------------------------------------------------------------------- per case work


@dataclass(frozen=True)
class _GazeSlice:
    """GazeMedSeg's slice ``k`` of a case: NRRD label slice k − 1, held by image slice ``volume_index`` (in
    position order; set once the label is paired with the series)."""
    k: int
    fixations: np.ndarray
    expected_size: Optional[Tuple[int, int]]
    volume_index: Optional[int] = None


@dataclass(frozen=True)
class _Task:
    series: Series
    training: bool
    label_path: Optional[str]
    pair_by_index: bool = False
    keep_zones: bool = False
    slices_2d: bool = False
    gaze_slices: Tuple[_GazeSlice, ...] = ()
    sigma: float = 0.0
    thresholds: Tuple[float, ...] = ()


@dataclass(frozen=True)
class _Output:
    """One case to write: image and labels as arrays on the geometry ``spacing`` / ``origin`` / ``direction``."""
    case_id: str
    image: np.ndarray
    label: Optional[np.ndarray]
    reference: Optional[np.ndarray]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    source: str


def _convert_case(task: _Task) -> List[_Output]:
    """Read one case and return what to write (runs in a pool worker): the volume, or its 2-D slices."""
    series = task.series
    image = read_series_image(series)
    label = None
    source = series.folder
    if task.label_path is not None:
        label = read_label_on_grid(task.label_path, image, task.pair_by_index)
        label = label if task.keep_zones else (label > 0).astype(np.uint8)
        source += f" + {task.label_path}"
    volume = sitk.GetArrayFromImage(image)
    if not task.slices_2d:
        return [_Output(series.case_id, volume, label, None, image.GetSpacing(), image.GetOrigin(),
                        image.GetDirection(), source)]
    geometry = (series.spacing[:2], (0.0, 0.0), (1.0, 0.0, 0.0, 1.0))
    outputs = []
    if task.training:
        for s in task.gaze_slices:
            name = f"{series.case_id}_{s.k}"
            z = s.volume_index
            levels = gaze.pseudo_label(gaze.grey_to_rgb(volume[z]), s.fixations, task.sigma, task.thresholds,
                                       expected_size=s.expected_size, name=name).levels
            outputs.append(_Output(name, volume[z], levels, label[z], *geometry,
                                   f"{source}, slice {s.k}"))
    else:
        for z in np.flatnonzero(label.reshape(len(label), -1).any(axis=1)):
            outputs.append(_Output(f"{series.case_id}_{z + 1}", volume[z], label[z], None, *geometry,
                                   f"{source}, slice {z + 1}"))
    return outputs


def _itk(array: np.ndarray, output: _Output) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(output.spacing)
    image.SetOrigin(output.origin)
    image.SetDirection(output.direction)
    return image


# ---------------------------------------------------------------------------------------------- planning


def _read_gaze(csv_path: str) -> Tuple[Dict[str, Dict[int, _GazeSlice]], int]:
    """Gaze slices per case of a GazeMedSeg NCI-ISBI CSV (either format), and the number of slices."""
    fixations, sizes = gaze.read_gaze_csv(csv_path)
    per_case: Dict[str, Dict[int, _GazeSlice]] = {}
    for key, rows in fixations.items():
        match = GAZE_KEY_PATTERN.fullmatch(key)
        if match is None or int(match.group(2)) < 1:
            raise ValueError(f"{csv_path}: image {key!r} is not named <case>_<k> with k >= 1 (e.g. "
                             f"Prostate3T-01-0001_7.jpg); is this GazeMedSeg's nci-isbi_fixation.csv?")
        k = int(match.group(2))
        per_case.setdefault(match.group(1), {})[k] = _GazeSlice(k, rows, sizes.get(key))
    return per_case, len(fixations)


def _check_gaze_slices(case: str, slices: Dict[int, _GazeSlice], series: Series, csv_path: str) -> None:
    """Every gazed slice must exist in the series and have the CSV's image size; ``ValueError`` naming the case."""
    columns, rows, count = series.size
    for k, s in sorted(slices.items()):
        if k > count:
            raise ValueError(f"{csv_path}: image {case}_{k} names slice {k}, but the DICOM series {series.folder} "
                             f"of case {case} has {count} slices")
        if s.expected_size is not None and tuple(s.expected_size) != (rows, columns):
            raise ValueError(f"{csv_path}: image {case}_{k} is {s.expected_size[0]} x {s.expected_size[1]} "
                             f"(IMAGE_HEIGHT x IMAGE_WIDTH), but the slices of case {case} (DICOM series "
                             f"{series.folder}) are {rows} x {columns}; the fixations belong to another image")


def _plan(series: Dict[str, Series], labels: Dict[str, str], gaze_slices: Optional[Dict[str, Dict[int, _GazeSlice]]],
          ignore_label_geometry: bool, csv_path: Optional[str],
          test_cohorts: Sequence[str] = TEST_COHORTS) -> Tuple[List[Tuple[str, dict]], dict]:
    """Decide per case: convert (with which label pairing) or skip (why). Returns ([(case, task fields)], report)."""
    report = {"cases": {}, "skipped": {}, "warnings": {}, "test_cases_without_label": []}
    plans = []
    for case in sorted(set(series) | set(labels)):
        training = cohort(case) not in test_cohorts
        s, label_path = series.get(case), labels.get(case)
        entry = {"role": "training" if training else "test", "series": s.folder if s else None,
                 "slices": s.size[2] if s else None, "instance_numbers": s.instance_order if s else None,
                 "label": label_path}
        report["cases"][case] = entry

        def skip(problem: str, detail: str) -> None:
            report["skipped"][case] = {"problem": problem, "detail": detail}

        if s is None:
            skip("no_series", f"label {label_path} has no DICOM series under the input folder")
            continue
        if s.instance_order in ("not monotonic", "incomplete"):
            report["warnings"].setdefault(case, []).append(
                f"instance numbers are {s.instance_order} along the slice normal (the slices are ordered by position)")
        pair_by_index = False
        if label_path is None:
            if training or gaze_slices is not None:
                skip("no_label", f"DICOM series {s.folder} has no label file" +
                     ("" if training else " (gaze mode keeps the test slices that show prostate, which needs it)"))
                continue
            report["test_cases_without_label"].append(case)
        else:
            image_grid = _Grid(s.size, s.spacing, s.origin, s.direction)
            label_grid = read_label_grid(label_path)
            match = grid_match(label_grid, image_grid)
            problem = grid_problem(label_grid, image_grid, match, label_path, s)
            if problem is not None and problem[0] == "geometry_mismatch" and ignore_label_geometry \
                    and label_grid.size == image_grid.size:
                report["warnings"].setdefault(case, []).append(f"paired by voxel index (--ignore-label-geometry): "
                                                               f"{problem[1]}")
                pair_by_index = True
            elif problem is not None:
                skip(*problem)
                continue
            entry["label_grid"] = ("paired by voxel index" if pair_by_index else
                                   "same grid" if match[1] else "same voxels, label axes reordered or flipped")
        fields = {"series": s, "training": training, "label_path": label_path, "pair_by_index": pair_by_index}
        if gaze_slices is not None and training:
            if not gaze_slices.get(case):
                skip("no_gaze", f"the gaze CSV has no fixations for case {case}")
                continue
            _check_gaze_slices(case, gaze_slices[case], s, csv_path)
            gazed = [gaze_slices[case][k] for k in sorted(gaze_slices[case])]
            indices = [g.k - 1 if pair_by_index else image_slice_of_label_slice(label_grid, image_grid, g.k - 1)
                       for g in gazed]
            if None in indices:
                skip("gaze_slice_mismatch", f"label {label_path} runs across the slices of DICOM series "
                                            f"{s.folder}, so its slice numbers (the gaze CSV's) name no image slice")
                continue
            fields["gaze_slices"] = tuple(replace(g, volume_index=z) for g, z in zip(gazed, indices))
        plans.append((case, fields))
    if gaze_slices is not None:
        used = {case for case, fields in plans if fields["training"]}
        report["gaze_images_not_converted"] = sorted(f"{case}_{k}" for case, slices in gaze_slices.items()
                                                     if case not in used for k in slices)
    return plans, report


def format_report(report: dict) -> str:
    """The skipped cases, warnings and unlabeled test cases of a conversion report, one line each."""
    lines = [f"skipped {case}: {item['problem']}: {item['detail']}" for case, item in report["skipped"].items()]
    lines += [f"warning {case}: {text}" for case, texts in report["warnings"].items() for text in texts]
    if report["test_cases_without_label"]:
        lines.append(f"test cases without label (imagesTs only): {', '.join(report['test_cases_without_label'])}")
    missing_gaze = report.get("gaze_images_not_converted")
    if missing_gaze:
        lines.append(f"{len(missing_gaze)} gazed slice(s) of the CSV belong to cases not converted as training "
                     f"cases: {_short(missing_gaze, 10)}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- the converter


def convert_nci_isbi(input_folder: str, dataset_id: int, labels_folder: Optional[str] = None,
                     keep_zones: bool = False, gaze_csv: Optional[str] = None, levels: Optional[int] = None,
                     thresholds: Optional[Sequence[float]] = None, sigma: Optional[float] = None,
                     ignore_label_geometry: bool = False, test_cohorts: Sequence[str] = TEST_COHORTS,
                     name: Optional[str] = None, num_processes: int = 2, overwrite: bool = False,
                     raw_root: Optional[str] = None) -> str:
    """Convert an NCI-ISBI 2013 download; return the dataset folder (see the module docstring).

    ``ValueError`` (naming the file or case) for unreadable or inconsistent input, a gaze CSV whose image sizes or
    slice numbers disagree with the series, and when no training case is left; nothing is written then.
    """
    test_cohorts = sorted(set(test_cohorts))
    if not set(test_cohorts) <= set(TEST_COHORTS):
        raise ValueError(f"--test-cohorts takes {' and '.join(TEST_COHORTS)} (leaderboard, test), got {test_cohorts}")
    if keep_zones and gaze_csv is not None:
        raise ValueError("--keep-zones applies to the 3-D volumes only; gaze pseudo-masks and their reference "
                         "masks are prostate / background")
    input_folder = os.path.abspath(input_folder)
    labels_folder = os.path.abspath(labels_folder or input_folder)
    for what, folder in (("input", input_folder), ("labels", labels_folder)):
        if not os.path.isdir(folder):
            raise ValueError(f"{what} folder {folder} does not exist")
    gaze_slices, ordered = None, ()
    if gaze_csv is not None:
        sigma, ordered = gaze.resolve_settings("nci_isbi", sigma, thresholds, levels)
        gaze_slices, num_gazed = _read_gaze(gaze_csv)
        gaze.require_densecrf()
    series = scan_series(input_folder)
    labels, unused_labels = find_labels(labels_folder)
    plans, report = _plan(series, labels, gaze_slices, ignore_label_geometry, gaze_csv, test_cohorts)
    report.update(input=input_folder, labels_folder=labels_folder, unused_label_files=unused_labels)
    tasks = [_Task(keep_zones=keep_zones, slices_2d=gaze_csv is not None, sigma=sigma or 0.0,
                   thresholds=tuple(ordered), **fields) for _, fields in plans]
    printed = format_report(report)
    if printed:
        print(printed)
    if not any(t.training for t in tasks):
        problems: Dict[str, List[str]] = {}
        for case, item in report["skipped"].items():
            problems.setdefault(item["problem"], []).append(case)
        raise ValueError(f"no training case left to convert from {input_folder} (DICOM series of {len(series)} "
                         f"case(s), {len(labels)} label file(s) under {labels_folder}); skipped: " +
                         ("; ".join(f"{problem} {len(cases)} ({_short(cases)})" for problem, cases in problems.items())
                          or "none") +
                         " (one line per case above)")

    extra = {"name": "NCI-ISBI 2013 prostate", "reference": REFERENCE, "nci_isbi_conversion": report,
             "split": "challenge cohorts: the cases of test_cohorts in imagesTs, the others training cases",
             "test_cohorts": test_cohorts,
             "slice_order": "slices sorted by ImagePositionPatient along the slice normal, ascending; "
                            "geometry from the DICOM headers"}
    if gaze_csv is None:
        labels_json = ZONE_LABELS if keep_zones else MERGED_LABELS
        extra["description"] = ("NCI-ISBI 2013 prostate T2 MRI volumes; labels " +
                                ("central gland 1, peripheral zone 2" if keep_zones else
                                 "prostate 1 (central gland and peripheral zone merged)"))
        expected = len(tasks)
    else:
        labels_json, gaze_entries = gaze.gaze_dataset_entries("prostate", gaze_csv, sigma, ordered)
        extra.update(gaze_entries)
        extra["description"] = ("NCI-ISBI 2013 prostate T2 MRI, 2-D slices <case>_<k> (k = 1-based slice index in "
                                "the sorted order = label slice k - 1) with GazeSup gaze pseudo-masks: labelsTr = "
                                "ordinal map of the levels (value = number of thresholds the dense-CRF map of the "
                                "gaze heatmap reaches); labelsTrReference = true prostate masks, reporting only; "
                                "imagesTs/labelsTs = the test slices showing prostate, true masks (1 = prostate)")
        extra["gaze"].update(
            gazed_slices_in_csv=num_gazed,
            crf_image="per-slice min-max scaling of the MR slice to 0-255, truncated to uint8, grey replicated to "
                      "RGB (CRF input only; the nnU-Net image keeps the original intensities)")
        expected = None
    writer = RawDatasetWriter(dataset_id, name or ("NCIISBIGaze" if gaze_csv else "NCIISBI"), CHANNEL_NAMES,
                              labels_json, file_ending=FILE_ENDING, raw_root=raw_root, overwrite=overwrite,
                              extra_json=extra, num_processes=num_processes, expected_cases=expected)
    level_dice: List[List[float]] = []
    empty_references = []
    with writer:
        for task, outputs in zip(tasks, gaze.map_in_pool(_convert_case, tasks, num_processes, progress=False)):
            for out in outputs:
                image = _itk(out.image, out)
                label = None if out.label is None else _itk(out.label, out)
                patient = task.series.case_id if task.slices_2d else None
                if not task.training:
                    writer.add_test_case(out.case_id, [image], label, source=out.source)
                elif out.reference is None:
                    writer.add_training_case(out.case_id, [image], label, source=out.source, patient=patient)
                else:
                    writer.add_training_case(out.case_id, [image], label, source=out.source,
                                             reference_label=_itk(out.reference, out), patient=patient)
                    level_dice.append([gaze.overlap(gaze.decode_levels(out.label, k), out.reference)["Dice"]
                                       for k in range(1, len(ordered) + 1)])
                    if not out.reference.any():
                        empty_references.append(out.case_id)
        if level_dice:
            means = np.mean(level_dice, axis=0)
            writer.extra_json["gaze"].update(
                pseudo_mask_dice_mean={f"gaze_level_{k}": float(d) for k, d in enumerate(means, start=1)},
                gazed_slices_without_prostate=empty_references)
    print(f"{writer.final_folder}: {writer.num_training} training cases (imagesTr, labelsTr"
          f"{' = gaze pseudo-masks; true masks in labelsTrReference' if gaze_csv else ''}), "
          f"{writer.num_test} test cases (imagesTs, labelsTs where labeled); {len(report['skipped'])} case(s) "
          f"skipped (dataset.json: nci_isbi_conversion)")
    if level_dice:
        print("pseudo-mask Dice vs the true masks of the training slices (mean): " + ", ".join(
            f"gaze_level_{k} (CRF >= {t:g}) {d:.4f}" for k, (t, d) in enumerate(zip(ordered, means), start=1)) +
            (f"; {len(empty_references)} gazed slice(s) without prostate" if empty_references else ""))
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert nci_isbi``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True,
                        help="TCIA download: DICOM series (*.dcm) anywhere below, in folders named by case")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id, e.g. 812")
    parser.add_argument("--labels", help="folder searched for <case>[_truth|_correctedLabels].nrrd "
                                         "(default: the input folder)")
    parser.add_argument("--keep-zones", action="store_true",
                        help="keep central gland (1) and peripheral zone (2) instead of merging them to prostate (1)")
    parser.add_argument("--gaze-csv", help="GazeMedSeg nci-isbi_fixation.csv: 2-D gazed slices with gaze "
                                           "pseudo-masks")
    gaze.add_gaze_setting_arguments(parser, "nci_isbi")
    parser.add_argument("--ignore-label-geometry", action="store_true",
                        help="pair labels of the right size by voxel index where their origin / direction disagree "
                             "with the DICOM series (default: skip such cases)")
    parser.add_argument("--test-cohorts", nargs="+", choices=TEST_COHORTS, default=list(TEST_COHORTS),
                        help="cohorts written to imagesTs: 02 (leaderboard), 03 (test); the other one becomes "
                             "training cases (default: 02 03)")
    parser.add_argument("--name", help="dataset name (default: NCIISBI, or NCIISBIGaze with --gaze-csv)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert nci_isbi``."""
    if args.gaze_csv is None and (args.levels is not None or args.thresholds or args.sigma is not None):
        raise ValueError("--levels, --thresholds and --sigma need --gaze-csv")
    convert_nci_isbi(args.input, args.dataset_id, labels_folder=args.labels, keep_zones=args.keep_zones,
                     gaze_csv=args.gaze_csv, levels=args.levels, thresholds=args.thresholds, sigma=args.sigma,
                     ignore_label_geometry=args.ignore_label_geometry, test_cohorts=args.test_cohorts, name=args.name,
                     num_processes=args.num_processes, overwrite=args.overwrite)

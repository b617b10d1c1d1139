"""Left Atrium 2018 (UA-MT / DTC / SSL4MIS h5 release) to an nnU-Net raw dataset with unlabeled cases.

Input: the folder of the h5 release of the 2018 Atrial Segmentation Challenge data as used by UA-MT, DTC
and SSL4MIS::

    DIR/train.list, DIR/test.list                      one case ID per line (80 / 20 IDs)
    DIR/2018LA_Seg_Training Set/<ID>/mri_norm2.h5      datasets 'image' (float32, z-scored, cropped
                                                       around the atrium) and 'label' (uint8, 0/1),
                                                       both in (x, y, z) array order

List lines may carry a path prefix or the suffix ``/mri_norm2.h5``; both are stripped to the ID.

Output (``Dataset{id}_{name}``, default name ``LA``): the first ``--num-labeled`` IDs of train.list (16, the
20 % of UA-MT and DTC, by default), or the IDs of ``--labeled-list``, go to imagesTr/labelsTr; the other
train.list IDs go to imagesTrUnlabeled with their true labels in labelsTrReference (reporting only, never
trained on); test.list goes to imagesTs/labelsTs. One channel, ``MRI`` (nnU-Net z-scores it per image);
labels background 0, left_atrium 1; case IDs are the LA IDs.

Geometry: the h5 files store no spacing. The LGE-MRI volumes of the challenge have a documented
resolution of 0.625 x 0.625 x 0.625 mm, which is written to every image (``LA_SPACING``), with an identity
direction and origin 0.
"""
import argparse
import os
from typing import Dict, List, Optional, Sequence, Tuple

import h5py
import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter

LA_SPACING = (0.625, 0.625, 0.625)
"""Documented voxel spacing of the 2018 LA challenge LGE-MRI, in mm (the h5 files carry none)."""

TRAINING_FOLDER = "2018LA_Seg_Training Set"
H5_NAME = "mri_norm2.h5"
CHANNEL_NAMES = {"0": "MRI"}
LABELS = {"background": 0, "left_atrium": 1}
DATASET_JSON_EXTRA = {
    "name": "LA2018",
    "description": "Left atrium, LGE-MRI, 2018 Atrial Segmentation Challenge (h5 release of UA-MT); "
                   "spacing 0.625 mm isotropic as documented by the challenge (the h5 files store none)",
    "reference": "Xiong et al., A global benchmark of algorithms for segmenting the left atrium from "
                 "late gadolinium-enhanced cardiac magnetic resonance imaging, Medical Image Analysis 2021",
}


def normalise_id(line: str) -> str:
    """The case ID in a list line: strip blanks, a trailing ``/mri_norm2.h5`` and any path prefix."""
    path = line.strip().replace("\\", "/").rstrip("/")
    if path.endswith("/" + H5_NAME):
        path = path[:-len(H5_NAME) - 1]
    return path.rsplit("/", 1)[-1]


def read_id_list(path: str) -> List[str]:
    """IDs of a list file, in file order; blank lines are skipped, duplicates are an error."""
    with open(path) as f:
        ids = [normalise_id(line) for line in f if line.strip()]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise ValueError(f"{path}: IDs listed more than once: {duplicates}")
    return ids


def h5_path(input_folder: str, case_id: str) -> str:
    """Where the h5 of a case lives in the release."""
    return os.path.join(input_folder, TRAINING_FOLDER, case_id, H5_NAME)


def read_case(path: str) -> Tuple[sitk.Image, sitk.Image]:
    """Image and label of one h5 file as SimpleITK images with the LA geometry.

    The h5 arrays are (x, y, z); SimpleITK's array view is (z, y, x), hence the transpose.
    """
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in ("image", "label") if key not in f]
            if missing:
                raise ValueError(f"{path}: no {' or '.join(repr(m) for m in missing)} dataset in the h5 file "
                                 f"(it holds {sorted(f.keys())}); expected 'image' and 'label'")
            image, label = f["image"][()], f["label"][()]
    except OSError as e:
        raise ValueError(f"{path}: cannot be read as an HDF5 file ({e})") from None
    if image.ndim != 3 or image.shape != label.shape:
        raise ValueError(f"{path}: image shape {image.shape} and label shape {label.shape} must be equal and 3-D")
    if not np.issubdtype(image.dtype, np.number) or not np.issubdtype(label.dtype, np.number):
        raise ValueError(f"{path}: image ({image.dtype}) and label ({label.dtype}) must be numeric")
    values = np.unique(label)
    if not np.isin(values, [0, 1]).all():
        raise ValueError(f"{path}: label values {values.tolist()[:10]} found; the LA labels are 0 and 1 only")
    images = []
    for array, dtype in ((image, np.float32), (label, np.uint8)):
        itk = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0), dtype=dtype))
        itk.SetSpacing(LA_SPACING)
        images.append(itk)
    return images[0], images[1]


def _check_release(input_folder: str) -> None:
    if not os.path.isdir(input_folder):
        raise ValueError(f"input folder {input_folder} does not exist")
    required = ("train.list", "test.list", TRAINING_FOLDER)
    missing = [r for r in required if not os.path.exists(os.path.join(input_folder, r))]
    if missing:
        raise ValueError(f"{input_folder} is not an LA 2018 h5 release: {', '.join(repr(m) for m in missing)} "
                         f"missing (expected train.list, test.list and '{TRAINING_FOLDER}/<ID>/{H5_NAME}')")


def _short(ids: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f", ... ({len(ids)} in all)" if len(ids) > limit else "")


def split_cases(input_folder: str, num_labeled: Optional[int] = 16, labeled_list: Optional[str] = None,
                only_present: bool = False) -> Tuple[Dict[str, List[str]], Dict[str, List[str]]]:
    """The labeled / unlabeled / test IDs to convert, and the listed IDs skipped because their h5 is absent.

    Missing labeled cases are always an error: the labeled subset defines the experiment. Other missing
    cases are an error unless ``only_present``.
    """
    _check_release(input_folder)
    train_ids = read_id_list(os.path.join(input_folder, "train.list"))
    test_ids = read_id_list(os.path.join(input_folder, "test.list"))
    overlap = sorted(set(train_ids) & set(test_ids))
    if overlap:
        raise ValueError(f"{input_folder}: IDs in both train.list and test.list: {_short(overlap)}")
    if labeled_list is not None:
        labeled = read_id_list(labeled_list)
        unknown = [i for i in labeled if i not in train_ids]
        if unknown:
            raise ValueError(f"{labeled_list}: IDs not in train.list: {_short(unknown)}")
        if not labeled:
            raise ValueError(f"{labeled_list} lists no IDs")
    else:
        if num_labeled is None or not 1 <= num_labeled <= len(train_ids):
            raise ValueError(f"--num-labeled must be between 1 and {len(train_ids)} (the IDs in train.list), "
                             f"got {num_labeled}")
        labeled = train_ids[:num_labeled]
    cases = {"labeled": labeled, "unlabeled": [i for i in train_ids if i not in set(labeled)], "test": test_ids}
    missing = {kind: [i for i in ids if not os.path.isfile(h5_path(input_folder, i))] for kind, ids in cases.items()}
    if missing["labeled"]:
        raise ValueError(f"labeled cases without {TRAINING_FOLDER}/<ID>/{H5_NAME} in {input_folder}: "
                         f"{_short(missing['labeled'])}; the labeled subset must be complete")
    if not only_present and (missing["unlabeled"] or missing["test"]):
        absent = missing["unlabeled"] + missing["test"]
        raise ValueError(f"listed cases without {TRAINING_FOLDER}/<ID>/{H5_NAME} in {input_folder}: "
                         f"{_short(absent)}; pass --only-present to convert only the cases that are there")
    present = {kind: [i for i in ids if i not in set(missing[kind])] for kind, ids in cases.items()}
    return present, missing


def convert_la(input_folder: str, dataset_id: int, num_labeled: Optional[int] = 16,
               labeled_list: Optional[str] = None, only_present: bool = False, name: str = "LA",
               num_processes: int = 2, overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert the release in ``input_folder``; return the dataset folder (see the module docstring)."""
    input_folder = os.path.abspath(input_folder)
    cases, missing = split_cases(input_folder, num_labeled, labeled_list, only_present)
    total = sum(len(ids) for ids in cases.values())
    writer = RawDatasetWriter(dataset_id, name, CHANNEL_NAMES, LABELS, raw_root=raw_root, overwrite=overwrite,
                              extra_json=DATASET_JSON_EXTRA, num_processes=num_processes, expected_cases=total)
    with writer:
        for kind, ids in cases.items():
            for case_id in ids:
                source = h5_path(input_folder, case_id)
                image, label = read_case(source)
                if kind == "labeled":
                    writer.add_training_case(case_id, [image], label, source=source)
                elif kind == "unlabeled":
                    writer.add_unlabeled_case(case_id, [image], reference_label=label, source=source)
                else:
                    writer.add_test_case(case_id, [image], label=label, source=source)
    skipped = missing["unlabeled"] + missing["test"]
    if skipped:
        print(f"--only-present: skipped {len(missing['unlabeled'])} train.list and {len(missing['test'])} "
              f"test.list IDs whose h5 is absent: {_short(skipped)}")
    print(f"{writer.final_folder}: {writer.num_training} labeled training cases (imagesTr, labelsTr), "
          f"{writer.num_unlabeled} unlabeled (imagesTrUnlabeled, true labels in labelsTrReference), "
          f"{writer.num_test} test (imagesTs, labelsTs)")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert la``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True, help="folder with train.list, test.list and "
                        f"'{TRAINING_FOLDER}/<ID>/{H5_NAME}'")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id, e.g. 801")
    subset = parser.add_mutually_exclusive_group()
    subset.add_argument("--num-labeled", type=int, default=16,
                        help="the first N IDs of train.list are labeled (default: 16)")
    subset.add_argument("--labeled-list", help="file naming the labeled IDs, one per line (all in train.list)")
    parser.add_argument("--only-present", action="store_true",
                        help="skip listed unlabeled / test IDs whose h5 is absent (labeled ones must exist)")
    parser.add_argument("--name", default="LA", help="dataset name: Dataset{id}_{name} (default: LA)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="writer processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert la``."""
    convert_la(args.input, args.dataset_id, num_labeled=None if args.labeled_list else args.num_labeled,
               labeled_list=args.labeled_list, only_present=args.only_present, name=args.name,
               num_processes=args.num_processes, overwrite=args.overwrite)

"""ACDC cine cardiac MR (the h5 release of WSL4MIS / SSL4MIS) to an nnU-Net raw dataset, split by patient.

Input (``-i DIR``), searched recursively: ``patientNNN_frameFF.h5`` volumes (the end-diastolic and end-systolic
frames of each patient) holding ``image`` (float32 [Z, H, W], min-max normalised) and ``label`` (uint8, ACDC's
0 background, 1 RV blood pool, 2 myocardium, 3 LV blood pool) and, in WSL4MIS's files, ``scribble`` (0
background, 1–3 the structures, 4 unannotated). The 2-D ``_slice_N.h5`` files of the same release are skipped:
they repeat the volumes' slices.

Output ``Dataset{id}_{name}`` (default name ``ACDC``), ``.nii.gz``, one channel ``MRI`` (nnU-Net z-scores it per
image), case id = the h5 name (``patient001_frame01``), labels ``background 0, RV 1, MYO 2, LV 3`` as ACDC's. Both
frames of a patient stay on one side of the split: ``--test-fraction`` / ``--seed`` (default 0.2 / 0) or
``--split-file`` draw **patients**, recorded in dataset.json (``acdc_split``); the test patients' frames go to
imagesTs/labelsTs, and the training frames carry their patient so that nnU-Net's folds are drawn over patients.
``--scribbles`` trains on the scribbles instead, with 4 as nnU-Net's ``ignore`` label and the dense label in
labelsTrReference (test labels stay dense).

Geometry: the h5 files store no spacing (the ACDC scans have 1.37–1.68 mm pixels and 5–10 mm slices). Every
image gets ``--spacing`` (x y z, default 1 1 1: distances in pixels) with an identity direction and origin 0.
"""
import argparse
import os
import re
from typing import Dict, Optional, Sequence, Tuple

import h5py
import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.held_out import add_split_arguments, choose_split, split_settings
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter, add_writer_arguments

CHANNEL_NAMES = {"0": "MRI"}
LABELS = {"background": 0, "RV": 1, "MYO": 2, "LV": 3}
SCRIBBLE_LABELS = {**LABELS, "ignore": 4}
FILE_PATTERN = re.compile(r"(patient\d+)_frame\d+\.h5")
SPLIT_KEY = "acdc_split"
REFERENCE = ("Bernard et al., Deep learning techniques for automatic MRI cardiac multi-structures segmentation "
             "and diagnosis: is the problem solved?, IEEE TMI 2018")


def find_volumes(input_folder: str) -> Dict[str, Tuple[str, str]]:
    """``{case id: (patient, path)}`` of the ``patientNNN_frameFF.h5`` volumes under ``input_folder``, sorted."""
    if not os.path.isdir(input_folder):
        raise ValueError(f"ACDC folder {input_folder} does not exist")
    volumes: Dict[str, Tuple[str, str]] = {}
    for folder, _, files in os.walk(input_folder, followlinks=True):
        for name in files:
            match = FILE_PATTERN.fullmatch(name)
            if match is None:
                continue
            case, path = name[:-len(".h5")], os.path.join(folder, name)
            if case in volumes:
                raise ValueError(f"{name} is there twice: {volumes[case][1]} and {path}")
            volumes[case] = (match.group(1), path)
    if not volumes:
        raise ValueError(f"{input_folder} holds no ACDC volume patientNNN_frameFF.h5")
    return dict(sorted(volumes.items()))


def read_volume(path: str, spacing: Sequence[float], with_scribble: bool = False
                ) -> Tuple[sitk.Image, sitk.Image, Optional[sitk.Image]]:
    """(image, dense label, scribble or None) of one h5 volume; [Z, H, W] is SimpleITK's array order already."""
    keys = ("image", "label") + (("scribble",) if with_scribble else ())
    try:
        with h5py.File(path, "r") as f:
            missing = [key for key in keys if key not in f]
            if missing:
                raise ValueError(f"{path}: no {' or '.join(repr(m) for m in missing)} dataset in the h5 file (it "
                                 f"holds {sorted(f.keys())})")
            arrays = [f[key][()] for key in keys]
    except OSError as e:
        raise ValueError(f"{path}: cannot be read as an HDF5 file ({e})") from None
    if arrays[0].ndim != 3 or any(a.shape != arrays[0].shape for a in arrays):
        raise ValueError(f"{path}: {', '.join(f'{k} {a.shape}' for k, a in zip(keys, arrays))}; they must be equal "
                         f"and 3-D [Z, H, W]")
    for key, array, allowed in zip(keys[1:], arrays[1:], (LABELS.values(), SCRIBBLE_LABELS.values())):
        unknown = sorted(set(np.unique(array).tolist()) - set(allowed))
        if unknown:
            raise ValueError(f"{path}: {key} values {unknown[:10]} are not ACDC's {sorted(allowed)}")
    images = []
    for array, dtype in zip(arrays, (np.float32, np.uint8, np.uint8)):
        itk = sitk.GetImageFromArray(np.ascontiguousarray(array, dtype=dtype))
        itk.SetSpacing(tuple(float(s) for s in spacing))
        images.append(itk)
    return images[0], images[1], images[2] if with_scribble else None


def convert_acdc(input_folder: str, dataset_id: int, test_fraction: float = 0.2, seed: int = 0,
                 split_file: Optional[str] = None, scribbles: bool = False,
                 spacing: Sequence[float] = (1.0, 1.0, 1.0), name: Optional[str] = None, num_processes: int = 2,
                 overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert an ACDC h5 folder; return the dataset folder (see the module docstring)."""
    if len(spacing) != 3 or any(s <= 0 for s in spacing):
        raise ValueError(f"--spacing takes three positive numbers (x y z in mm), got {list(spacing)}")
    input_folder = os.path.abspath(input_folder)
    volumes = find_volumes(input_folder)
    patients = sorted({patient for patient, _ in volumes.values()})
    train, test, split = choose_split(patients, SPLIT_KEY, test_fraction, seed, split_file)
    extra = {"name": "ACDC", "reference": REFERENCE, SPLIT_KEY: split,
             "description": "ACDC cine cardiac MR, ED and ES frames (h5 release of WSL4MIS/SSL4MIS, min-max "
                            f"normalised); spacing {list(spacing)} written (the h5 files store none)"
                            + ("; trained on scribbles, 4 = unannotated" if scribbles else "")}
    writer = RawDatasetWriter(dataset_id, name or "ACDC", CHANNEL_NAMES, SCRIBBLE_LABELS if scribbles else LABELS,
                              raw_root=raw_root, overwrite=overwrite, extra_json=extra, num_processes=num_processes,
                              expected_cases=sum(patient in set(train) | set(test) for patient, _ in volumes.values()))
    with writer:
        for case, (patient, path) in volumes.items():
            if patient in test:
                image, label, _ = read_volume(path, spacing)
                writer.add_test_case(case, [image], label, source=path)
            elif patient in train:
                image, label, scribble = read_volume(path, spacing, with_scribble=scribbles)
                if scribbles:
                    writer.add_training_case(case, [image], scribble, source=path, reference_label=label,
                                             patient=patient)
                else:
                    writer.add_training_case(case, [image], label, source=path, patient=patient)
    print(f"{writer.final_folder}: {writer.num_training} training and {writer.num_test} test volumes of "
          f"{len(train)} and {len(test)} patients")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert acdc``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True, help="folder holding patientNNN_frameFF.h5 (any depth)")
    add_writer_arguments(parser, 960, "ACDC")
    add_split_arguments(parser)
    parser.add_argument("--scribbles", action="store_true",
                        help="train on the h5 files' scribbles (4 = unannotated becomes nnU-Net's ignore label)")
    parser.add_argument("--spacing", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("X", "Y", "Z"),
                        help="voxel spacing in mm to write (the h5 files store none)")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert acdc``."""
    convert_acdc(args.input, args.dataset_id, **split_settings(args), scribbles=args.scribbles,
                 spacing=args.spacing, name=args.name, num_processes=args.num_processes, overwrite=args.overwrite)

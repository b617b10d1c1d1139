"""A Medical Segmentation Decathlon task (Task01_BrainTumour … Task10_Colon) to an nnU-Net raw dataset.

Input (``-i TaskNN_Name``): an MSD task folder with ``dataset.json``, ``imagesTr/``, ``labelsTr/`` and, optionally,
``imagesTs/``, files ``<case>.nii.gz``; hidden files, among them the macOS ``._<case>.nii.gz`` files some archive
tools leave beside the real ones, are skipped. dataset.json's ``modality`` (``{"0": "CT"}``, Task01's
``{"0": "FLAIR", "1": "T1w", "2": "t1gd", "3": "T2w"}``) becomes ``channel_names``, and its ``labels``
(``{"0": "background", "1": "spleen"}``) the labels, name → value: the task's label codes are kept as they are,
and a label value the task does not declare is an error naming the file.

Output ``Dataset{id}_{name}`` (default name: the task's, ``Task09_Spleen`` → ``Spleen``), ``.nii.gz``, case ids as
in the task (``spleen_2``). A 3-D image is copied byte for byte as ``{case}_0000``; a 4-D image (the multi-modal
tasks, Task01 BrainTumour and Task05 Prostate) is split along its 4th axis into one file per channel,
``{case}_0000``, ``{case}_0001``, … in the order of ``modality``, each with the spatial (3-D) part of the 4-D
geometry. Labels are copied byte for byte; imagesTs goes to imagesTs without labels. An image without its label or
the reverse, a channel count other than ``modality``'s, or a label whose grid (size, spacing, origin, direction)
differs from its image's is an error naming the file; nothing is written then. dataset.json keeps the task's
name, description, reference, licence and release and adds the Decathlon's reference.
"""
import argparse
import json
import os
import re
from typing import Dict, List, Optional, Tuple

import SimpleITK as sitk

from nnunet_ext.dataset_conversion.raw_dataset_writer import ImageSource, RawDatasetWriter, add_writer_arguments

FILE_ENDING = ".nii.gz"
DECATHLON_REFERENCE = ("Antonelli et al., The Medical Segmentation Decathlon, Nature Communications 13, 2022; "
                       "Simpson et al., arXiv:1902.09063")
KEPT_KEYS = {"name": "name", "description": "description", "reference": "reference", "licence": "licence",
             "release": "release", "relase": "release", "tensorImageSize": "tensorImageSize"}
"""Keys of the task's dataset.json kept in ours (the Decathlon's files spell ``release`` ``relase``)."""


def read_task_json(task_folder: str) -> Tuple[Dict[str, str], Dict[str, int], dict]:
    """(channel names, labels name → value, the task's descriptive keys) of ``task_folder/dataset.json``;
    ``ValueError`` naming the file when it is missing, not JSON, or its ``modality`` / ``labels`` are malformed."""
    path = os.path.join(task_folder, "dataset.json")
    if not os.path.isfile(path):
        raise ValueError(f"{task_folder} has no dataset.json; expected an MSD task folder (dataset.json, imagesTr/, "
                         f"labelsTr/[, imagesTs/])")
    try:
        with open(path) as f:
            task = json.load(f)
        modality = {str(int(k)): str(v) for k, v in task["modality"].items()}
        codes = {int(k): str(v) for k, v in task["labels"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{path}: not an MSD dataset.json with 'modality' and 'labels' maps of integer keys "
                         f"({type(e).__name__}: {e})") from None
    if sorted(modality, key=int) != [str(i) for i in range(len(modality))] or 0 not in codes:
        raise ValueError(f"{path}: 'modality' must number its channels 0, 1, … and 'labels' declare 0 (background); "
                         f"got {task['modality']} and {task['labels']}")
    names = [name for code, name in sorted(codes.items()) if code != 0]
    if len(set(names)) < len(names) or "background" in names:
        raise ValueError(f"{path}: label names must be unique (and 'background' only for 0), got {task['labels']}")
    labels = {"background": 0, **{name: code for code, name in sorted(codes.items()) if code != 0}}
    kept = {ours: task[theirs] for theirs, ours in KEPT_KEYS.items() if theirs in task}
    return {k: modality[k] for k in sorted(modality, key=int)}, labels, kept


def list_images(folder: str) -> Dict[str, str]:
    """``{case id: path}`` of the ``.nii.gz`` files of ``folder``, hidden files (``._*``) skipped; empty when the
    folder does not exist."""
    if not os.path.isdir(folder):
        return {}
    return {name[:-len(FILE_ENDING)]: os.path.join(folder, name) for name in sorted(os.listdir(folder))
            if name.endswith(FILE_ENDING) and not name.startswith(".")}


def channels_of(path: str) -> List[ImageSource]:
    """The channels of one image: the file itself when it is 3-D, its 3-D volumes when it is 4-D (each with the
    spatial part of the 4-D geometry); ``ValueError`` naming the file for other dimensions."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.ReadImageInformation()
    if reader.GetDimension() == 3:
        return [path]
    if reader.GetDimension() != 4:
        raise ValueError(f"{path}: a {reader.GetDimension()}-D image; MSD images are 3-D, or 4-D with the channels "
                         f"along the 4th axis")
    image = sitk.ReadImage(path)
    size = list(image.GetSize()[:3]) + [0]
    return [sitk.Extract(image, size, [0, 0, 0, channel], sitk.ExtractImageFilter.DIRECTIONCOLLAPSETOSUBMATRIX)
            for channel in range(image.GetSize()[3])]


def default_name(task_folder: str) -> str:
    """The task's name without its number: ``Task09_Spleen`` → ``Spleen`` (other folder names as they are)."""
    folder = os.path.basename(os.path.normpath(task_folder))
    return re.sub(r"^Task\d+_", "", folder)


def convert_msd(task_folder: str, dataset_id: int, name: Optional[str] = None, num_processes: int = 2,
                overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert one MSD task folder; return the dataset folder (see the module docstring)."""
    task_folder = os.path.abspath(task_folder)
    if not os.path.isdir(task_folder):
        raise ValueError(f"MSD task folder {task_folder} does not exist")
    channel_names, labels, kept = read_task_json(task_folder)
    images_tr, labels_tr, images_ts = (list_images(os.path.join(task_folder, sub))
                                       for sub in ("imagesTr", "labelsTr", "imagesTs"))
    if not images_tr:
        raise ValueError(f"{os.path.join(task_folder, 'imagesTr')} holds no {FILE_ENDING} image")
    without_label = sorted(set(images_tr) - set(labels_tr))
    without_image = sorted(set(labels_tr) - set(images_tr))
    if without_label or without_image:
        raise ValueError(f"{task_folder}: " + "; ".join(
            f"{what}: {', '.join(paths[case] for case in cases[:5])}" for what, cases, paths in
            (("images without a label in labelsTr/", without_label, images_tr),
             ("labels without an image in imagesTr/", without_image, labels_tr)) if cases))
    task = os.path.basename(task_folder)
    extra = {"name": task, **kept, "msd_task": task,
             "reference": "; ".join(r for r in (kept.get("reference"), DECATHLON_REFERENCE) if r)}
    writer = RawDatasetWriter(dataset_id, name or default_name(task_folder), channel_names, labels,
                              raw_root=raw_root, overwrite=overwrite, extra_json=extra, num_processes=num_processes,
                              expected_cases=len(images_tr) + len(images_ts))
    with writer:
        for case, image in images_tr.items():
            writer.add_training_case(case, channels_of(image), labels_tr[case], source=f"{image}, {labels_tr[case]}")
        for case, image in images_ts.items():
            writer.add_test_case(case, channels_of(image), source=image)
    print(f"{writer.final_folder}: MSD {task}, {writer.num_training} training cases, {writer.num_test} test cases "
          f"(imagesTs, no labels); channels {', '.join(channel_names.values())}")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert msd``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True,
                        help="MSD task folder (e.g. Task09_Spleen) with dataset.json, imagesTr/, labelsTr/ "
                             "[, imagesTs/]")
    add_writer_arguments(parser, 733, "the task's, Task09_Spleen -> Spleen")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert msd``."""
    convert_msd(args.input, args.dataset_id, name=args.name, num_processes=args.num_processes,
                overwrite=args.overwrite)

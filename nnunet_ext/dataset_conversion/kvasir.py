"""Kvasir-SEG (polyps) to an nnU-Net raw dataset, with true masks or with GazeSup gaze pseudo-masks.

Input: the official release folder ``KVASIR_DIR`` with ``images/<id>.jpg`` and ``masks/<id>.jpg`` (RGB JPEG
colonoscopy images; masks are lossy JPEGs of 0/255). Kvasir-SEG has no official split, so the converter
draws one: ``round(test_fraction · N)`` test ids from ``numpy.random.default_rng(seed)`` over the sorted ids
(the same seed and the same images always give the same split, with or without gaze), or takes it from a
JSON file ``{"train": [ids], "test": [ids]}`` (``--split-file``; ids are file names without extension). The
split is recorded as id lists in dataset.json (``kvasir_split``: ``train``, ``test``), and ``--split-file``
accepts such a dataset.json too, so a split survives a change of NumPy's random generator.

Output ``Dataset{id}_{name}`` (specs/cmc_gazesup_ltuda.md §2.12), case ids = Kvasir ids, ``file_ending``
``.png``:

* images: ``{id}_0000.png``, lossless RGB PNG of the decoded JPEG, ``channel_names`` {"0": "R", "1": "G",
  "2": "B"} — one 3-component file, as nnU-Net's ``NaturalImage2DIO`` reads it;
* true masks: grey value ≥ 128 → 1, else 0, single-channel uint8 PNG;
* without ``--gaze-csv``: training images → imagesTr/labelsTr (true masks), test → imagesTs/labelsTs; labels
  background 0, polyp 1;
* with ``--gaze-csv`` (GazeMedSeg ``kvasir_fixation.csv``): the training labels are GazeSup pseudo-masks made
  from gaze alone (:mod:`nnunet_ext.gaze`: heatmap σ 70 px → dense CRF → thresholds, Kvasir 0.5 / 0.3 for 2
  levels), stored as one ordinal map per image (value = number of thresholds the CRF map reaches) and declared
  as nested regions: ``gaze_level_k`` = values k…L, i.e. "ordinal ≥ k" = CRF map ≥ the k-th smallest
  threshold, with ``regions_class_order`` [1, …, L]. nnU-Net then trains one sigmoid output per level and
  converts predictions back by painting level after level, which restores the ordinal map. (For one level the
  label is a plain ``gaze_level_1``: 1, since nnU-Net treats a one-value list as an ordinary label.) The true
  masks of the training images go to ``labelsTrReference/`` — reporting only, never read in training; a
  training image without a mask (or a release without ``masks/``) is converted all the same — and the
  test labels (labelsTs) are the true masks, value 1 = polyp. dataset.json records the split and, under
  ``gaze``, the target structure (``target``: polyp, the foreground of models trained on the levels), σ, the
  thresholds per level and the CRF parameters.

``--resize H W`` resizes every image and mask to H × W as GazeSup trains and tests (224 × 224, §2.8-2.9),
for fidelity and for eight times cheaper CPU training than nnU-Net's patch of the native ~530 × 620 images:
images bilinearly with antialiasing; true masks bilinearly as 0/1 maps, then ≥ 0.5; gaze levels from the CRF
map computed at the native size and resized bilinearly before the thresholds, as the paper's loader does
(§2.5: "resized bilinearly with the image to the training size, and only then binarised"). The test labels
are resized too, so Dice is scored at H × W (the paper up-samples the logits to the native size instead). Without it the images keep their size (§2.12: "accept that (better)").

Every file goes through :class:`RawDatasetWriter` (validation, atomic folder, parallel writing). Reading and
the pseudo-masks (the CRF is the slow part) run in a pool of ``-np`` workers, in case order.
"""
import argparse
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from nnunet_ext import gaze
from nnunet_ext.dataset_conversion.held_out import add_split_arguments, choose_split, split_settings
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter

CHANNEL_NAMES = {"0": "R", "1": "G", "2": "B"}
MASK_LABELS = {"background": 0, "polyp": 1}
FILE_ENDING = ".png"
REFERENCE = "Jha et al., Kvasir-SEG: A Segmented Polyp Dataset, MMM 2020"
SPLIT_KEY = "kvasir_split"
"""dataset.json key of the recorded split (``train``, ``test`` id lists and how they were drawn)."""


def list_cases(input_folder: str, masks_optional: bool = False) -> Dict[str, Tuple[str, Optional[str]]]:
    """``{id: (image path, mask path)}`` of a Kvasir-SEG release folder. Every image needs a mask unless
    ``masks_optional`` (gaze supervision, whose training images need none): then the mask path is None where
    ``masks/`` has no such file or does not exist."""
    if not os.path.isdir(input_folder):
        raise ValueError(f"Kvasir-SEG folder {input_folder} does not exist")
    folders = {sub: os.path.join(input_folder, sub) for sub in ("images", "masks")}
    for sub, folder in folders.items():
        if not os.path.isdir(folder) and not (sub == "masks" and masks_optional):
            raise ValueError(f"{input_folder} has no {sub}/ folder; expected the official Kvasir-SEG layout "
                             f"images/<id>.jpg and masks/<id>.jpg")
    images = gaze.list_images(folders["images"])
    masks = gaze.list_images(folders["masks"]) if os.path.isdir(folders["masks"]) else {}
    cases = {k: (images[k], masks.get(k)) for k in sorted(images)}
    if not masks_optional:
        require_masks(input_folder, cases, list(cases), "image(s)")
    return cases


def require_masks(input_folder: str, cases: Dict[str, Tuple[str, Optional[str]]], ids: Sequence[str],
                  what: str) -> None:
    """``ValueError`` listing the ``ids`` of :func:`list_cases`' ``cases`` that have no mask."""
    without_mask = [i for i in ids if cases[i][1] is None]
    if without_mask:
        raise ValueError(f"{len(without_mask)} {what} of {os.path.join(input_folder, 'images')} have no mask in "
                         f"{os.path.join(input_folder, 'masks')}: "
                         f"{', '.join(os.path.basename(cases[i][0]) for i in without_mask[:10])}")


@dataclass(frozen=True)
class _Case:
    case_id: str
    training: bool
    image_path: str
    mask_path: Optional[str]
    fixations: Optional[np.ndarray] = None
    expected_size: Optional[Tuple[int, int]] = None
    sigma: float = 0.0
    thresholds: Tuple[float, ...] = ()
    size: Optional[Tuple[int, int]] = None


def resize_bilinear(array: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``(H, W[, C])`` array → ``size`` = (height, width), float32, bilinear with antialiasing (as torchvision)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    tensor = tensor.permute(2, 0, 1)[None] if array.ndim == 3 else tensor[None, None]
    resized = F.interpolate(tensor, size=tuple(size), mode="bilinear", align_corners=False, antialias=True)[0]
    return (resized.permute(1, 2, 0) if array.ndim == 3 else resized[0]).numpy()


def _read_case(case: _Case) -> Tuple[_Case, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Image (H, W, 3 uint8), true mask (uint8 0/1; None for a gaze training image without one) and, for a gaze
    training case, the ordinal level map, all at ``case.size`` when it is set."""
    image = gaze.read_rgb(case.image_path)
    mask = None if case.mask_path is None else gaze.read_mask(case.mask_path).astype(np.uint8)
    if mask is not None and mask.shape != image.shape[:2]:
        raise ValueError(f"{case.mask_path}: mask size {mask.shape} differs from the image's {image.shape[:2]} "
                         f"({case.image_path})")
    levels = None
    if case.fixations is not None:
        label = gaze.pseudo_label(image, case.fixations, case.sigma, case.thresholds,
                                  expected_size=case.expected_size, name=case.image_path)
        levels = label.levels if case.size is None else gaze.level_masks(
            np.clip(resize_bilinear(label.crf_map, case.size), 0, 1), case.thresholds)
    if case.size is not None:
        image = np.clip(np.round(resize_bilinear(image, case.size)), 0, 255).astype(np.uint8)
        mask = None if mask is None else (resize_bilinear(mask, case.size) >= 0.5).astype(np.uint8)
    return case, image, mask, levels


def _itk(array: np.ndarray) -> sitk.Image:
    return sitk.GetImageFromArray(array, isVector=array.ndim == 3)


def convert_kvasir(input_folder: str, dataset_id: int, test_fraction: float = 0.2, seed: int = 0,
                   split_file: Optional[str] = None, gaze_csv: Optional[str] = None, levels: Optional[int] = None,
                   thresholds: Optional[Sequence[float]] = None, sigma: Optional[float] = None,
                   name: Optional[str] = None, num_processes: int = 2, overwrite: bool = False,
                   raw_root: Optional[str] = None, resize: Optional[Sequence[int]] = None) -> str:
    """Convert a Kvasir-SEG release; return the dataset folder (see the module docstring)."""
    input_folder = os.path.abspath(input_folder)
    size = None
    if resize is not None:
        size = tuple(int(v) for v in resize)
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"--resize needs two positive numbers, height and width; got {list(resize)}")
    cases = list_cases(input_folder, masks_optional=gaze_csv is not None)
    train, test, split_info = choose_split(list(cases), SPLIT_KEY, test_fraction, seed, split_file)
    if gaze_csv is not None:
        require_masks(input_folder, cases, test, "test image(s)")
    extra = {"name": "Kvasir-SEG", "reference": REFERENCE, SPLIT_KEY: split_info}
    if size is not None:
        extra["resized_to"] = list(size)
    tasks = []
    if gaze_csv is None:
        labels: Dict[str, object] = MASK_LABELS
        extra["description"] = "Kvasir-SEG polyps, RGB PNG converted losslessly from the JPEGs; masks >= 128 -> 1"
        tasks = [_Case(i, True, *cases[i], size=size) for i in train]
    else:
        sigma, ordered = gaze.resolve_settings("kvasir", sigma, thresholds, levels)
        fixations, sizes = gaze.read_gaze_csv(gaze_csv)
        without_gaze = [i for i in train if i not in fixations]
        if without_gaze:
            raise ValueError(f"{gaze_csv} has no fixations for {len(without_gaze)} training image(s): "
                             f"{', '.join(without_gaze[:10])}")
        gaze.require_densecrf()
        labels, gaze_entries = gaze.gaze_dataset_entries("polyp", gaze_csv, sigma, ordered)
        extra.update(gaze_entries)
        extra["description"] = ("Kvasir-SEG polyps with GazeSup gaze pseudo-masks: labelsTr = ordinal map of the "
                                "levels (value = number of thresholds the dense-CRF map of the gaze heatmap "
                                "reaches); labelsTrReference = true masks of the training images, for reporting "
                                "only; labelsTs = true masks (1 = polyp)")
        tasks = [_Case(i, True, *cases[i], fixations[i], sizes.get(i), sigma, ordered, size) for i in train]
    tasks += [_Case(i, False, *cases[i], size=size) for i in test]
    writer = RawDatasetWriter(dataset_id, name or ("KvasirGaze" if gaze_csv else "Kvasir"), CHANNEL_NAMES, labels,
                              file_ending=FILE_ENDING, raw_root=raw_root, overwrite=overwrite, extra_json=extra,
                              num_processes=num_processes, expected_cases=len(tasks))
    level_dice: List[List[float]] = []
    with writer:
        for case, image, mask, level_map in gaze.map_in_pool(_read_case, tasks, num_processes, progress=False):
            source = case.image_path if case.mask_path is None else f"{case.image_path} + {case.mask_path}"
            if not case.training:
                writer.add_test_case(case.case_id, [_itk(image)], _itk(mask), source=source)
            elif level_map is None:
                writer.add_training_case(case.case_id, [_itk(image)], _itk(mask), source=source)
            else:
                writer.add_training_case(case.case_id, [_itk(image)], _itk(level_map), source=source,
                                         reference_label=None if mask is None else _itk(mask))
                if mask is not None:
                    level_dice.append([gaze.overlap(gaze.decode_levels(level_map, k), mask)["Dice"]
                                       for k in range(1, len(case.thresholds) + 1)])
    print(f"{writer.final_folder}: {writer.num_training} training cases (imagesTr, labelsTr"
          f"{' = gaze pseudo-masks; true masks in labelsTrReference' if gaze_csv else ''}), "
          f"{writer.num_test} test cases (imagesTs, labelsTs)")
    if level_dice:
        means = np.mean(level_dice, axis=0)
        scores = ", ".join(f"gaze_level_{k} (CRF >= {t:g}) {d:.4f}"
                           for k, (t, d) in enumerate(zip(ordered, means), start=1))
        print(f"pseudo-mask Dice vs the true masks of the {len(level_dice)} training images that have one (mean): "
              f"{scores}")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert kvasir``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", required=True, help="Kvasir-SEG folder with images/<id>.jpg, masks/<id>.jpg")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id, e.g. 810")
    add_split_arguments(parser)
    parser.add_argument("--gaze-csv", help="GazeMedSeg kvasir_fixation.csv: train on gaze pseudo-masks")
    gaze.add_gaze_setting_arguments(parser, "kvasir")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"),
                        help="resize images and masks to H x W, as the paper (224 224); default: native size")
    parser.add_argument("--name", help="dataset name (default: Kvasir, or KvasirGaze with --gaze-csv)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert kvasir``."""
    split = split_settings(args)
    if args.gaze_csv is None and (args.levels is not None or args.thresholds or args.sigma is not None):
        raise ValueError("--levels, --thresholds and --sigma need --gaze-csv")
    convert_kvasir(args.input, args.dataset_id, **split, gaze_csv=args.gaze_csv, levels=args.levels,
                   thresholds=args.thresholds, sigma=args.sigma, name=args.name,
                   num_processes=args.num_processes, overwrite=args.overwrite, resize=args.resize)

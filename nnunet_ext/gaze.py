"""Gaze pseudo-labels of GazeSup (GazeMedSeg, Zhong et al., MICCAI 2024) and the ``nnunet_ext gaze`` command.

GazeSup trains a segmentation network from eye-gaze alone. The gaze of one annotator on one image becomes a
pseudo-label in three steps (specs/cmc_gazesup_ltuda.md §2.3-2.5), each a pure function here:

1. :func:`gaze_heatmap` — a duration-weighted fixation map at the image's native resolution, blurred with an
   isotropic Gaussian (σ = 70 px Kvasir, 50 px NCI-ISBI; SciPy ``gaussian_filter`` defaults: truncate 4σ,
   ``reflect`` boundary) and min-max normalised to [0, 1] (§2.3).
2. :func:`crf_refine` — a dense CRF (Krähenbühl & Koltun, via ``pydensecrf2``) with unary
   ``-log(clip([1 - h, h], 1e-5, 1))``, a bilateral Potts term only (sxy 80, srgb 13, compat 1), 10 mean-field
   iterations; the foreground *marginal* Q is kept as a soft map in [0, 1] (§2.4).
3. :func:`level_masks` — the soft map thresholded at several levels, encoded as one ordinal map whose value is
   the number of thresholds reached (≥, §2.5); :func:`decode_levels` gives back the binary mask of one level.
   The thresholds are sorted ascending, so level k is "ordinal ≥ k" and the highest level is the strictest
   (smallest) mask. This is how the nnU-Net raw datasets store the levels as nested regions (§2.12). Note
   that the paper numbers Kvasir's levels the other way round (its level 1 is the 0.5 mask); the thresholds
   of every level are therefore always written out next to the level number.

Bugs of the original notebooks that are not copied (§2.3, §2.11): fixation coordinates are mapped to the pixel
that contains them (``floor(x·W)``, clipped to the image), so x = 0 cannot wrap to the last column; maps are
kept as floats between the steps instead of being stored as 8-bit JPEG and read back.

``nnunet_ext gaze`` runs the three steps on a GazeMedSeg CSV and a folder of images, in parallel, and writes:

* ``heatmaps/<id>.png`` and ``crf/<id>.png`` — the soft maps as 16-bit PNG (value / 65535);
* ``levels/<id>.png`` — the ordinal level map, uint8;
* ``previews/<id>.png`` — image + heatmap + level contours (+ true mask contour) for a person to look at;
* ``quality_report.json`` — with ``--masks``: per-image and mean Dice / IoU against the true masks of the
  heatmap and the CRF map (both binarised at ≥ 0.5, the threshold of the notebooks' quality figures, §2.4)
  and of every level mask; and the fraction of the image each map covers. The same table is printed.
"""
import argparse
import csv
import itertools
import json
import multiprocessing
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Callable, Deque, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

if TYPE_CHECKING:
    from nnunetv2.utilities.label_handling.label_handling import LabelManager

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm")
"""Image files the command reads: Pillow formats, and single DICOM slices (read with SimpleITK)."""

SOFT_MAP_BINARISATION = 0.5
"""Threshold (≥) at which the heatmap and the CRF map are binarised for Dice / IoU (§2.4: 'threshold 0.5')."""

SOFT_MAP_PNG_SCALE = 65535
"""Soft maps are written as 16-bit PNG: stored value = round(map · 65535)."""


@dataclass(frozen=True)
class CrfParameters:
    """Dense-CRF settings of GazeSup (§2.4): bilateral Potts kernel only, soft marginal after 10 iterations.

    ``sxy`` is the spatial standard deviation in pixels, ``srgb`` the colour standard deviation in 8-bit grey
    levels, ``compat`` the Potts weight; ``unary_clip`` is the probability floor of the unary
    ``-log(clip(P, unary_clip, 1))`` (pydensecrf's ``unary_from_softmax`` default).
    """
    sxy: float = 80.0
    srgb: float = 13.0
    compat: float = 1.0
    iterations: int = 10
    unary_clip: float = 1e-5


@dataclass(frozen=True)
class GazePreset:
    """Per-dataset constants of GazeSup: Gaussian σ (§2.3) and the thresholds per number of levels (§2.5).

    Thresholds are listed in the paper's level order (``configs/static.py``); :func:`level_thresholds` sorts
    them for the ordinal encoding.
    """
    sigma: float
    thresholds: Dict[int, Tuple[float, ...]]
    default_levels: int = 2


PRESETS: Dict[str, GazePreset] = {
    "kvasir": GazePreset(sigma=70.0, thresholds={1: (0.5,), 2: (0.5, 0.3), 3: (0.5, 0.3, 0.4),
                                                 4: (0.5, 0.3, 0.367, 0.433), 5: (0.5, 0.3, 0.35, 0.4, 0.45)}),
    "nci_isbi": GazePreset(sigma=50.0, thresholds={2: (0.2, 0.4)}),
}

_NAME_COLUMNS = ("IMAGE", "images")
_X, _Y, _DURATION, _INDEX = "CURRENT_FIX_X", "CURRENT_FIX_Y", "CURRENT_FIX_DURATION", "CURRENT_FIX_INDEX"
_HEIGHT, _WIDTH = "IMAGE_HEIGHT", "IMAGE_WIDTH"


# ---------------------------------------------------------------------------------------------- reading


def image_key(file_name: str) -> str:
    """The key that pairs CSV rows, image files and mask files: the base name without its extension.

    GazeMedSeg names every image ``<id>.jpg`` even where the image is a PNG or a DICOM slice (§2.2).
    """
    return os.path.splitext(os.path.basename(file_name.strip()))[0]


def read_gaze_csv(csv_path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, Tuple[int, int]]]:
    """Fixations and image sizes of a GazeMedSeg CSV, keyed by :func:`image_key`.

    Both formats of §2.2 are read: the current one (``IMAGE`` … ``IMAGE_HEIGHT``, ``IMAGE_WIDTH``) and the
    older export (``images``, ``RECORDING_SESSION_LABEL``, no image size). Fixations of an image are an
    ``(n, 3)`` float64 array of columns x, y (normalised, origin top-left) and duration (ms), ordered by
    ``CURRENT_FIX_INDEX`` (file order where the column is absent). Sizes are ``(height, width)``; the dict is
    empty for the older format. Raises ``ValueError`` naming the file and line for a missing column, a
    non-numeric value, a coordinate outside [0, 1], a negative duration or sizes that disagree within an image.
    """
    rows: Dict[str, List[Tuple[float, float, float, float]]] = {}
    sizes: Dict[str, Tuple[int, int]] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        name_column = next((c for c in _NAME_COLUMNS if c in columns), None)
        missing = [c for c in (_X, _Y, _DURATION) if c not in columns]
        if name_column is None or missing:
            raise ValueError(f"{csv_path}: not a GazeMedSeg fixation CSV: missing column(s) "
                             f"{(['IMAGE (or images)'] if name_column is None else []) + missing}; found {columns}")
        has_size = _HEIGHT in columns and _WIDTH in columns
        for line, row in enumerate(reader, start=2):
            def fail(problem: str) -> ValueError:
                return ValueError(f"{csv_path}, line {line} (image {row.get(name_column)!r}): {problem}")

            try:
                x, y, duration = (float(row[c]) for c in (_X, _Y, _DURATION))
                index = float(row[_INDEX]) if row.get(_INDEX) not in (None, "") else float(line)
            except (TypeError, ValueError):
                raise fail("non-numeric fixation value") from None
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise fail(f"fixation ({x}, {y}) lies outside the image: coordinates must be in [0, 1]")
            if not duration >= 0:
                raise fail(f"negative or missing fixation duration {duration}")
            key = image_key(row[name_column] or "")
            if not key:
                raise fail("empty image name")
            rows.setdefault(key, []).append((index, x, y, duration))
            if has_size:
                try:
                    size = (_positive_int(row[_HEIGHT]), _positive_int(row[_WIDTH]))
                except (TypeError, ValueError):
                    raise fail(f"image size {row[_HEIGHT]!r} x {row[_WIDTH]!r} is not a positive integer") from None
                if sizes.setdefault(key, size) != size:
                    raise fail(f"image size {size} differs from {sizes[key]} on an earlier line of the same image")
    if not rows:
        raise ValueError(f"{csv_path}: no fixation rows")
    fixations = {}
    for key, values in rows.items():
        values.sort(key=lambda r: r[0])
        fixations[key] = np.array([r[1:] for r in values], dtype=np.float64)
    return fixations, sizes


def _positive_int(text: str) -> int:
    value = float(text)
    if value != int(value) or value < 1:
        raise ValueError(text)
    return int(value)


def read_rgb(path: str) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 RGB, the input of the CRF's colour kernel (§2.4).

    Pillow formats are converted to RGB (grey images replicated). A DICOM slice (``.dcm``, read with
    SimpleITK) is min-max scaled to 0-255 and replicated to three channels, as GazeSup does for NCI-ISBI.
    """
    try:
        if path.lower().endswith(".dcm"):
            import SimpleITK as sitk
            array = np.squeeze(sitk.GetArrayFromImage(sitk.ReadImage(path)))
            if array.ndim != 2:
                raise ValueError(f"a 2-D slice is needed, this DICOM holds an array of shape {array.shape}")
            return grey_to_rgb(array)
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read as an image ({e})") from None


def grey_to_rgb(array: np.ndarray) -> np.ndarray:
    """A grey image (e.g. an MR slice) as the ``(H, W, 3)`` uint8 image the CRF's colour kernel needs: min-max
    scaled to 0-255, truncated to uint8, replicated to three channels (GazeSup's rule for NCI-ISBI, §2.4; a
    constant image gives 0)."""
    array = np.asarray(array, dtype=np.float64)
    low, high = array.min(), array.max()
    scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
    return np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=2)


def read_mask(path: str) -> np.ndarray:
    """A true mask as a boolean array: grey values ≥ 128 (0/255 masks, also lossy JPEG ones, §2.1, §2.12).

    A mask holding only the values 0 and 1 is taken as it is (value 1 = foreground).
    """
    try:
        with Image.open(path) as image:
            grey = np.asarray(image.convert("L"))
    except OSError as e:
        raise ValueError(f"{path}: cannot be read as a mask image ({e})") from None
    if grey.max(initial=0) <= 1:
        return grey == 1
    return grey >= 128


# ---------------------------------------------------------------------------------------------- the method


def gaze_heatmap(fixations: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """Duration-weighted Gaussian gaze heatmap in [0, 1], ``(height, width)`` float32 (§2.3).

    Every fixation adds its duration (ms) to the pixel that contains it — column ``floor(x·W)``, row
    ``floor(y·H)``, clipped so that x = 1 (or y = 1) lands in the last column (row) — and the canvas is blurred
    with SciPy's ``gaussian_filter`` (σ in native pixels, truncate 4σ, reflect boundary), then min-max
    normalised. ``fixations`` is an ``(n, 3)`` array of x, y, duration, as :func:`read_gaze_csv` returns per image.
    """
    fixations = np.asarray(fixations, dtype=np.float64)
    if fixations.ndim != 2 or fixations.shape[1] != 3 or len(fixations) == 0:
        raise ValueError(f"fixations must be a non-empty (n, 3) array of x, y, duration; got shape {fixations.shape}")
    if height < 1 or width < 1 or sigma <= 0:
        raise ValueError(f"height, width and sigma must be positive, got {height}, {width}, {sigma}")
    x, y, duration = fixations.T
    if np.any((x < 0) | (x > 1) | (y < 0) | (y > 1)):
        raise ValueError("fixation coordinates must lie in [0, 1]")
    columns = np.clip(np.floor(x * width).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(y * height).astype(np.int64), 0, height - 1)
    canvas = np.zeros((height, width), dtype=np.float64)
    np.add.at(canvas, (rows, columns), duration)
    blurred = ndimage.gaussian_filter(canvas, sigma=sigma)
    low, high = blurred.min(), blurred.max()
    if not high > low:
        raise ValueError("the gaze heatmap is constant (all fixation durations are 0?); it cannot be normalised")
    return ((blurred - low) / (high - low)).astype(np.float32)


def require_densecrf() -> ModuleType:
    """The ``pydensecrf.densecrf`` module, or an ``ImportError`` that says how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise ImportError("the dense-CRF step of the gaze pipeline needs the package pydensecrf2 (it imports as "
                          "pydensecrf): pip install nnunet_ext[gaze], or pip install pydensecrf2 (built from "
                          "source: needs a C++ compiler)") from None
    return dcrf


def crf_refine(image_rgb: np.ndarray, heatmap: np.ndarray, sxy: float = CrfParameters.sxy,
               srgb: float = CrfParameters.srgb, compat: float = CrfParameters.compat,
               iterations: int = CrfParameters.iterations, unary_clip: float = CrfParameters.unary_clip) -> np.ndarray:
    """Dense-CRF refinement of a gaze heatmap: the soft foreground marginal in [0, 1], float32 (§2.4).

    Two labels with probabilities ``[1 - h, h]`` give the unary ``-log(clip(P, unary_clip, 1))``; the only
    pairwise term is pydensecrf's bilateral kernel (positions / ``sxy``, colours / ``srgb``, diagonal kernel,
    symmetric normalisation) with Potts weight ``compat``; after ``iterations`` mean-field steps the marginal
    Q(foreground) is returned — not the arg-max, which would lose the soft map the levels threshold.
    """
    dcrf = require_densecrf()
    image_rgb = np.asarray(image_rgb)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image_rgb must be an (H, W, 3) uint8 array, got {image_rgb.shape} {image_rgb.dtype}")
    if heatmap.shape != image_rgb.shape[:2]:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from the image's {image_rgb.shape[:2]}")
    if heatmap.min() < 0 or heatmap.max() > 1:
        raise ValueError("the heatmap must lie in [0, 1]")
    height, width = heatmap.shape
    probabilities = np.stack([1.0 - heatmap, heatmap]).reshape(2, -1)
    unary = np.ascontiguousarray(-np.log(np.clip(probabilities, unary_clip, 1.0)), dtype=np.float32)
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseBilateral(sxy=sxy, srgb=srgb, rgbim=np.array(image_rgb, order="C"), compat=compat)
    marginals = np.asarray(crf.inference(iterations), dtype=np.float32)
    return np.clip(marginals[1].reshape(height, width), 0.0, 1.0)


def level_thresholds(thresholds: Sequence[float]) -> Tuple[float, ...]:
    """Thresholds in level order of the ordinal encoding: ascending, level k uses the k-th smallest.

    Raises ``ValueError`` for an empty list, a value outside (0, 1] or a repeated value (a level that no
    pixel could reach alone).
    """
    values = tuple(sorted(float(t) for t in thresholds))
    if not values:
        raise ValueError("at least one threshold is needed")
    if any(not 0.0 < t <= 1.0 for t in values):
        raise ValueError(f"thresholds must lie in (0, 1], got {list(thresholds)}")
    if len(set(values)) != len(values):
        raise ValueError(f"thresholds must be distinct, got {list(thresholds)}")
    if len(values) > 255:
        raise ValueError("at most 255 thresholds fit a uint8 level map")
    return values


def level_masks(soft_map: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """The ordinal level map (uint8) of a soft map: value = number of thresholds the pixel reaches (≥, §2.5).

    Thresholds are sorted ascending (:func:`level_thresholds`), so value ≥ k is the mask of the k-th smallest
    threshold: the masks are nested and the highest value marks the strictest mask. Kvasir with 0.5 / 0.3:
    0 where c < 0.3, 1 where 0.3 ≤ c < 0.5, 2 where c ≥ 0.5 (§2.12).
    """
    ordered = level_thresholds(thresholds)
    soft_map = np.asarray(soft_map)
    ordinal = np.zeros(soft_map.shape, dtype=np.uint8)
    for threshold in ordered:
        ordinal += soft_map >= threshold
    return ordinal


def decode_levels(ordinal: np.ndarray, level: int) -> np.ndarray:
    """The binary mask of one level (1 = loosest, i.e. smallest threshold) of an ordinal map: ``ordinal ≥ level``."""
    if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level < 1:
        raise ValueError(f"levels are numbered from 1, got {level!r}")
    return np.asarray(ordinal) >= level


GAZE_REFERENCE = ("Zhong et al., Weakly-supervised Medical Image Segmentation with Gaze Annotations, MICCAI 2024 "
                  "(GazeMedSeg fixations)")


def gaze_labels(num_levels: int) -> Tuple[Dict[str, object], Optional[List[int]]]:
    """dataset.json ``labels`` and ``regions_class_order`` for ``num_levels`` nested gaze levels.

    ``gaze_level_k`` is the region of the ordinal values k…L; region order [1, …, L] paints the stricter levels
    last, so nnU-Net's conversion of region predictions to a label map gives back the ordinal map. nnU-Net
    only counts a dataset as region-based if some region has more than one value, so one level is a plain label.
    """
    if num_levels == 1:
        return {"background": 0, "gaze_level_1": 1}, None
    labels: Dict[str, object] = {"background": 0}
    for k in range(1, num_levels + 1):
        labels[f"gaze_level_{k}"] = list(range(k, num_levels + 1))
    return labels, list(range(1, num_levels + 1))


def gaze_level_count(dataset_json: dict, label_manager: "LabelManager") -> int:
    """L of a gaze dataset, read back from what :func:`gaze_labels` wrote: its regions must be the nested levels
    {k, …, L}, k = 1…L (in any order), and L ≥ 2 for GazeSup's consistency."""
    name = dataset_json.get("name", "this dataset")
    if not label_manager.has_regions:
        raise ValueError(
            f"nnUNetTrainerGazeSup needs gaze levels declared as nested regions in dataset.json "
            f"(gaze_level_k: [k, ..., L] with regions_class_order), but {name} has plain labels "
            f"{dataset_json.get('labels')}. A one-level pseudo-mask is ordinary supervision: train it with "
            f"nnUNetTrainer. Convert gaze data with `nnunet_ext convert kvasir --gaze-csv ...`.")
    regions = [set(r) if isinstance(r, tuple) else {r} for r in label_manager.foreground_regions]
    num_levels = len(regions)
    expected = [set(range(k, num_levels + 1)) for k in range(1, num_levels + 1)]
    if sorted(regions, key=len, reverse=True) != expected:
        raise ValueError(f"the regions of {name} ({dataset_json.get('labels')}) are not nested gaze levels "
                         f"[1..L], [2..L], ..., [L] of an ordinal label map")
    if num_levels < 2:
        raise ValueError(f"{name} has one gaze level; GazeSup's consistency needs at least two")
    return num_levels


def binary_dataset_json(dataset_json: dict, num_levels: int) -> dict:
    """The dataset.json a GazeSup model's predictor reads: background and the gaze target (``gaze.target``, e.g.
    polyp) as one region over all ordinal values 1…L, with the training labels kept under
    ``nnunet_ext_training_labels``.

    One sigmoid channel, the level-averaged logit, predicts the region; nnU-Net exports it as label 1. Declaring
    the target as the region 1…L (not as the plain label 1) makes every nnU-Net tool that scores this model
    against the ordinal training maps (the final validation, ``nnUNetv2_find_best_configuration``'s
    cross-validation and post-processing) compare with gaze level 1, the union of the levels, while binary
    {0, 1} true masks are scored as they are."""
    binary = {k: v for k, v in dataset_json.items() if k not in ("labels", "regions_class_order")}
    binary["labels"] = {"background": 0,
                        dataset_json.get("gaze", {}).get("target", "foreground"): list(range(1, num_levels + 1))}
    binary["regions_class_order"] = [1]
    binary["nnunet_ext_training_labels"] = {"labels": dataset_json["labels"],
                                            "regions_class_order": dataset_json.get("regions_class_order")}
    return binary


def gaze_dataset_entries(target: str, csv_path: str, sigma: float,
                         thresholds: Sequence[float]) -> Tuple[Dict[str, object], dict]:
    """``labels`` and the other dataset.json entries of a gaze-supervised dataset: ``regions_class_order``,
    ``reference_gaze`` and ``gaze`` (the target structure, σ, each level's threshold, the CRF parameters and
    the rules that made the pseudo-masks). A converter adds its own details to ``gaze``."""
    labels, order = gaze_labels(len(thresholds))
    extra: dict = {} if order is None else {"regions_class_order": order}
    extra["reference_gaze"] = GAZE_REFERENCE
    extra["gaze"] = {
        "target": target, "csv": os.path.basename(csv_path), "sigma": sigma, "thresholds": list(thresholds),
        "levels": {f"gaze_level_{k}": {"threshold": t, "ordinal_values": list(range(k, len(thresholds) + 1))}
                   for k, t in enumerate(thresholds, start=1)},
        "crf": asdict(CrfParameters()),
        "heatmap": "duration-weighted fixations at pixel (floor(y*H), floor(x*W)), scipy gaussian_filter "
                   "(truncate 4, reflect), min-max normalised",
        "soft_map": "dense-CRF foreground marginal (pydensecrf2, bilateral Potts kernel only)",
        "level_rule": "gaze_level_k = CRF map >= k-th smallest threshold = ordinal label >= k",
    }
    return labels, extra


def resolve_settings(preset: str = "kvasir", sigma: Optional[float] = None,
                     thresholds: Optional[Sequence[float]] = None,
                     levels: Optional[int] = None) -> Tuple[float, Tuple[float, ...]]:
    """σ and the (ascending) level thresholds from a preset, overridden by explicit values.

    Without ``thresholds``, the preset's thresholds for ``levels`` levels (its default number if None) are
    used; with them, ``levels`` (if given) must equal their number.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown gaze preset {preset!r}; choose one of {sorted(PRESETS)}")
    chosen = PRESETS[preset]
    if thresholds:
        if levels is not None and levels != len(thresholds):
            raise ValueError(f"--levels {levels} disagrees with the {len(thresholds)} thresholds given")
        ordered = level_thresholds(thresholds)
    else:
        levels = chosen.default_levels if levels is None else levels
        if levels not in chosen.thresholds:
            raise ValueError(f"preset {preset!r} defines thresholds for {sorted(chosen.thresholds)} levels, not "
                             f"{levels}; pass --thresholds explicitly")
        ordered = level_thresholds(chosen.thresholds[levels])
    sigma = chosen.sigma if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return sigma, ordered


@dataclass(frozen=True)
class PseudoLabel:
    """The three maps of one image: heatmap and CRF map (float32 in [0, 1]) and the ordinal level map (uint8)."""
    heatmap: np.ndarray
    crf_map: np.ndarray
    levels: np.ndarray


def pseudo_label(image_rgb: np.ndarray, fixations: np.ndarray, sigma: float, thresholds: Sequence[float],
                 crf: CrfParameters = CrfParameters(), expected_size: Optional[Tuple[int, int]] = None,
                 name: str = "image") -> PseudoLabel:
    """Heatmap → CRF map → ordinal levels for one image (§2.3-2.5); the levels threshold the CRF map, as GazeSup.

    ``expected_size`` (height, width from the CSV) must equal the image's size, else ``ValueError`` naming
    ``name``: the fixations are normalised to the displayed image, so a different image would misplace them.
    """
    height, width = image_rgb.shape[:2]
    if expected_size is not None and tuple(expected_size) != (height, width):
        raise ValueError(f"{name}: the image is {height} x {width} (H x W) but the gaze CSV gives "
                         f"{expected_size[0]} x {expected_size[1]}; the fixations belong to another image size")
    try:
        heatmap = gaze_heatmap(fixations, height, width, sigma)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    crf_map = crf_refine(image_rgb, heatmap, **asdict(crf))
    return PseudoLabel(heatmap, crf_map, level_masks(crf_map, thresholds))


# ---------------------------------------------------------------------------------------------- quality


def overlap(pred: np.ndarray, ref: np.ndarray) -> Dict[str, float]:
    """Dice and IoU of two binary masks; both empty counts as a perfect match (1), as ``nnunet_ext evaluate``."""
    pred, ref = np.asarray(pred, dtype=bool), np.asarray(ref, dtype=bool)
    intersection = np.count_nonzero(pred & ref)
    total = np.count_nonzero(pred) + np.count_nonzero(ref)
    if total == 0:
        return {"Dice": 1.0, "IoU": 1.0}
    return {"Dice": 2.0 * intersection / total, "IoU": intersection / (total - intersection)}


def map_names(thresholds: Sequence[float]) -> List[str]:
    """Names of the maps scored in the quality report: ``heatmap``, ``crf``, ``level_1`` … (ascending thresholds)."""
    return ["heatmap", "crf"] + [f"level_{k}" for k in range(1, len(thresholds) + 1)]


def quality(label: PseudoLabel, thresholds: Sequence[float], mask: Optional[np.ndarray]) -> Dict[str, dict]:
    """Per-map fraction of the image covered and, with a true mask, Dice / IoU (soft maps binarised at ≥ 0.5)."""
    binary = {"heatmap": label.heatmap >= SOFT_MAP_BINARISATION, "crf": label.crf_map >= SOFT_MAP_BINARISATION}
    for k in range(1, len(thresholds) + 1):
        binary[f"level_{k}"] = decode_levels(label.levels, k)
    result = {}
    for name, pred in binary.items():
        result[name] = {"fraction": float(np.count_nonzero(pred)) / pred.size}
        if mask is not None:
            result[name].update(overlap(pred, mask))
    return result


# ---------------------------------------------------------------------------------------------- the command


@dataclass(frozen=True)
class _Task:
    key: str
    image_path: str
    mask_path: Optional[str]
    fixations: np.ndarray
    expected_size: Optional[Tuple[int, int]]
    sigma: float
    thresholds: Tuple[float, ...]
    crf: CrfParameters
    output_dir: str
    preview: bool


def _write_soft_map(soft_map: np.ndarray, path: str) -> None:
    Image.fromarray(np.round(soft_map * SOFT_MAP_PNG_SCALE).astype(np.uint16)).save(path)


def render_preview(image_rgb: np.ndarray, label: PseudoLabel, thresholds: Sequence[float], path: str,
                   mask: Optional[np.ndarray] = None, fixations: Optional[np.ndarray] = None,
                   title: str = "") -> None:
    """Save an overlay for a person to look at: the image, the heatmap in colour (opacity growing with the
    heatmap), the fixations (circles, area ∝ duration), one contour per level and, if given, the true mask's
    contour (white, dashed)."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    height, width = label.heatmap.shape
    dpi = 100
    fig = plt.figure(figsize=(max(width, 300) / dpi, max(height, 300) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image_rgb)
    overlay = plt.get_cmap("jet")(label.heatmap)
    overlay[..., 3] = 0.55 * label.heatmap
    ax.imshow(overlay)
    if fixations is not None and len(fixations):
        ax.scatter(fixations[:, 0] * width, fixations[:, 1] * height, s=fixations[:, 2] / 10, facecolors="none",
                   edgecolors="cyan", linewidths=1, label="fixations")
    colours = plt.get_cmap("autumn")(np.linspace(0, 1, max(len(thresholds), 2)))
    for k, threshold in enumerate(thresholds, start=1):
        level = decode_levels(label.levels, k)
        if level.any() and not level.all():
            ax.contour(level, levels=[0.5], colors=[colours[k - 1]], linewidths=2)
        ax.plot([], [], color=colours[k - 1], label=f"level {k} (CRF ≥ {threshold:g})")
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask, levels=[0.5], colors="white", linewidths=2, linestyles="dashed")
        ax.plot([], [], color="white", linestyle="dashed", label="true mask")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
    ax.text(4, 4, title, color="white", fontsize=8, va="top", backgroundcolor=(0, 0, 0, 0.5))
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _process(task: _Task) -> Tuple[str, Dict[str, dict]]:
    """One image of the command (runs in a pool worker): compute, write the maps, score."""
    image = read_rgb(task.image_path)
    label = pseudo_label(image, task.fixations, task.sigma, task.thresholds, task.crf, task.expected_size,
                         name=task.image_path)
    mask = None
    if task.mask_path is not None:
        mask = read_mask(task.mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{task.mask_path}: mask size {mask.shape} differs from the image's {image.shape[:2]} "
                             f"({task.image_path})")
    _write_soft_map(label.heatmap, os.path.join(task.output_dir, "heatmaps", f"{task.key}.png"))
    _write_soft_map(label.crf_map, os.path.join(task.output_dir, "crf", f"{task.key}.png"))
    Image.fromarray(label.levels).save(os.path.join(task.output_dir, "levels", f"{task.key}.png"))
    scores = quality(label, task.thresholds, mask)
    if task.preview:
        title = task.key
        if mask is not None:
            entries = [f"{name} {s['Dice']:.3f}" for name, s in scores.items()]
            title += "\nDice: " + "\n".join(", ".join(entries[i:i + 2]) for i in range(0, len(entries), 2))
        render_preview(image, label, task.thresholds, os.path.join(task.output_dir, "previews", f"{task.key}.png"),
                       mask, task.fixations, title)
    return task.key, scores


def list_images(folder: str) -> Dict[str, str]:
    """``{image key: path}`` of the image files in ``folder`` (see :data:`IMAGE_EXTENSIONS`); keys must be unique."""
    if not os.path.isdir(folder):
        raise ValueError(f"image folder {folder} does not exist")
    found: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
            key = image_key(name)
            if key in found:
                raise ValueError(f"{folder}: two files for image {key!r}: {os.path.basename(found[key])} and {name}")
            found[key] = os.path.join(folder, name)
    if not found:
        raise ValueError(f"{folder} holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def map_in_pool(function: Callable, tasks: Sequence, num_processes: int, description: str = "",
                progress: bool = True) -> Iterator:
    """Yield ``function(task)`` for every task, in task order, with a tqdm bar if ``progress``.

    With ``num_processes`` > 0 the calls run in a pool of spawned workers, at most ``2 * num_processes`` ahead of
    the caller, so results wait in memory only briefly while the caller consumes them (e.g. hands them to a
    writer); ``num_processes`` = 0 runs them in the calling process. A worker's exception is re-raised here.
    """
    bar = tqdm(total=len(tasks), desc=description, unit="image", disable=not progress)
    try:
        if num_processes <= 0 or len(tasks) <= 1:
            for task in tasks:
                yield function(task)
                bar.update(1)
            return
        with multiprocessing.get_context("spawn").Pool(min(num_processes, len(tasks))) as pool:
            remaining = iter(tasks)
            pending: Deque = deque(pool.apply_async(function, (task,))
                                   for task in itertools.islice(remaining, 2 * num_processes))
            while pending:
                result = pending.popleft().get()
                pending.extend(pool.apply_async(function, (task,)) for task in itertools.islice(remaining, 1))
                yield result
                bar.update(1)
    finally:
        bar.close()


def _preview_keys(keys: Sequence[str], count: int) -> set:
    """``count`` keys spread evenly over the sorted list (deterministic)."""
    if count <= 0:
        return set()
    if count >= len(keys):
        return set(keys)
    return {keys[i] for i in np.linspace(0, len(keys) - 1, count).round().astype(int)}


def run_pipeline(csv_path: str, images_dir: str, output_dir: str, preset: str = "kvasir",
                 sigma: Optional[float] = None, thresholds: Optional[Sequence[float]] = None,
                 levels: Optional[int] = None, masks_dir: Optional[str] = None, num_processes: int = 2,
                 previews: int = 20, crf: CrfParameters = CrfParameters()) -> dict:
    """Run the gaze pipeline on every image of ``images_dir``; write the maps, previews and report (module doc).

    Every image needs fixations in the CSV (``ValueError`` naming the images otherwise); CSV images without an
    image file are skipped and counted. With ``masks_dir`` every image needs a mask of the same key. Returns
    the report that is also written to ``output_dir/quality_report.json``.
    """
    require_densecrf()
    sigma, ordered = resolve_settings(preset, sigma, thresholds, levels)
    fixations, sizes = read_gaze_csv(csv_path)
    images = list_images(images_dir)
    without_gaze = sorted(k for k in images if k not in fixations)
    if without_gaze:
        raise ValueError(f"{csv_path} has no fixations for {len(without_gaze)} image(s) of {images_dir}: "
                         f"{', '.join(os.path.basename(images[k]) for k in without_gaze[:10])}")
    masks: Dict[str, str] = {}
    if masks_dir is not None:
        masks = list_images(masks_dir)
        without_mask = sorted(k for k in images if k not in masks)
        if without_mask:
            raise ValueError(f"{masks_dir} has no mask for {len(without_mask)} image(s): "
                             f"{', '.join(os.path.basename(images[k]) for k in without_mask[:10])}")
    for sub in ("heatmaps", "crf", "levels", "previews"):
        os.makedirs(os.path.join(output_dir, sub), exist_ok=True)
    keys = sorted(images)
    shown = _preview_keys(keys, previews)
    tasks = [_Task(k, images[k], masks.get(k), fixations[k], sizes.get(k), sigma, ordered, crf, output_dir,
                   k in shown) for k in keys]
    start = time.perf_counter()
    per_image = dict(map_in_pool(_process, tasks, num_processes, "gaze pseudo-labels"))
    seconds = time.perf_counter() - start
    names = map_names(ordered)
    mean = {name: {metric: float(np.mean([per_image[k][name][metric] for k in keys]))
                   for metric in per_image[keys[0]][name]} for name in names}
    report = {
        "csv": os.path.abspath(csv_path), "images": os.path.abspath(images_dir),
        "masks": os.path.abspath(masks_dir) if masks_dir else None,
        "settings": {"preset": preset, "sigma": sigma, "thresholds": list(ordered),
                     "levels": {f"level_{k}": t for k, t in enumerate(ordered, start=1)}, "crf": asdict(crf)},
        "binarisation": (f"heatmap and crf: soft map >= {SOFT_MAP_BINARISATION}; level_k: CRF map >= the k-th "
                         "smallest threshold (ordinal level map >= k). 'fraction' = share of the image area in the "
                         "mask. Dice = 2|P and G| / (|P| + |G|), IoU = |P and G| / |P or G|; both masks empty "
                         "counts as 1."),
        "files": {"heatmaps": "heatmaps/<id>.png, 16-bit, value / 65535", "crf": "crf/<id>.png, 16-bit, value / 65535",
                  "levels": "levels/<id>.png, uint8 ordinal level map", "previews": "previews/<id>.png"},
        "num_images": len(keys), "csv_images_without_file": len(set(fixations) - set(images)),
        "seconds": seconds, "images_per_second": len(keys) / seconds if seconds > 0 else float("inf"),
        "num_processes": num_processes, "per_image": per_image, "mean": mean,
    }
    with open(os.path.join(output_dir, "quality_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def format_report(report: dict) -> str:
    """The quality report as a text table: one row per image, then the mean (Dice / IoU where masks were given)."""
    names = list(report["mean"])
    scored = "Dice" in report["mean"][names[0]]
    metrics = ("Dice", "IoU") if scored else ("fraction",)
    header = ["image"] + [f"{name} {m}" for name in names for m in metrics]
    rows = [[key] + [f"{scores[name][m]:.4f}" for name in names for m in metrics]
            for key, scores in report["per_image"].items()]
    rows.append(["mean"] + [f"{report['mean'][name][m]:.4f}" for name in names for m in metrics])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    settings = report["settings"]
    levels = ", ".join(f"{k} >= {t:g}" for k, t in settings["levels"].items())
    lines.append(f"sigma {settings['sigma']:g} px; levels: {levels}; CRF {settings['crf']}")
    lines.append(f"binarisation: {report['binarisation']}")
    lines.append(f"{report['num_images']} images in {report['seconds']:.1f} s "
                 f"({report['images_per_second']:.2f} images/s, -np {report['num_processes']})")
    return "\n".join(lines)


def add_gaze_setting_arguments(parser: argparse.ArgumentParser) -> None:
    """``--sigma``, ``--thresholds`` and ``--levels``, overriding a preset (shared by the gaze command and the
    converters that write gaze pseudo-masks)."""
    parser.add_argument("--sigma", type=float, help="Gaussian sigma in pixels (default: the preset's)")
    parser.add_argument("--thresholds", type=float, nargs="+",
                        help="level thresholds on the CRF map, any order (default: the preset's for --levels)")
    parser.add_argument("--levels", type=int, help="number of levels (default: the preset's, 2)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext gaze``."""
    parser.description = ("GazeSup pseudo-labels from a GazeMedSeg gaze CSV: heatmaps, dense-CRF soft maps and "
                          "level masks, overlay previews and a quality report.")
    parser.add_argument("--csv", required=True, help="GazeMedSeg fixation CSV (current or older format)")
    parser.add_argument("--images", required=True, help="folder of the images named in the CSV")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="kvasir",
                        help="dataset constants: sigma 70 / thresholds 0.5, 0.3 (kvasir), 50 / 0.2, 0.4 (nci_isbi)")
    add_gaze_setting_arguments(parser)
    parser.add_argument("--masks", help="folder of true masks (same names) for the quality report")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--previews", type=int, default=20,
                        help="number of overlay previews, spread over the images (default: 20)")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext gaze``."""
    report = run_pipeline(args.csv, args.images, args.output, preset=args.preset, sigma=args.sigma,
                          thresholds=args.thresholds, levels=args.levels, masks_dir=args.masks,
                          num_processes=args.num_processes, previews=args.previews)
    print(format_report(report))
    print(f"written to {os.path.abspath(args.output)} (quality_report.json, heatmaps/, crf/, levels/, previews/)")

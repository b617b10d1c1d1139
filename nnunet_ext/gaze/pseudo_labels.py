"""One image's pseudo-label (heatmap → CRF map → levels, spec §2.3–2.5) and its quality against a true mask."""
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.gaze.crf import CrfParameters, crf_refine
from nnunet_ext.gaze.heatmaps import gaze_heatmap
from nnunet_ext.gaze.levels import decode_levels, level_masks


SOFT_MAP_BINARISATION = 0.5
"""Threshold (≥) at which the heatmap and the CRF map are binarised for Dice / IoU (§2.4: 'threshold 0.5')."""


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

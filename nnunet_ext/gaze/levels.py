"""Multi-level pseudo-masks (spec §2.5, §2.12): thresholds of the CRF map encoded as one ordinal map, and the
dataset.json entries that declare the levels as nested nnU-Net regions."""
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_ext.gaze.crf import CrfParameters

if TYPE_CHECKING:
    from nnunetv2.utilities.label_handling.label_handling import LabelManager


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

"""Overlap and surface-distance metrics of two binary masks, with the definitions and the empty-mask rule of
:mod:`nnunet_ext.evaluation` (medpy-compatible HD95 / ASD / ASSD, spacing aware)."""
import math
from typing import Any, Dict, Optional, Sequence, Tuple

import numpy as np
from scipy import ndimage

OVERLAP_METRICS = ("Dice", "Jaccard")
DISTANCE_METRICS = ("HD95", "ASD", "ASSD")
COUNT_METRICS = ("n_pred", "n_ref")
SLICE_HD = "slice_HD_px"
"""LTUDA's "HD" (:func:`slice_hausdorff_pixels`), added by ``nnunet_ext evaluate --slice-hd``."""
EMPTY_MASK_RULE = ("Both masks empty: Dice = Jaccard = 1 and HD95 = ASD = ASSD = 0. Exactly one mask empty: "
                   "Dice = Jaccard = 0 and HD95, ASD and ASSD are undefined (NaN, written as null in the JSON), "
                   "never 0; the means over cases use only the finite distances and n_undefined_distance counts "
                   "the cases left out.")
CROP_MARGIN = 1


def _validated_spacing(shape: Tuple[int, ...], spacing: Optional[Sequence[float]]) -> Tuple[float, ...]:
    """``spacing`` as a tuple of positive floats with one value per axis (1 per axis when None)."""
    if spacing is None:
        return (1.0,) * len(shape)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != len(shape):
        raise ValueError(f"Spacing {spacing} has {len(spacing)} values for a {len(shape)}-D mask.")
    if not all(s > 0 for s in spacing):
        raise ValueError(f"Spacing {spacing} must be positive.")
    return spacing


def _as_mask_pair(pred: np.ndarray, ref: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Both inputs as boolean arrays (non-zero = foreground), checked to have the same shape."""
    pred, ref = np.asarray(pred).astype(bool, copy=False), np.asarray(ref).astype(bool, copy=False)
    if pred.shape != ref.shape:
        raise ValueError(f"Prediction shape {pred.shape} differs from reference shape {ref.shape}.")
    return pred, ref


def _union_bounding_box(pred: np.ndarray, ref: np.ndarray, margin: int) -> Tuple[slice, ...]:
    """Slices of the bounding box of ``pred | ref`` grown by ``margin`` voxels and clipped to the image.

    Clipping keeps the image border where it was, so the erosion (which treats outside the array as
    background) finds the same surface voxels in the crop as in the whole image, and every surface voxel lies
    inside the crop, so the distance transform's nearest surface voxel is the same too.
    """
    union = pred | ref
    box = []
    for axis in range(union.ndim):
        others = tuple(a for a in range(union.ndim) if a != axis)
        occupied = np.flatnonzero(union.any(axis=others))
        box.append(slice(max(int(occupied[0]) - margin, 0), min(int(occupied[-1]) + 1 + margin, union.shape[axis])))
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels: the mask minus its erosion with the connectivity-1 structuring element."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, iterations=1)


def surface_distances(pred: np.ndarray, ref: np.ndarray,
                      spacing: Optional[Sequence[float]] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Surface distances between two non-empty masks: (pred surface → ref surface, ref surface → pred surface).

    Each array holds, for every surface voxel of the first mask, the distance to the nearest surface voxel of
    the second, in the units of ``spacing`` (one value per array axis, numpy order; None means 1 per axis).
    Non-zero values are foreground. The work is done on the union bounding box of the masks, which does not
    change the result. Raises ValueError if a mask is empty, since the distances are then undefined.
    """
    pred, ref = _as_mask_pair(pred, ref)
    spacing = _validated_spacing(pred.shape, spacing)
    if not pred.any() or not ref.any():
        raise ValueError("Surface distances are undefined when a mask is empty.")
    box = _union_bounding_box(pred, ref, CROP_MARGIN)
    pred_surface, ref_surface = _surface(pred[box]), _surface(ref[box])
    pred_to_ref = ndimage.distance_transform_edt(~ref_surface, sampling=spacing)[pred_surface]
    ref_to_pred = ndimage.distance_transform_edt(~pred_surface, sampling=spacing)[ref_surface]
    return pred_to_ref, ref_to_pred


def binary_metrics(pred: np.ndarray, ref: np.ndarray, spacing: Optional[Sequence[float]] = None) -> Dict[str, Any]:
    """Dice, Jaccard, HD95, ASD, ASSD and the voxel counts n_pred, n_ref of two masks of the same shape.

    Non-zero values are foreground; ``spacing`` is one value per array axis (None means 1 per axis). Empty
    masks follow the module's empty-mask rule (``EMPTY_MASK_RULE``): distances are NaN when exactly one
    mask is empty.
    """
    pred, ref = _as_mask_pair(pred, ref)
    spacing = _validated_spacing(pred.shape, spacing)
    n_pred, n_ref = int(np.count_nonzero(pred)), int(np.count_nonzero(ref))
    metrics: Dict[str, Any] = {}
    if n_pred == 0 and n_ref == 0:
        metrics.update(Dice=1.0, Jaccard=1.0, HD95=0.0, ASD=0.0, ASSD=0.0)
    else:
        intersection = int(np.count_nonzero(pred & ref))
        metrics["Dice"] = 2.0 * intersection / (n_pred + n_ref)
        metrics["Jaccard"] = intersection / (n_pred + n_ref - intersection)
        if n_pred == 0 or n_ref == 0:
            metrics.update(HD95=math.nan, ASD=math.nan, ASSD=math.nan)
        else:
            pred_to_ref, ref_to_pred = surface_distances(pred, ref, spacing)
            metrics["HD95"] = float(np.percentile(np.concatenate([pred_to_ref, ref_to_pred]), 95))
            metrics["ASD"] = float(pred_to_ref.mean())
            metrics["ASSD"] = (metrics["ASD"] + float(ref_to_pred.mean())) / 2.0
    metrics.update(n_pred=n_pred, n_ref=n_ref)
    return metrics


def slice_hausdorff_pixels(pred: np.ndarray, ref: np.ndarray) -> float:
    """LTUDA's reported "HD" (spec §3.8), to compare with the paper: for every slice along axis 0 (SimpleITK's z)
    from the reference's first to its last non-empty slice, the 2-D Hausdorff distance (the maximum, not the
    95th percentile) between the prediction's and the reference's slice, in pixels; the mean over those slices.
    Slices whose prediction is empty are skipped, as in the original (which makes the number optimistic), and so
    are empty reference slices inside the range, whose distance is undefined too. NaN when no slice is scored. A
    2-D mask is one slice."""
    pred, ref = _as_mask_pair(pred, ref)
    if pred.ndim == 2:
        pred, ref = pred[None], ref[None]
    occupied = np.flatnonzero(ref.reshape(ref.shape[0], -1).any(1))
    distances = []
    for z in range(int(occupied[0]), int(occupied[-1]) + 1) if occupied.size else ():
        if pred[z].any() and ref[z].any():
            pred_to_ref, ref_to_pred = surface_distances(pred[z], ref[z])
            distances.append(max(float(pred_to_ref.max()), float(ref_to_pred.max())))
    return float(np.mean(distances)) if distances else math.nan

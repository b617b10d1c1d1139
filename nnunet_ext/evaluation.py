"""``nnunet_ext evaluate``: Dice, Jaccard, HD95, ASD and ASSD of a prediction folder against a reference folder.

nnU-Net's own evaluation reports overlap only. Semi-supervised segmentation papers also report surface
distances, so this module adds them with definitions that match medpy's ``metric.binary`` functions, which
most of those papers use, while taking the voxel spacing from the reference image (distances in mm;
``--voxel-units`` gives voxels, for comparison with papers that report those).

Definitions, per case and label (``pred`` and ``ref`` are the binary masks of one label):

* Dice = 2·|pred ∩ ref| / (|pred| + |ref|); Jaccard = |pred ∩ ref| / |pred ∪ ref|.
* Surface voxels of a mask: the mask minus its binary erosion with the connectivity-1 structuring element
  (voxels on the border of the image count as surface). Surface distances: for each surface voxel of one
  mask, the Euclidean distance (scaled by the spacing) to the nearest surface voxel of the other mask.
* HD95: 95th percentile of the distances of both directions pooled together.
* ASD: mean distance from the prediction's surface to the reference surface (one direction).
* ASSD: mean of ASD(pred → ref) and ASD(ref → pred), as medpy up to 0.4 computes it (medpy 0.5 averages the
  pooled distances of both directions instead, which weights each direction by its number of surface voxels).

Empty-mask rule: Both masks empty: Dice = Jaccard = 1 and HD95 = ASD = ASSD = 0. Exactly one mask empty:
Dice = Jaccard = 0 and HD95, ASD and ASSD are undefined (NaN, written as null in the JSON), never 0; the means
over cases use only the finite distances and n_undefined_distance counts the cases left out.

The distance transform runs on the union bounding box of both masks plus a margin, which gives the same
distances as on the whole image and keeps large volumes fast.

Output: a ``summary.json`` shaped like nnU-Net's (``metric_per_case``, ``mean`` per label, ``foreground_mean``)
plus ``units`` and ``empty_mask_rule``, and a table on stdout.
"""
import argparse
import json
import math
import multiprocessing
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from PIL import Image
from scipy import ndimage
from tqdm import tqdm

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".bmp", ".tif", ".tiff")
NATURAL_2D_ENDINGS = (".png", ".bmp")
TIFF_ENDINGS = (".tif", ".tiff")
OVERLAP_METRICS = ("Dice", "Jaccard")
DISTANCE_METRICS = ("HD95", "ASD", "ASSD")
COUNT_METRICS = ("n_pred", "n_ref")
EMPTY_MASK_RULE = ("Both masks empty: Dice = Jaccard = 1 and HD95 = ASD = ASSD = 0. Exactly one mask empty: "
                   "Dice = Jaccard = 0 and HD95, ASD and ASSD are undefined (NaN, written as null in the JSON), "
                   "never 0; the means over cases use only the finite distances and n_undefined_distance counts "
                   "the cases left out.")
CROP_MARGIN = 1
SPACING_RTOL = 1e-4


def image_ending(file_name: str) -> Optional[str]:
    """The nnU-Net image ending of ``file_name`` (``.nii.gz``, ``.png``, ...), or None for other files."""
    lower = file_name.lower()
    return next((ending for ending in IMAGE_ENDINGS if lower.endswith(ending)), None)


def read_segmentation(path: str) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """A label image as an array (numpy axis order) and its spacing in the same axis order.

    PNG and BMP are 2-D natural images read with Pillow, spacing 1. TIFF files use nnU-Net's convention: the
    spacing comes from a ``.json`` file of the same name holding ``{"spacing": [...]}`` when there is one, else 1.
    Every other format is read with SimpleITK, whose spacing is reversed to match the array's axes.
    """
    ending = image_ending(path)
    if ending in NATURAL_2D_ENDINGS:
        with Image.open(path) as image:
            array = np.asarray(image)
        if array.ndim != 2:
            raise ValueError(f"{path}: a label image must have one channel, this one has shape {array.shape}.")
        spacing: Tuple[float, ...] = (1.0, 1.0)
    else:
        image = sitk.ReadImage(path)
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"{path}: a label image must have one channel, this one has "
                             f"{image.GetNumberOfComponentsPerPixel()}.")
        array = sitk.GetArrayFromImage(image)
        spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
        if ending in TIFF_ENDINGS:
            spacing = _tiff_spacing(path, ending, array.ndim)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array, spacing


def _tiff_spacing(path: str, ending: str, ndim: int) -> Tuple[float, ...]:
    """Spacing of a TIFF label image from its nnU-Net ``.json`` side file, or 1 per axis without one."""
    side_file = path[:-len(ending)] + ".json"
    if not os.path.isfile(side_file):
        return (1.0,) * ndim
    with open(side_file) as f:
        spacing = tuple(float(s) for s in json.load(f)["spacing"])
    if len(spacing) != ndim:
        raise ValueError(f"{side_file} gives {len(spacing)} spacing values for a {ndim}-D image {path}.")
    return spacing


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


def _foreground_labels(array: np.ndarray, path: str) -> List[int]:
    """The sorted non-zero values of a label image, which must be integers."""
    values = np.unique(array)
    values = values[values != 0]
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise ValueError(f"{path} holds non-integer values, so it is not a label image.")
    return [int(v) for v in values]


def evaluate_case(ref_file: str, pred_file: str, labels: Optional[Sequence[int]] = None,
                  voxel_units: bool = False) -> Dict[str, Any]:
    """Metrics of one prediction file against its reference file.

    Returns ``{"reference_file", "prediction_file", "metrics": {label: binary_metrics(...)},
    "reference_labels": [...]}``. Without ``labels``, metrics are computed for every non-zero value of either
    image (labels absent from both are both-empty cases, which the caller can fill in without reading the
    images again). Raises ValueError naming the file when the prediction's size or spacing differs from the
    reference's.
    """
    ref, spacing = read_segmentation(ref_file)
    pred, pred_spacing = read_segmentation(pred_file)
    name = os.path.basename(pred_file)
    if pred.shape != ref.shape:
        raise ValueError(f"{name}: size mismatch, prediction {pred_file} has shape {pred.shape} but reference "
                         f"{ref_file} has shape {ref.shape}.")
    if not np.allclose(pred_spacing, spacing, rtol=SPACING_RTOL, atol=0):
        raise ValueError(f"{name}: spacing mismatch, prediction {pred_file} has spacing {pred_spacing} but "
                         f"reference {ref_file} has spacing {spacing}.")
    reference_labels = _foreground_labels(ref, ref_file)
    if labels is None:
        labels = sorted(set(reference_labels) | set(_foreground_labels(pred, pred_file)))
    if voxel_units:
        spacing = (1.0,) * ref.ndim
    return {"reference_file": ref_file, "prediction_file": pred_file, "reference_labels": reference_labels,
            "metrics": {int(label): binary_metrics(pred == label, ref == label, spacing) for label in labels}}


def _evaluate_case_task(task: Tuple[str, str, Optional[List[int]], bool]) -> Dict[str, Any]:
    """``evaluate_case`` with its arguments packed in one tuple, for ``Pool.imap``."""
    return evaluate_case(*task)


def pair_files(ref_dir: str, pred_dir: str, file_names: Optional[Sequence[str]] = None) -> List[str]:
    """The file names to evaluate: those present in both folders under the same name.

    Without ``file_names`` both folders must hold the same set of image files. With ``file_names`` only those
    are evaluated, and each must exist in both folders (other files are ignored). Raises ValueError listing
    every reference without a prediction and every prediction without a reference.
    """
    for folder in (ref_dir, pred_dir):
        if not os.path.isdir(folder):
            raise ValueError(f"{folder} is not a folder.")

    def images(folder: str) -> set:
        return {f for f in os.listdir(folder)
                if image_ending(f) and not f.startswith(".") and os.path.isfile(os.path.join(folder, f))}

    references, predictions = images(ref_dir), images(pred_dir)
    if file_names is not None:
        wanted = set(file_names)
        if not wanted:
            raise ValueError("The list of file names to evaluate is empty.")
        missing_refs = sorted(wanted - references)
        missing_preds = sorted(wanted - predictions)
        references = wanted
        unmatched_preds: List[str] = []
    else:
        missing_refs = []
        missing_preds = sorted(references - predictions)
        unmatched_preds = sorted(predictions - references)
    problems = []
    if missing_preds:
        problems.append(f"prediction missing in {pred_dir} for reference file(s): {', '.join(missing_preds)}")
    if missing_refs:
        problems.append(f"reference missing in {ref_dir} for file(s): {', '.join(missing_refs)}")
    if unmatched_preds:
        problems.append(f"prediction file(s) without a reference in {ref_dir}: {', '.join(unmatched_preds)}")
    if problems:
        raise ValueError("Cannot pair predictions with references: " + "; ".join(problems) + ".")
    if not references:
        raise ValueError(f"{ref_dir} holds no image file ending in one of {', '.join(IMAGE_ENDINGS)}.")
    return sorted(references)


def _map_with_progress(function: Callable[[Any], Any], tasks: List[Any], num_processes: int) -> List[Any]:
    """``[function(t) for t in tasks]`` in order, on ``num_processes`` spawned processes, with a progress bar."""
    progress = dict(total=len(tasks), desc="evaluating", unit="case")
    if num_processes <= 1 or len(tasks) <= 1:
        return [function(task) for task in tqdm(tasks, **progress)]
    with multiprocessing.get_context("spawn").Pool(min(num_processes, len(tasks))) as pool:
        return list(tqdm(pool.imap(function, tasks), **progress))


def _finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values, NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _label_means(per_case: List[Dict[str, Any]], label: str) -> Dict[str, Any]:
    """Means over cases of one label; distances over the finite values, with the count of the others."""
    rows = [case["metrics"][label] for case in per_case]
    means: Dict[str, Any] = {m: float(np.mean([r[m] for r in rows])) for m in OVERLAP_METRICS + COUNT_METRICS}
    means.update({m: _finite_mean([r[m] for r in rows]) for m in DISTANCE_METRICS})
    means["n_undefined_distance"] = sum(1 for r in rows if not math.isfinite(r["HD95"]))
    return means


def _foreground_mean(mean: Dict[str, Dict[str, Any]], labels: Sequence[int]) -> Dict[str, Any]:
    """nnU-Net's ``foreground_mean``: the mean over the non-zero labels of the per-label means."""
    entries = [mean[str(label)] for label in labels if label != 0]
    result: Dict[str, Any] = {m: _finite_mean([e[m] for e in entries])
                              for m in OVERLAP_METRICS + DISTANCE_METRICS + COUNT_METRICS}
    result["n_undefined_distance"] = sum(e["n_undefined_distance"] for e in entries)
    return result


def _nan_to_none(value: Any) -> Any:
    """A copy of a JSON-like structure with every NaN float replaced by None (JSON null)."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def evaluate_folders(ref_dir: str, pred_dir: str, labels: Optional[Sequence[int]] = None,
                     output_file: Optional[str] = None, voxel_units: bool = False, num_processes: int = 2,
                     file_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Evaluate every prediction in ``pred_dir`` against the file of the same name in ``ref_dir``.

    ``labels`` defaults to every non-zero value found in the references. Distances are in the reference
    spacing's units (mm) or in voxels with ``voxel_units``. ``file_names`` restricts the evaluation to those
    files (see ``pair_files``). The summary is written to ``output_file`` (default ``pred_dir/summary.json``)
    with NaN as null, and returned with NaN as float NaN:
    ``{"metric_per_case": [{"prediction_file", "reference_file", "metrics": {"1": {...}}}],
    "mean": {"1": {...}}, "foreground_mean": {...}, "units", "empty_mask_rule"}``.
    Raises ValueError on unpaired files and on size or spacing mismatches, naming the file.
    """
    names = pair_files(ref_dir, pred_dir, file_names)
    chosen = sorted({int(label) for label in labels}) if labels is not None else None
    if chosen is not None and not chosen:
        raise ValueError("The list of labels to evaluate is empty.")
    tasks = [(os.path.join(ref_dir, n), os.path.join(pred_dir, n), chosen, voxel_units) for n in names]
    results = _map_with_progress(_evaluate_case_task, tasks, num_processes)
    if chosen is None:
        chosen = sorted({label for result in results for label in result["reference_labels"]})
        if not chosen:
            raise ValueError(f"The references in {ref_dir} hold no foreground label; name the labels to "
                             f"evaluate (-l / labels=).")
    both_empty = binary_metrics(np.zeros(1, dtype=bool), np.zeros(1, dtype=bool))
    per_case = [{"prediction_file": result["prediction_file"], "reference_file": result["reference_file"],
                 "metrics": {str(label): dict(result["metrics"].get(label, both_empty)) for label in chosen}}
                for result in results]
    mean = {str(label): _label_means(per_case, str(label)) for label in chosen}
    summary = {"metric_per_case": per_case, "mean": mean, "foreground_mean": _foreground_mean(mean, chosen),
               "units": "voxels" if voxel_units else "mm", "empty_mask_rule": EMPTY_MASK_RULE}
    output_file = output_file if output_file is not None else os.path.join(pred_dir, "summary.json")
    output_folder = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(output_folder, exist_ok=True)
    with open(output_file, "w") as f:
        json.dump(_nan_to_none(summary), f, indent=2, allow_nan=False)
    return summary


def format_table(summary: Dict[str, Any]) -> str:
    """The summary as a text table: one row per case and label, then the mean per label and over labels."""
    columns = OVERLAP_METRICS + DISTANCE_METRICS + COUNT_METRICS

    def cell(metric: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if metric in COUNT_METRICS:
            return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
        return f"{value:.4f}" if metric in OVERLAP_METRICS else f"{value:.3f}"

    case_rows = [(os.path.basename(case["prediction_file"]), label, metrics)
                 for case in summary["metric_per_case"] for label, metrics in case["metrics"].items()]
    mean_rows = [("mean", label, metrics) for label, metrics in summary["mean"].items()]
    mean_rows.append(("foreground mean", "", summary["foreground_mean"]))
    name_width = max(len(name) for name, _, _ in case_rows + mean_rows)
    header = (f"{'case':<{name_width}}  {'label':>5}" + "".join(f"  {c:>8}" for c in columns)
              + "  n_undefined_distance")
    rule = "-" * len(header)

    def line(name: str, label: str, metrics: Dict[str, Any]) -> str:
        text = f"{name:<{name_width}}  {label:>5}" + "".join(f"  {cell(c, metrics[c]):>8}" for c in columns)
        return text + (f"  {metrics['n_undefined_distance']:>20}" if "n_undefined_distance" in metrics else "")

    lines = [f"HD95, ASD and ASSD in {summary['units']}; n/a = undefined (one mask empty)", header, rule]
    lines += [line(*row) for row in case_rows] + [rule] + [line(*row) for row in mean_rows]
    lines.append(f"empty-mask rule: {summary['empty_mask_rule']}")
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-ref", required=True, help="folder of reference segmentations")
    parser.add_argument("-pred", required=True, help="folder of predictions, same file names as the references")
    parser.add_argument("-o", dest="output_file", default=None,
                        help="output JSON file (default: PRED/summary.json)")
    parser.add_argument("--voxel-units", action="store_true",
                        help="distances in voxels (spacing 1 per axis) instead of the reference spacing's mm")
    parser.add_argument("-l", dest="labels", type=int, nargs="+", default=None,
                        help="labels to evaluate (default: every non-zero value found in the references)")
    parser.add_argument("-np", dest="num_processes", type=int, default=2,
                        help="number of processes evaluating cases in parallel (default: 2)")


def run(args: argparse.Namespace) -> None:
    summary = evaluate_folders(args.ref, args.pred, labels=args.labels, output_file=args.output_file,
                               voxel_units=args.voxel_units, num_processes=args.num_processes)
    print(format_table(summary))
    output_file = args.output_file if args.output_file is not None else os.path.join(args.pred, "summary.json")
    print(f"\nsummary written to {output_file}")

"""Scoring a folder of predictions against a folder of references: per case and label, means, the summary
JSON shaped like nnU-Net's and the printed table."""
import json
import math
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from nnunet_ext.evaluation.label_sets import ScoredClass, annotated_classes, class_key, class_mask
from nnunet_ext.evaluation.metrics import (COUNT_METRICS, DISTANCE_METRICS, EMPTY_MASK_RULE, OVERLAP_METRICS,
                                           SLICE_HD, binary_metrics, slice_hausdorff_pixels)
from nnunet_ext.evaluation.segmentations import IMAGE_ENDINGS, NATURAL_2D_ENDINGS, image_ending, read_segmentation
from nnunet_ext.worker_pool import result_of, spawned_pool

SPACING_RTOL = 1e-4


def _foreground_labels(array: np.ndarray, path: str) -> List[int]:
    """The sorted non-zero values of a label image, which must be integers."""
    values = np.unique(array)
    values = values[values != 0]
    if not np.all(np.equal(np.mod(values, 1), 0)):
        raise ValueError(f"{path} holds non-integer values, so it is not a label image.")
    return [int(v) for v in values]


def evaluate_case(ref_file: str, pred_file: str, classes: Optional[Sequence[ScoredClass]] = None,
                  voxel_units: bool = False, annotated: Optional[Sequence[int]] = None,
                  slice_hd: bool = False) -> Dict[str, Any]:
    """Metrics of one prediction file against its reference file.

    Returns ``{"reference_file", "prediction_file", "metrics": {class: binary_metrics(...)},
    "reference_labels": [...]}``. ``classes`` are labels or regions (see :mod:`~nnunet_ext.evaluation.label_sets`);
    without them, metrics are computed for every non-zero value of either image (labels absent from both are
    both-empty cases, which the caller can fill in without reading the images again). With ``annotated`` (the
    labels this case annotates) only the classes the reference is complete for are scored; ``slice_hd`` adds
    LTUDA's 2-D HD in pixels (:func:`~nnunet_ext.evaluation.metrics.slice_hausdorff_pixels`). Raises ValueError
    naming the file when the prediction's size or spacing differs from the reference's.
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
    if classes is None:
        classes = sorted(set(reference_labels) | set(_foreground_labels(pred, pred_file)))
    if annotated is not None:
        classes = annotated_classes(classes, annotated)
    if voxel_units:
        spacing = (1.0,) * ref.ndim
    metrics = {c: binary_metrics(class_mask(pred, c), class_mask(ref, c), spacing) for c in classes}
    if slice_hd:
        for c in classes:
            metrics[c][SLICE_HD] = slice_hausdorff_pixels(class_mask(pred, c), class_mask(ref, c))
    return {"reference_file": ref_file, "prediction_file": pred_file, "reference_labels": reference_labels,
            "metrics": metrics}


def _evaluate_case_task(task: Tuple[str, str, Optional[List[ScoredClass]], bool, Optional[List[int]], bool]
                        ) -> Dict[str, Any]:
    """``evaluate_case`` with its arguments packed in one tuple, for ``Pool.imap``."""
    return evaluate_case(*task)


def image_files(folder: str) -> set:
    """The names of the image files in ``folder`` (hidden files and other endings left out)."""
    if not os.path.isdir(folder):
        raise ValueError(f"{folder} is not a folder.")
    return {f for f in os.listdir(folder)
            if image_ending(f) and not f.startswith(".") and os.path.isfile(os.path.join(folder, f))}


def pair_files(ref_dir: str, pred_dir: str, file_names: Optional[Sequence[str]] = None) -> List[str]:
    """The file names to evaluate: those present in both folders under the same name.

    Without ``file_names`` both folders must hold the same set of image files. With ``file_names`` only those
    are evaluated, and each must exist in both folders (other files are ignored). Raises ValueError listing
    every reference without a prediction and every prediction without a reference.
    """
    references, predictions = image_files(ref_dir), image_files(pred_dir)
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
        problems.append(f"prediction missing in {pred_dir} for reference file(s): {', '.join(missing_preds)}"
                        + _ending_hint(missing_preds, predictions))
    if missing_refs:
        problems.append(f"reference missing in {ref_dir} for file(s): {', '.join(missing_refs)}")
    if unmatched_preds:
        problems.append(f"prediction file(s) without a reference in {ref_dir}: {', '.join(unmatched_preds)}")
    if problems:
        raise ValueError("Cannot pair predictions with references: " + "; ".join(problems) + ".")
    if not references:
        raise ValueError(f"{ref_dir} holds no image file ending in one of {', '.join(IMAGE_ENDINGS)}.")
    return sorted(references)


def _ending_hint(wanted: Sequence[str], present: set) -> str:
    """A hint for files that exist under another image ending (``case.nii`` for ``case.nii.gz``)."""
    by_case = {case_id(f): f for f in present}
    other = [f"{by_case[case_id(w)]} for {w}" for w in wanted if case_id(w) in by_case]
    return (f" (found {', '.join(other[:3])}{', …' if len(other) > 3 else ''}: only the file ending differs; "
            f"predict with the dataset's file_ending or convert the files)") if other else ""


def _map_with_progress(function: Callable[[Any], Any], tasks: List[Any], num_processes: int) -> List[Any]:
    """``[function(t) for t in tasks]`` in order, on ``num_processes`` spawned processes, with a progress bar (closed
    also when a task fails, so an error message starts on a line of its own)."""
    with tqdm(total=len(tasks), desc="evaluating", unit="case") as bar:
        if num_processes <= 1 or len(tasks) <= 1:
            results = []
            for task in tasks:
                results.append(function(task))
                bar.update()
            return results
        with spawned_pool(min(num_processes, len(tasks))) as pool:
            results = []
            for future in [pool.submit(function, task) for task in tasks]:
                results.append(result_of(future))
                bar.update()
            return results


def _finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values, NaN when there are none."""
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _class_means(per_case: List[Dict[str, Any]], key: str) -> Dict[str, Any]:
    """Means of one class over the cases that score it; distances over the finite values, with the count of the
    others."""
    rows = [case["metrics"][key] for case in per_case if key in case["metrics"]]
    if not rows:
        return {**{m: math.nan for m in OVERLAP_METRICS + COUNT_METRICS + DISTANCE_METRICS},
                "n_undefined_distance": 0, "n_cases": 0}
    means: Dict[str, Any] = {m: float(np.mean([r[m] for r in rows])) for m in OVERLAP_METRICS + COUNT_METRICS}
    means.update({m: _finite_mean([r[m] for r in rows]) for m in DISTANCE_METRICS + (SLICE_HD,) if m in rows[0]})
    means["n_undefined_distance"] = sum(1 for r in rows if not math.isfinite(r["HD95"]))
    means["n_cases"] = len(rows)
    return means


def _foreground_mean(mean: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    """nnU-Net's ``foreground_mean``: the mean over the foreground classes (not label 0) of the per-class means."""
    entries = [entry for key, entry in mean.items() if key != "0"]
    result: Dict[str, Any] = {m: _finite_mean([e[m] for e in entries])
                              for m in OVERLAP_METRICS + DISTANCE_METRICS + COUNT_METRICS + (SLICE_HD,)
                              if all(m in e for e in entries)}
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


def case_id(file_name: str) -> str:
    """A case identifier from its file name: the name without its image ending."""
    return file_name[:-len(image_ending(file_name) or "")]


def evaluate_folders(ref_dir: str, pred_dir: str, labels: Optional[Sequence[int]] = None,
                     output_file: Optional[str] = None, voxel_units: bool = False, num_processes: int = 2,
                     file_names: Optional[Sequence[str]] = None,
                     regions: Optional[Dict[str, ScoredClass]] = None,
                     annotated_labels: Optional[Dict[str, List[int]]] = None, chill: bool = False,
                     slice_hd: bool = False) -> Dict[str, Any]:
    """Evaluate every prediction in ``pred_dir`` against the file of the same name in ``ref_dir``.

    ``labels`` defaults to every non-zero value found in the references; ``regions`` (``{name: region}``, see
    :func:`~nnunet_ext.evaluation.label_sets.regions_from_dataset_json`) scores regions instead; with
    ``annotated_labels`` (``{case_id: [labels]}``) each case is scored only on the classes it annotates, and each
    class's mean is over those cases (``n_cases``). Distances are in the reference spacing's units (mm) or in
    voxels with ``voxel_units``; 2-D natural images (PNG, BMP) carry no spacing, so theirs are in pixels.
    ``file_names`` restricts the evaluation to those files (see ``pair_files``); ``chill`` (nnU-Net's flag) scores
    the references that have a prediction and lists the others under ``missing_predictions``; ``slice_hd`` adds
    LTUDA's 2-D HD in pixels per class (``slice_HD_px``; a class empty in both images has none, NaN). The
    summary is written to ``output_file`` (default ``pred_dir/summary.json``) with NaN as null, and returned with
    NaN as float NaN: ``{"metric_per_case": [{"prediction_file", "reference_file", "metrics": {"1": {...}}}],
    "mean": {"1": {...}}, "foreground_mean": {...}, "units", "empty_mask_rule"}``, plus ``region_names`` with
    regions and ``annotated_labels`` with partial labels. Raises ValueError on unpaired files, on size or spacing
    mismatches and on cases missing from ``annotated_labels``, naming the file.
    """
    if regions is not None and labels is not None:
        raise ValueError("Give labels or regions to evaluate, not both.")
    missing_predictions: List[str] = []
    if chill and file_names is None:
        references, predictions = image_files(ref_dir), image_files(pred_dir)
        missing_predictions = sorted(references - predictions)
        file_names = sorted(references & predictions)
        if not file_names:
            raise ValueError(f"{pred_dir} holds a prediction for none of the references in {ref_dir}"
                             + _ending_hint(missing_predictions, predictions) + ".")
    names = pair_files(ref_dir, pred_dir, file_names)
    pixels = all(image_ending(n) in NATURAL_2D_ENDINGS for n in names)
    if annotated_labels is not None:
        missing = [n for n in names if case_id(n) not in annotated_labels]
        if missing:
            raise ValueError(f"annotated_labels names no annotated labels for {', '.join(missing)}.")
    chosen: Optional[List[ScoredClass]] = (list(regions.values()) if regions is not None else
                                           sorted({int(label) for label in labels}) if labels is not None else None)
    if chosen is not None and not chosen:
        raise ValueError("The list of labels to evaluate is empty.")
    tasks = [(os.path.join(ref_dir, n), os.path.join(pred_dir, n), chosen, voxel_units,
              None if annotated_labels is None else annotated_labels[case_id(n)], slice_hd) for n in names]
    results = _map_with_progress(_evaluate_case_task, tasks, num_processes)
    if chosen is None:
        chosen = sorted({label for result in results for label in result["reference_labels"]} |
                        {label for values in (annotated_labels or {}).values() for label in values})
        if not chosen:
            raise ValueError(f"The references in {ref_dir} hold no foreground label; name the labels to "
                             f"evaluate (-l / labels=).")
    both_empty = binary_metrics(np.zeros(1, dtype=bool), np.zeros(1, dtype=bool))
    if slice_hd:
        both_empty[SLICE_HD] = math.nan
    per_case = []
    for name, result in zip(names, results):
        scored = chosen if annotated_labels is None else annotated_classes(chosen, annotated_labels[case_id(name)])
        per_case.append({"prediction_file": result["prediction_file"], "reference_file": result["reference_file"],
                         "metrics": {class_key(c): dict(result["metrics"].get(c, both_empty)) for c in scored}})
    mean = {class_key(c): _class_means(per_case, class_key(c)) for c in chosen}
    summary: Dict[str, Any] = {"metric_per_case": per_case, "mean": mean, "foreground_mean": _foreground_mean(mean),
                               "units": "pixels" if pixels else "voxels" if voxel_units else "mm",
                               "empty_mask_rule": EMPTY_MASK_RULE}
    if chill:
        summary["missing_predictions"] = missing_predictions
    if regions is not None:
        summary["region_names"] = {class_key(region): name for name, region in regions.items()}
    if annotated_labels is not None:
        summary["annotated_labels"] = {case_id(n): annotated_labels[case_id(n)] for n in names}
    output_file = output_file if output_file is not None else os.path.join(pred_dir, "summary.json")
    output_folder = os.path.dirname(os.path.abspath(output_file))
    os.makedirs(output_folder, exist_ok=True)
    with open(output_file, "w") as f:
        json.dump(_nan_to_none(summary), f, indent=2, allow_nan=False)
    return summary


def format_table(summary: Dict[str, Any]) -> str:
    """The summary as a text table: one row per case and scored label or region (by name), then the mean per class
    and over the classes."""
    columns = OVERLAP_METRICS + DISTANCE_METRICS + ((SLICE_HD,) if SLICE_HD in summary["foreground_mean"] else ()) \
        + COUNT_METRICS

    def cell(metric: str, value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "n/a"
        if metric in COUNT_METRICS:
            return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"
        return f"{value:.4f}" if metric in OVERLAP_METRICS else f"{value:.3f}"

    names = summary.get("region_names", {})
    case_rows = [(os.path.basename(case["prediction_file"]), names.get(key, key), metrics)
                 for case in summary["metric_per_case"] for key, metrics in case["metrics"].items()]
    mean_rows = [("mean", names.get(key, key), metrics) for key, metrics in summary["mean"].items()]
    mean_rows.append(("foreground mean", "", summary["foreground_mean"]))
    name_width = max(len(name) for name, _, _ in case_rows + mean_rows)
    label_width = max(5, *(len(label) for _, label, _ in case_rows + mean_rows))
    header = (f"{'case':<{name_width}}  {'label':>{label_width}}" + "".join(f"  {c:>8}" for c in columns)
              + "  n_undefined_distance")
    rule = "-" * len(header)

    def line(name: str, label: str, metrics: Dict[str, Any]) -> str:
        text = f"{name:<{name_width}}  {label:>{label_width}}" + "".join(f"  {cell(c, metrics.get(c)):>8}" for c in columns)
        return text + (f"  {metrics['n_undefined_distance']:>20}" if "n_undefined_distance" in metrics else "")

    lines = [f"HD95, ASD and ASSD in {summary['units']}; n/a = undefined (one mask empty)", header, rule]
    lines += [line(*row) for row in case_rows] + [rule] + [line(*row) for row in mean_rows]
    lines.append(f"empty-mask rule: {summary['empty_mask_rule']}")
    return "\n".join(lines)

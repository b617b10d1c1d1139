"""What ``nnunet_ext evaluate`` scores besides plain labels: the regions of a dataset and, for partially labeled
datasets, only the classes each case annotates (DESIGN.md §3, §6).

A scored *class* is a label value (``1``) or a region, the tuple of label values it joins (``(1, 2, 3)``, BraTS's
whole tumour); its key in the summary is ``str(class)``, nnU-Net's key format (``"1"``, ``"(1, 2, 3)"``). Regions
come from a dataset.json as nnU-Net reads them: every foreground entry of ``labels`` (``ignore`` excluded), in
order, e.g. ``{"whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": 3}``. Region-based predictions
exported by nnU-Net are label maps painted in ``regions_class_order``, so a region is scored on prediction and
reference alike as the voxels whose value lies in it.

Partial labels: a dataset.json's ``annotated_labels`` (``{case_id: [label values annotated in that case]}``) says
which classes a case's reference is complete for. Elsewhere a 0 voxel means "background or an unannotated class",
so a class the case does not annotate (a region: one of whose labels it does not annotate) is not scored for that
case at all, and each class's mean is over the cases that annotate it.
"""
import json
import os
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

from nnunet_ext.partial_labels import annotated_labels_of

ScoredClass = Union[int, Tuple[int, ...]]


def class_key(scored: ScoredClass) -> str:
    """The summary key of a label or region, as nnU-Net writes it: ``"1"``, ``"(1, 2, 3)"``."""
    return str(scored)


def class_mask(array: np.ndarray, scored: ScoredClass) -> np.ndarray:
    """The voxels of a label map that belong to a label or region."""
    return np.isin(array, scored) if isinstance(scored, tuple) else array == scored


def _read_json(path: str, what: str) -> dict:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} does not exist (expected a dataset.json with {what})")
    with open(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON ({error})") from None


def regions_from_dataset_json(path: str) -> Dict[str, ScoredClass]:
    """``{region name: region}`` of a region-based dataset.json file (nnU-Net's order; ``ignore`` excluded)."""
    return regions_of(_read_json(path, "region labels"), path)


def regions_of(dataset_json: dict, path: str) -> Dict[str, ScoredClass]:
    """``{region name: region}`` of a region-based dataset.json read from ``path`` (named in the errors)."""
    labels = dataset_json.get("labels")
    if not isinstance(labels, dict):
        raise ValueError(f"{path} has no 'labels' dictionary")
    regions: Dict[str, ScoredClass] = {}
    for name, value in labels.items():
        if name in ("background", "ignore"):
            continue
        values = [value] if isinstance(value, int) else list(value) if isinstance(value, (list, tuple)) else None
        if not values or not all(isinstance(v, int) and v > 0 for v in values):
            raise ValueError(f"{path}: label {name!r} = {value!r} is neither a positive label value nor a list of them")
        regions[name] = values[0] if isinstance(value, int) else tuple(values)
    if not any(isinstance(r, tuple) for r in regions.values()):
        raise ValueError(f"{path} declares no region (a label whose value is a list, e.g. 'whole_tumor': [1, 2, 3]); "
                         f"score its labels without --regions-from")
    return regions


def annotated_labels_from(path: str) -> Dict[str, List[int]]:
    """``annotated_labels`` of a partially labeled dataset.json: ``{case_id: [label values]}``."""
    return annotated_labels_of(_read_json(path, "annotated_labels"), path)


def annotated_classes(classes: Sequence[ScoredClass], annotated: Sequence[int]) -> List[ScoredClass]:
    """The classes a case's reference is complete for: its annotated labels, and regions of annotated labels only."""
    present = set(annotated)
    return [c for c in classes if (set(c) <= present if isinstance(c, tuple) else c in present)]

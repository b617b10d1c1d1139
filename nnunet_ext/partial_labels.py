"""Partially labeled datasets (DESIGN.md §3, §8.3): which classes each case annotates.

A partially labeled dataset is one nnU-Net dataset whose ``dataset.json`` carries ``annotated_labels``:
``{case_id: [label values annotated in that case]}``, test cases included. In a case, a class it does not
annotate is *unknown*, not background: a 0 voxel there means "background or an unannotated class". The union
tool (``nnunet_ext make_partial_union``) writes such datasets; the partial-label trainers and ``nnunet_ext
evaluate --annotated-labels-from`` read them.
"""
from typing import Dict, List, Optional

ANNOTATED_LABELS_KEY = "annotated_labels"
LTUDA_LABELS = {"background": 0, "liver": 1, "spleen": 2, "kidney": 3, "pancreas": 4}
"""LTUDA's label set: the union order of its four single-organ sources (specs/cmc_gazesup_ltuda.md §3.1), also the
``ltuda`` label set of the BTCV and AbdomenCT-1K converters and of ``make_partial_union``."""


def annotated_labels_of(dataset_json: dict, source: str, label_values: Optional[List[int]] = None
                        ) -> Dict[str, List[int]]:
    """``annotated_labels`` of a dataset.json read from ``source`` (named in the errors): ``ValueError`` when it is
    missing or empty, when an entry is not a list of positive label values, or (with ``label_values``, the
    dataset's foreground labels) when an entry names a label the dataset does not have."""
    annotated = dataset_json.get(ANNOTATED_LABELS_KEY)
    if not isinstance(annotated, dict) or not annotated:
        raise ValueError(f"{source} has no '{ANNOTATED_LABELS_KEY}' ({{case_id: [label values annotated in that "
                         f"case]}})")
    for case, values in annotated.items():
        if not isinstance(values, list) or not all(isinstance(v, int) and v > 0 for v in values):
            raise ValueError(f"{source}: {ANNOTATED_LABELS_KEY}[{case!r}] = {values!r} is not a list of positive "
                             f"label values")
        if label_values is not None and not set(values) <= set(label_values):
            raise ValueError(f"{source}: {ANNOTATED_LABELS_KEY}[{case!r}] = {values} names labels outside the "
                             f"dataset's {sorted(label_values)}")
    return annotated

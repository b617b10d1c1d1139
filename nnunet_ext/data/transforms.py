"""Extra transforms at the end of nnU-Net's training pipeline (run in its data-augmentation workers).

Targets derived from the labels (signed distance maps for DTC and UG-MCL) are appended to the image as extra
channels, because nnU-Net's loader only collates ``image`` and ``segmentation``; the trainer splits them off
again. They are marked as :class:`LabelDerivedTargetTransform`, so that a stream of unlabeled cases drops them
and nothing is ever derived from an unlabeled case.
"""
from typing import List, Optional, Sequence

import numpy as np
import torch
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform

from nnunet_ext.training.level_sets import signed_distance_map


class LabelDerivedTargetTransform(BasicTransform):
    """Marker base class: a transform that derives a training target from the labels. The unlabeled stream
    drops these from its pipeline, so nothing is ever derived from an unlabeled case."""


class AppendSignedDistanceMaps(LabelDerivedTargetTransform):
    """Appends one normalised signed distance map per foreground class (or region) to ``image``.

    Placed after nnU-Net's whole training pipeline: it reads the full-resolution ``segmentation`` (the first
    entry when deep supervision made it a list), labels (``(1, ...)``, classes ``foreground_labels``) or
    one-hot regions (``(R, ...)``).
    """

    def __init__(self, foreground_labels: List[int], has_regions: bool, spacing: Optional[Sequence[float]]):
        super().__init__()
        self.foreground_labels = list(foreground_labels)
        self.has_regions = has_regions
        self.spacing = None if spacing is None else tuple(float(s) for s in spacing)

    def apply(self, data_dict: dict, **params) -> dict:
        seg = data_dict["segmentation"]
        seg = (seg[0] if isinstance(seg, list) else seg).numpy()
        masks = [c > 0 for c in seg] if self.has_regions else [seg[0] == label for label in self.foreground_labels]
        spacing = None if self.spacing is None else self.spacing[-seg.ndim + 1:]
        sdf = np.stack([signed_distance_map(m, spacing) for m in masks])
        data_dict["image"] = torch.cat((data_dict["image"], torch.from_numpy(sdf)), 0)
        return data_dict

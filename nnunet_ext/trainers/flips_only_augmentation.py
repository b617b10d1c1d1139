"""Flips-only data augmentation, for variants that train as a paper without nnU-Net's augmentation.

GazeSup (spec §2.8) augments with a random flip along each image axis (p = 0.5 each) and nothing else;
nnU-Net's pipeline adds rotation, scaling, noise, blur, brightness, contrast, low resolution and gamma
(§2.12: "expose a flips-only switch for paper parity"). The mixin keeps nnU-Net's label plumbing and
mirroring and drops every random transform: of the stock pipeline it keeps the transforms that are not
random — ``MirrorTransform`` (each allowed axis flipped with probability 0.5), the mask for normalisation,
``RemoveLabelTansform``, the cascade's one-hot segmentation, the region conversion and the deep-supervision
down-sampling — and drops ``SpatialTransform`` (with its pseudo-2-D wrapping) and every ``RandomTransform``.
Without the spatial transform nothing would crop the larger initial patch that nnU-Net loads for rotations,
so the data loader crops the patch size directly.
"""
from typing import List, Tuple, Union

import numpy as np
from batchgeneratorsv2.helpers.scalar_type import RandomScalar
from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.pseudo2d import Convert2DTo3DTransform, Convert3DTo2DTransform
from batchgeneratorsv2.transforms.utils.random import RandomTransform

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

RANDOM_AUGMENTATIONS = (SpatialTransform, RandomTransform, Convert3DTo2DTransform, Convert2DTo3DTransform)
"""Stock transforms the flips-only pipeline drops (the pseudo-2-D conversions only wrap the spatial one)."""


class FlipsOnlyAugmentationMixin(nnUNetTrainer):
    """Mixed in before a trainer: ``class nnUNetTrainerGazeSup_flipsOnly(FlipsOnlyAugmentationMixin,
    nnUNetTrainerGazeSup)``. Test-time mirroring is unchanged."""

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """nnU-Net's settings, but patches are loaded at the patch size (no rotation margin to crop away)."""
        rotation, _, _, mirror_axes = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return rotation, False, tuple(self.configuration_manager.patch_size), mirror_axes

    @staticmethod
    def get_training_transforms(patch_size: Union[np.ndarray, Tuple[int, ...]], rotation_for_DA: RandomScalar,
                                deep_supervision_scales: Union[List, Tuple, None], mirror_axes: Tuple[int, ...],
                                do_dummy_2d_data_aug: bool, use_mask_for_norm: List[bool] = None,
                                is_cascaded: bool = False, foreground_labels: Union[Tuple[int, ...], List[int]] = None,
                                regions: List[Union[List[int], Tuple[int, ...], int]] = None,
                                ignore_label: int = None) -> BasicTransform:
        """The stock pipeline without its random transforms: flips plus nnU-Net's label handling."""
        stock = nnUNetTrainer.get_training_transforms(
            patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes, do_dummy_2d_data_aug,
            use_mask_for_norm, is_cascaded, foreground_labels, regions, ignore_label)
        return ComposeTransforms([t for t in stock.transforms if not isinstance(t, RANDOM_AUGMENTATIONS)])

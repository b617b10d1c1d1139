"""Dual-Task Consistency, DTC (Luo, Chen, Song, Wang; AAAI 2021; spec §2, §6.3).

Beside the segmentation head the network has a level-set head φ = tanh(conv(f)) that regresses the
normalised signed distance map T(y) of the labels (negative inside; computed per augmented patch in the data
workers, see ``nnunet_ext.data.transforms``). The task transform T⁻¹(φ) = σ(−k φ), k = 1500, turns the level set
into a segmentation, and the dual-task consistency asks both tasks to agree on every patch, labeled or not:

    L_seg = nnU-Net's Dice + CE with deep supervision, labeled patches
    L_LSF = mean (φ_L − T(y_L))²                                   labeled patches, full resolution
    L_DTC = mean (σ(−k φ) − p)²                                    all patches, foreground channels
    L = L_seg + β · L_LSF + λ(t) · L_DTC,   λ(t) = 1.0 · exp(−5 (1 − t)²)

β = 0.3 is the released code's value behind the paper's numbers (the paper writes 1). p is the softmax
foreground probability (sigmoid per region for region datasets). Nothing is detached. There is no teacher;
inference uses the segmentation head only (the predictor's network returns the segmentation logits).

The V-Net of the paper trained with dropout 0.5; nnU-Net's U-Net has none, and by default (``dropout_p = 0``)
neither has ours, so nothing stochastic perturbs the two tasks but nnU-Net's augmentation. ``dropout_p`` is the
switch: ``nnUNetTrainerDTC_dropout`` sets 0.5 at the bottleneck and the last decoder stage, as the V-Net.
"""
from typing import Dict

import torch

from nnunet_ext.losses import foreground_channels, mean_squared_error
from nnunet_ext.trainers.paper_schedule import PaperScheduleMixin
from nnunet_ext.trainers.semi_supervised import nnUNetTrainerSemiSupervised
from nnunet_ext.training.level_sets import level_set_to_probability


class nnUNetTrainerDTC(nnUNetTrainerSemiSupervised):
    """DTC: a level-set head beside the segmentation, the two tasks made to agree on every patch."""
    has_level_set_head = True
    consistency_weight = 1.0
    level_set_weight = 0.3
    """β, the weight of the level-set regression L_LSF."""
    level_set_k = 1500.0
    logged_terms = ("loss_supervised", "loss_level_set", "loss_dual_task", "weight_dual_task")

    def compute_loss(self, data, output, target, label_derived, num_labeled) -> Dict[str, torch.Tensor]:
        segmentation, level_set = output
        supervised = self.supervised_loss(segmentation, target, num_labeled)
        phi = foreground_channels(level_set, self.has_regions).float()
        level_set_loss = mean_squared_error(phi[:num_labeled], label_derived)
        p = foreground_channels(self.probabilities(self.full_resolution(segmentation)), self.has_regions)
        dual_task = mean_squared_error(level_set_to_probability(phi, self.level_set_k), p)
        weight = self.ramped(self.consistency_weight)
        return {"loss": supervised + self.level_set_weight * level_set_loss + weight * dual_task,
                "loss_supervised": supervised, "loss_level_set": level_set_loss, "loss_dual_task": dual_task,
                "weight_dual_task": weight}


class nnUNetTrainerDTC_dropout(nnUNetTrainerDTC):
    """DTC with the V-Net's channel dropout 0.5 (bottleneck, last decoder stage)."""

    dropout_p = 0.5


class nnUNetTrainerDTC_paper(PaperScheduleMixin, nnUNetTrainerDTC):
    """DTC's released LA schedule: 6000 iterations, SGD 0.01 / 0.9 / 1e-4, ×0.1 every 2500 iterations."""

"""Uncertainty-guided mutual consistency learning, UG-MCL (Zhang et al., AIIM 2022; spec §4.7, §6.5).

UG-MCL joins intra-task consistency (a UA-MT teacher) and cross-task consistency (DTC's segmentation ↔
level-set agreement), both guided by the teacher's uncertainty. Following the spec's fixed version of the
released code, the level-set task has its own head φ = tanh(conv(f)) (the release used tanh of the
segmentation logits, which makes the cross-task term unsatisfiable) and is supervised:

    L_sup   = nnU-Net's Dice + CE (deep supervision) + Dice(σ(−k φ_L), y_L) + β · mean (φ_L − T(y_L))²
    L_intra = Σ(M ⊙ (p − p_teacher)²) / (C · ΣM)                       all patches, uncertainty mask M
    L_cross = Σ(M ⊙ (σ(−k φ) − p)²) / (C_fg · ΣM)                     all patches, foreground channels
    L = L_sup + w(t) · (0.5 · L_intra + L_cross),   w(t) = 0.1 · exp(−5 (1 − t)²)

with M, the T = 8 noisy, dropout-active teacher passes and the threshold schedule as in UA-MT, k = 1500,
β = 0.3 (DTC's value; ``level_set_weight = 0`` drops it as the release did) and the Dice the V-Net squared
form. Both consistencies cover **all** patches, labeled and unlabeled, as spec §6.5 and the released code do
(the teacher's T + 1 passes then run over the whole batch); ``consistency_on = "unlabeled"``
(``nnUNetTrainerUGMCL_unlabeledConsistency``) restricts them to the unlabeled patches, where the labeled ones are
supervised directly, at half the teacher cost. ``mask_cross_task = False`` reproduces the release's unmasked
cross-task term.

Datasets with nnU-Net's ``ignore`` label: the supervised terms see the annotated voxels only (nnU-Net's loss and
the level-set Dice both mask the ignored ones); the signed distance map of a partly annotated patch is undefined,
so the β term is left out there (logged as missing).
"""
from typing import Dict

import torch

from nnunet_ext.losses import (foreground_channels, mean_squared_error, one_hot_foreground, split_ignore,
                               squared_soft_dice_loss)
from nnunet_ext.trainers.nnUNetTrainerUAMT import nnUNetTrainerUAMT
from nnunet_ext.trainers.paper_schedule import PaperScheduleMixin
from nnunet_ext.training.level_sets import level_set_to_probability


class nnUNetTrainerUGMCL(nnUNetTrainerUAMT):
    """UG-MCL: uncertainty-guided consistency within and across the segmentation and level-set tasks."""
    has_level_set_head = True
    consistency_on = "all"
    level_set_weight = 0.3
    level_set_k = 1500.0
    intra_task_factor = 0.5
    mask_cross_task = True
    logged_terms = ("loss_supervised", "loss_level_set_dice", "loss_level_set", "loss_intra_task",
                    "loss_cross_task", "weight_consistency", "certain_fraction")

    @property
    def needs_signed_distance_maps(self) -> bool:
        """The β term's targets: only with β > 0 and dense labels."""
        return self.level_set_weight > 0 and not self.label_manager.has_ignore_label

    def compute_loss(self, data, output, target, label_derived, num_labeled) -> Dict[str, torch.Tensor]:
        segmentation, level_set = output
        supervised = self.supervised_loss(segmentation, target, num_labeled)
        phi = foreground_channels(level_set, self.has_regions).float()
        level_set_probability = level_set_to_probability(phi, self.level_set_k)
        labels, annotated = split_ignore(self.full_resolution(target), self.label_manager.ignore_label,
                                         self.has_regions)
        labels = one_hot_foreground(labels, self.label_manager.num_segmentation_heads, self.has_regions)
        level_set_dice = squared_soft_dice_loss(level_set_probability[:num_labeled], labels, annotated)
        terms = {"loss_supervised": supervised, "loss_level_set_dice": level_set_dice}
        loss = supervised + level_set_dice
        if self.needs_signed_distance_maps:
            terms["loss_level_set"] = mean_squared_error(phi[:num_labeled], label_derived)
            loss = loss + self.level_set_weight * terms["loss_level_set"]

        start = self.consistency_start(num_labeled)
        student = self.probabilities(self.full_resolution(segmentation))
        teacher, mask = self.teacher_target_and_mask(data[start:], data.shape[0])
        intra_task = mean_squared_error(student[start:], teacher, mask)
        cross_task = mean_squared_error(level_set_probability[start:],
                                        foreground_channels(student, self.has_regions)[start:],
                                        mask if self.mask_cross_task else None)
        weight = self.ramped(self.consistency_weight)
        loss = loss + weight * (self.intra_task_factor * intra_task + cross_task)
        return {"loss": loss, **terms, "loss_intra_task": intra_task, "loss_cross_task": cross_task,
                "weight_consistency": weight, "certain_fraction": mask.mean()}


class nnUNetTrainerUGMCL_unlabeledConsistency(nnUNetTrainerUGMCL):
    """UG-MCL with both consistencies on the unlabeled patches only (half the teacher passes)."""

    consistency_on = "unlabeled"


class nnUNetTrainerUGMCL_paper(PaperScheduleMixin, nnUNetTrainerUGMCL):
    """UG-MCL's released schedule: 30 000 iterations, SGD 0.01 / 0.9 / 1e-4 at a constant rate."""

    paper_iterations = 30000
    paper_step_iterations = 0

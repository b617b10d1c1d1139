"""Uncertainty-aware Mean Teacher, UA-MT (Yu et al., MICCAI 2019; spec §3.1, §3.3, §6.4).

Mean Teacher whose consistency is restricted to voxels where the teacher is certain. The teacher runs
T = 8 stochastic passes (fresh input noise ξ and channel dropout 0.5 at the bottleneck and the last decoder
stage, as the V-Net of the paper — nnU-Net's U-Net has no dropout, ``nnunet_ext.networks`` adds it) plus the
pass that gives the target, all as one batched forward. With μ the mean of the T softmax maps:

    U = −Σ_c μ_c ln μ_c                                   (uncertainty, nats)
    M = [U < H(t)],  H(t) = (0.75 + 0.25 · exp(−5 (1 − t)²)) · ln C
    L_cons = Σ(M ⊙ (p_student − p_teacher)²) / (C · ΣM)    (normalised jointly over the batch)
    L = L_sup + w(t) · L_cons,  w(t) = 0.1 · exp(−5 (1 − t)²)

t is the fraction of training done. Consistency covers the unlabeled patches (the script the authors'
README recommends; ``consistency_on = "all"`` gives the paper-formula variant). ``uncertainty_chunk_size``
bounds the memory of the batched teacher passes.
"""
from typing import Dict

import torch

from nnunet_ext.losses import mean_squared_error
from nnunet_ext.trainers.nnUNetTrainerMeanTeacher import nnUNetTrainerMeanTeacher
from nnunet_ext.trainers.paper_schedule import PaperScheduleMixin
from nnunet_ext.training.uncertainty import certainty_mask, stochastic_teacher_passes


class nnUNetTrainerUAMT(nnUNetTrainerMeanTeacher):
    """UA-MT: Mean Teacher whose consistency keeps only the voxels the teacher is certain of (MC dropout)."""
    dropout_p = 0.5
    uncertainty_passes = 8
    uncertainty_chunk_size = None
    """Teacher samples per forward in the stochastic passes. ``None``: on a GPU as many as the student's batch
    (labeled + unlabeled), so a gradient-free teacher forward never holds more activations than the student's
    own training forward and peak memory stays that of stock nnU-Net at the same total batch plus the teacher's
    weights; on the CPU one pass per forward (faster there, see ``nnunet_ext.training.uncertainty``). 0: all
    T + 1 passes in one forward."""
    logged_terms = ("loss_supervised", "loss_consistency", "weight_consistency", "certain_fraction")

    def teacher_target_and_mask(self, x: torch.Tensor, student_batch: int):
        """Teacher probabilities (first noisy pass) and the certainty mask of the other T passes."""
        chunk = self.uncertainty_chunk_size
        if chunk is None and self.device.type == "cuda":
            chunk = student_batch
        passes = stochastic_teacher_passes(self.teacher_logits, x, self.uncertainty_passes + 1, self.has_regions,
                                           self.noise_std, self.noise_clamp, chunk)
        mask, _ = certainty_mask(passes[1:], self.training_fraction, self.label_manager.num_segmentation_heads,
                                 self.has_regions)
        return passes[0], mask

    def compute_loss(self, data, output, target, label_derived, num_labeled) -> Dict[str, torch.Tensor]:
        supervised = self.supervised_loss(output, target, num_labeled)
        start = self.consistency_start(num_labeled)
        student = self.probabilities(self.full_resolution(output)[start:])
        teacher, mask = self.teacher_target_and_mask(data[start:], data.shape[0])
        consistency = mean_squared_error(student, teacher, mask)
        weight = self.ramped(self.consistency_weight)
        return {"loss": supervised + weight * consistency, "loss_supervised": supervised,
                "loss_consistency": consistency, "weight_consistency": weight, "certain_fraction": mask.mean()}


class nnUNetTrainerUAMT_paper(PaperScheduleMixin, nnUNetTrainerUAMT):
    """UA-MT's released LA schedule: 6000 iterations, SGD 0.01 / 0.9 / 1e-4, ×0.1 every 2500 iterations."""

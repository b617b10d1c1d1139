"""Mean Teacher (Tarvainen & Valpola, NeurIPS 2017) as used for 3-D segmentation by SSL4MIS (spec §3.2).

The teacher is an exponential moving average of the student (decay 0.99). Each step the teacher sees the
unlabeled patches with clamped Gaussian noise ξ = clamp(N(0, 0.1²), ±0.2); the student sees them clean.

    L = L_sup(labeled) + w(t) · mean((p_student − p_teacher)²),   w(t) = 0.1 · exp(−5 (1 − t)²)

with t the fraction of training done. L_sup is nnU-Net's Dice + CE with deep supervision; the consistency
term is computed at full resolution on the unlabeled patches (``consistency_on = "all"`` adds the labeled
ones), on softmax (or, for region datasets, sigmoid) probabilities.

What perturbs student and teacher: the teacher's input noise and its lag (the EMA). The V-Net of the papers also
had dropout (0.5, active in both networks' training passes); nnU-Net's U-Net has none, and by default
(``dropout_p = 0``) neither has ours. ``dropout_p`` is the switch: ``nnUNetTrainerMeanTeacher_dropout`` sets 0.5
at the bottleneck and the last decoder stage, as the V-Net.
"""
from typing import Dict

import torch

from nnunet_ext.losses import mean_squared_error
from nnunet_ext.trainers.paper_schedule import PaperScheduleMixin
from nnunet_ext.trainers.semi_supervised import nnUNetTrainerSemiSupervised
from nnunet_ext.training.uncertainty import clamped_gaussian_noise


class nnUNetTrainerMeanTeacher(nnUNetTrainerSemiSupervised):
    """Mean Teacher: the student's predictions on unlabeled patches pulled towards an EMA teacher's."""
    ema_decay = 0.99
    consistency_weight = 0.1
    consistency_on = "unlabeled"
    """Which patches the consistency term covers: ``"unlabeled"`` or ``"all"``."""
    noise_std = 0.1
    noise_clamp = 0.2
    logged_terms = ("loss_supervised", "loss_consistency", "weight_consistency")

    def consistency_start(self, num_labeled: int) -> int:
        """Index of the first patch the consistency terms cover."""
        return num_labeled if self.consistency_on == "unlabeled" else 0

    def compute_loss(self, data, output, target, label_derived, num_labeled) -> Dict[str, torch.Tensor]:
        supervised = self.supervised_loss(output, target, num_labeled)
        start = self.consistency_start(num_labeled)
        student = self.probabilities(self.full_resolution(output)[start:])
        with torch.no_grad():
            teacher = self.probabilities(self.teacher_logits(
                clamped_gaussian_noise(data[start:], self.noise_std, self.noise_clamp)))
        consistency = mean_squared_error(student, teacher)
        weight = self.ramped(self.consistency_weight)
        return {"loss": supervised + weight * consistency, "loss_supervised": supervised,
                "loss_consistency": consistency, "weight_consistency": weight}


class nnUNetTrainerMeanTeacher_dropout(nnUNetTrainerMeanTeacher):
    """Mean Teacher with the V-Net's channel dropout 0.5 in student and teacher (bottleneck, last decoder stage)."""

    dropout_p = 0.5


class nnUNetTrainerMeanTeacher_paper(PaperScheduleMixin, nnUNetTrainerMeanTeacher):
    """The LA schedule of the UA-MT code base, which the DTC paper's MT baseline shares: 6000 iterations,
    SGD 0.01 / 0.9 / 1e-4, ×0.1 every 2500 iterations."""

"""MAML's "mutual learning" objective (spec §5.3, §6.6): the joint prediction and every modality branch are
supervised with nnU-Net's own loss,

    L = w_0 · L(S_joint, y) + λ · Σ_i Σ_s w_s · L(S_i^s, y^s)

with ``L`` nnU-Net's base loss (Dice + CE, or Dice + BCE for regions), ``w_s`` its deep-supervision weights (the
joint head has no deep supervision, so it gets the full-resolution weight ``w_0``) and ``λ`` the branch weight
(``λ = 1`` is the released code). There is no distillation term: the branches learn from each other through the
shared fusion and attention.
"""
from typing import Dict, List, Sequence

import torch
from torch import nn

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper


class MutualLearningLoss(nn.Module):
    """Built from the loss nnU-Net's trainer builds (its base loss in a :class:`DeepSupervisionWrapper`); takes
    the network's training output ``[S_joint, [S_1 …], …, [S_M …]]`` and nnU-Net's deep-supervision targets."""

    def __init__(self, deep_supervision_loss: DeepSupervisionWrapper, branch_names: Sequence[str],
                 branch_weight: float = 1.0) -> None:
        super().__init__()
        if not isinstance(deep_supervision_loss, DeepSupervisionWrapper):
            raise ValueError("MAML supervises every branch at every deep-supervision scale; train it with deep "
                             "supervision enabled (nnU-Net's default)")
        self.per_branch = deep_supervision_loss
        self.branch_keys = [f"loss_branch_{name}" for name in branch_names]
        self.branch_weight = branch_weight

    def terms(self, output: list, target: List[torch.Tensor]) -> Dict[str, torch.Tensor]:
        """``{"loss": L, "loss_joint": L(S_joint, y), "loss_branch_<name>": Σ_s w_s · L(S_i^s, y^s)}``."""
        joint, branches = output[0], output[1:]
        if len(branches) != len(self.branch_keys):
            raise ValueError(f"expected {len(self.branch_keys)} branch outputs, got {len(branches)}")
        terms = {"loss_joint": self.per_branch.loss(joint, target[0])}
        terms.update({key: self.per_branch(branch, target) for key, branch in zip(self.branch_keys, branches)})
        terms["loss"] = self.per_branch.weight_factors[0] * terms["loss_joint"] + self.branch_weight * sum(
            terms[key] for key in self.branch_keys)
        return terms

    def forward(self, output: list, target: List[torch.Tensor]) -> torch.Tensor:
        return self.terms(output, target)["loss"]

"""MAML, modality-aware mutual learning (Zhang et al., MICCAI 2021): one branch per co-registered modality, fused by
modality-aware attention, every branch and the fused output supervised (spec §5, mapping §6.6; DESIGN.md §8.2).

* **Network** (:class:`~nnunet_ext.networks.modality_branches.ModalityBranchUNet`): one U-Net per input channel —
  the plans' U-Net with one input channel at ``branch_width`` of the planned features (half, as the original) and
  its deep supervision —, the fusion convolution, one modality-aware attention module per modality and the joint
  head. ``nnUNetv2_predict`` rebuilds it and gets the joint logits.
* **Loss** (§5.3, :mod:`nnunet_ext.losses.mutual_learning`): ``L = w_0 · L_joint + λ · Σ_i Σ_s w_s · L_i^s``
  with nnU-Net's base loss (label- or region-based, as the dataset declares) and deep-supervision weights,
  ``λ = branch_weight`` (1, the released code).
* **Modality dropout** (spec §5.6 (b); not in the original): with probability ``modality_dropout_probability``
  a sample keeps a uniformly drawn non-empty subset of its modalities in the fusion; the others enter it as
  zero features, as absent channels do at inference (``nnunet_ext predict --missing``). Each branch still learns
  from its own channel on every sample. ``nnUNetTrainerMAML_noDropout`` is the paper's training.

Training runs on nnU-Net's loader, optimiser and schedule unchanged; the state is nnU-Net's (network, optimiser,
logs), so ``--c`` needs nothing extra. The terms logged per epoch and drawn in ``progress.png``: the joint loss
and one loss per branch, named after the dataset's channels.
"""
import re
from typing import Dict

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_ext.inference.missing_modalities import channel_names
from nnunet_ext.losses.mutual_learning import MutualLearningLoss
from nnunet_ext.networks.modality_branches import ModalityBranchUNet, reduced_width_configuration
from nnunet_ext.trainers.loss_terms import nnUNetTrainerLossTerms
from nnunet_ext.training.modality_dropout import random_present_modalities


def branch_names(dataset_json: dict) -> list:
    """One name per input channel for the logged branch losses (``T1ce``, ``FLAIR``, …; ``0``, ``1`` … when a
    channel name has nothing usable)."""
    names = [re.sub(r"\W+", "_", name).strip("_") or str(i) for i, name in enumerate(channel_names(dataset_json))]
    return names if len(set(names)) == len(names) else [str(i) for i in range(len(names))]


class nnUNetTrainerMAML(nnUNetTrainerLossTerms):
    """MAML: one reduced-width U-Net per modality, modality-aware attention fusion and a joint head, all
    supervised ("mutual learning"), trained with random modality dropout so that missing modalities can be
    predicted."""

    branch_width: float = 0.5
    """Features of each branch as a fraction of the plans' U-Net (the original: half)."""
    branch_weight: float = 1.0
    """λ: weight of the summed branch losses against the joint loss."""
    modality_dropout_probability: float = 0.5
    """Probability that a training sample fuses only a random non-empty subset of its modalities."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        self.branch_names = branch_names(dataset_json)
        self.logged_terms = ("loss_joint", *(f"loss_branch_{name}" for name in self.branch_names))
        super().__init__(plans, configuration, fold, dataset_json, device)
        if len(self.branch_names) < 2:
            raise ValueError(f"{type(self).__name__} fuses several modalities, but dataset "
                             f"{self.plans_manager.dataset_name} has one input channel; train nnUNetTrainer on it")

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        """One single-channel plans U-Net per input channel at ``branch_width``, fused (also the predictor's)."""
        branch_configuration = reduced_width_configuration(configuration_manager, cls.branch_width)
        return ModalityBranchUNet([nnUNetTrainer.build_network_architecture(
            plans_manager, branch_configuration, 1, num_output_channels, enable_deep_supervision)
            for _ in range(num_input_channels)])

    def _build_loss(self) -> MutualLearningLoss:
        """nnU-Net's loss (with its deep-supervision weights) on the joint output and on every branch."""
        return MutualLearningLoss(super()._build_loss(), self.branch_names, self.branch_weight)

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """nnU-Net's switch, applied to every branch's decoder."""
        self.trained_network.deep_supervision = enabled

    def train_step(self, batch: dict) -> dict:
        """One step on nnU-Net's batch, each sample fusing the modalities modality dropout keeps."""
        data, target = self.to_device(batch["data"]), self.to_device(batch["target"])
        present = random_present_modalities(data.shape[0], data.shape[1], self.modality_dropout_probability,
                                            data.device)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            terms: Dict[str, torch.Tensor] = self.loss.terms(self.network(data, present), target)
        return self.optimize(terms)


class nnUNetTrainerMAML_noDropout(nnUNetTrainerMAML):
    """MAML as the paper trains it: every sample fuses all of its modalities (no modality dropout)."""

    modality_dropout_probability = 0.0

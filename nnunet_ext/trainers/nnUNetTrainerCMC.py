"""CMC, cross-modality collaboration (Zhou et al., MICCAI 2024): one segmentation network learns from two unpaired,
unregistered modalities with few labels in each (spec §1, fixed reading §1.10, mapping §1.11; DESIGN.md §8.1).

The two modalities are two nnU-Net datasets planned jointly (``nnunet_ext plan_and_preprocess -d PRIMARY PARTNER
--joint``): the primary, on which ``nnUNetv2_train`` is started, and its partner. Each step draws four streams:

* ``labeled``: the primary's labeled training cases of the fold (nnU-Net's own loader);
* ``partner_labeled``: the partner's labeled cases of the same fold of *its own* split (nnU-Net's rule: its
  ``splits_final.json``, created as nnU-Net creates one if absent), with its own normalisation masks;
* ``unlabeled`` and ``partner_unlabeled``: both datasets' ``imagesTrUnlabeled`` cases, at uniformly random patch
  positions, never label-guided (spec §1.9-5).

Primary and partner patches are paired by batch index and pass through one :class:`CrossModalityUNet` (shared
weights; channel attention on each bottleneck; the sigmoid fusion gate). The objective (§1.10) is

    L = ½ (L_sup(primary) + L_sup(partner))                                   nnU-Net's Dice + CE, deep supervision
        + [t ≥ t₀] (λ_CSC(t) · L_CSC(f_p, f_q) + λ_CAC(t) · L_CAC(p_p, p_q))   on the unlabeled pairs, with gradients

with ``t`` the fraction of training done, ``t₀ = unsupervised_start = 0.7`` (the code's epoch 350 of 500),
``λ_CSC = csc_weight · exp(−5 (1 − t)²)`` and ``λ_CAC = cac_weight · ½ (cos πt + 1)``; CSC is the channel-wise
NT-Xent (τ = 0.5) on the raw encoder bottlenecks, CAC one minus the soft Dice of the two modalities' softmax at
full resolution (:mod:`nnunet_ext.losses.cross_modality`). Before ``t₀`` the unlabeled streams are not passed
through the network. A fraction ``self_pairing_probability`` of the pairs is self-paired, the partner policy of
inference. Variants: ``nnUNetTrainerCMC_sortedCSC`` (CSC on each channel's sorted values, insensitive to
where unregistered structures lie), ``nnUNetTrainerCMC_mseCAC`` (CAC as the 2024 version's squared difference);
``csc_on = "all"`` adds the labeled pairs to CSC.

``nnUNetv2_predict -d PRIMARY`` and ``-d PARTNER`` both work with the stock predictor: the two-dataset base
(:mod:`nnunet_ext.trainers.two_datasets`) also writes the partner's results folder, so each modality is predicted
with its own normalisation.
"""
from typing import Dict, Optional, Sequence

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.data.streams import StreamSpec
from nnunet_ext.losses import mean_squared_error, probabilities
from nnunet_ext.losses.cross_modality import channel_contrastive_loss, soft_dice_disagreement
from nnunet_ext.networks import CrossModalityUNet
from nnunet_ext.paths import unlabeled_preprocessed_folder
from nnunet_ext.trainers.multi_stream import Batch
from nnunet_ext.trainers.two_datasets import nnUNetTrainerTwoDatasets
from nnunet_ext.training.schedules import cosine_rampdown, sigmoid_rampup

PARTNER_LABELED, UNLABELED, PARTNER_UNLABELED = "partner_labeled", "unlabeled", "partner_unlabeled"


class nnUNetTrainerCMC(nnUNetTrainerTwoDatasets):
    """CMC: one network for two unpaired modalities (a primary and its partner dataset), supervised on both
    labeled subsets and made consistent across modalities on their unlabeled cases (CSC and CAC)."""

    unlabeled_batch_size: Optional[int] = None
    """Unlabeled patches per modality and step over all DDP ranks; ``None``: as many as labeled ones."""
    unsupervised_start: float = 0.7
    """Fraction of training from which CSC and CAC are added (the code's epoch 350 of 500)."""
    csc_weight: float = 1.0
    cac_weight: float = 1.0
    temperature: float = 0.5
    """τ of CSC's NT-Xent."""
    csc_on: str = "unlabeled"
    """Which pairs CSC covers: ``"unlabeled"`` (the code) or ``"all"`` (labeled pairs too)."""
    csc_sorted: bool = False
    """Compare each channel's sorted values (its activation distribution) instead of its map, for unregistered
    pairs (``nnUNetTrainerCMC_sortedCSC``)."""
    cac_distance: str = "dice"
    """CAC as ``"dice"`` (1 − soft Dice, the fixed reading) or ``"mse"`` (mean squared difference of the
    probabilities, the 2024 version's; ``nnUNetTrainerCMC_mseCAC``)."""
    self_pairing_probability: float = 0.5
    """Probability that a training pair is self-paired, the partner policy of ``forward(x)`` at inference."""
    logged_terms = ("loss_supervised_primary", "loss_supervised_partner", "loss_csc", "loss_cac", "weight_csc",
                    "weight_cac")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.require_option("csc_on", ("unlabeled", "all"))
        self.require_option("cac_distance", ("dice", "mse"))

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> torch.nn.Module:
        """The plans' U-Net with CMC's bottleneck fusion; also what the predictor builds (for either dataset)."""
        return CrossModalityUNet(nnUNetTrainer.build_network_architecture(
            plans_manager, configuration_manager, num_input_channels, num_output_channels, enable_deep_supervision))

    def stream_specs(self) -> Sequence[StreamSpec]:
        """The partner's labeled cases of this fold, and both datasets' unlabeled cases (random positions)."""
        partner = self.partner_view
        initial_patch_size = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[2]
        unlabeled = self.batch_size if self.unlabeled_batch_size is None else self.per_rank(self.unlabeled_batch_size)
        partner_transforms = self.training_transforms(partner.configuration_manager, partner.label_manager)
        shared = {"patch_size": self.configuration_manager.patch_size, "initial_patch_size": initial_patch_size,
                  "pin_memory": self.device.type == "cuda"}
        return [StreamSpec(PARTNER_LABELED, partner.preprocessed_dataset_folder, self.batch_size, partner_transforms,
                           partner.label_manager, identifiers=partner.do_split()[0], with_targets=True,
                           oversample_foreground_percent=self.oversample_foreground_percent, **shared),
                StreamSpec(UNLABELED, unlabeled_preprocessed_folder(self.preprocessed_dataset_folder), unlabeled,
                           self.training_transforms(), self.label_manager, **shared),
                StreamSpec(PARTNER_UNLABELED, unlabeled_preprocessed_folder(partner.preprocessed_dataset_folder),
                           unlabeled, partner_transforms, partner.label_manager, **shared)]

    @property
    def unsupervised_active(self) -> bool:
        return self.training_fraction >= self.unsupervised_start

    def unsupervised_weights(self) -> Dict[str, float]:
        """λ_CSC (sigmoid ramp-up over the run) and λ_CAC (cosine ramp-down) now (spec §1.5 (d))."""
        return {"weight_csc": self.csc_weight * sigmoid_rampup(self.training_fraction),
                "weight_cac": self.cac_weight * cosine_rampdown(self.training_fraction)}

    def compute_terms(self, batches: Dict[str, Batch]) -> Dict[str, torch.Tensor]:
        primary = self.to_device(batches["labeled"]["data"])
        partner = self.to_device(batches[PARTNER_LABELED]["data"])
        num_labeled = primary.shape[0]
        if self.unsupervised_active:
            primary = torch.cat((primary, self.to_device(batches[UNLABELED]["data"])))
            partner = torch.cat((partner, self.to_device(batches[PARTNER_UNLABELED]["data"])))
        self_paired = torch.rand(primary.shape[0], device=self.device) < self.self_pairing_probability
        f_primary, f_partner, out_primary, out_partner = self.network(primary, partner, self_paired)
        terms = {"loss_supervised_primary": self.supervised_loss(
                     out_primary, self.to_device(batches["labeled"]["target"]), num_labeled),
                 "loss_supervised_partner": self.supervised_loss(
                     out_partner, self.to_device(batches[PARTNER_LABELED]["target"]), num_labeled)}
        terms["loss"] = 0.5 * (terms["loss_supervised_primary"] + terms["loss_supervised_partner"])
        if self.unsupervised_active:
            has_regions = self.label_manager.has_regions
            weights = self.unsupervised_weights()
            csc_pairs = slice(0 if self.csc_on == "all" else num_labeled, None)
            terms["loss_csc"] = channel_contrastive_loss(f_primary[csc_pairs], f_partner[csc_pairs],
                                                         self.temperature, self.csc_sorted)
            unlabeled = slice(num_labeled, None)
            p_primary, p_partner = (probabilities(self.full_resolution(self.rows(o, unlabeled)), has_regions)
                                    for o in (out_primary, out_partner))
            terms["loss_cac"] = soft_dice_disagreement(p_primary, p_partner) if self.cac_distance == "dice" else \
                mean_squared_error(p_primary, p_partner)
            terms["loss"] = terms["loss"] + weights["weight_csc"] * terms["loss_csc"] + \
                weights["weight_cac"] * terms["loss_cac"]
            terms.update({k: torch.tensor(v) for k, v in weights.items()})
        return terms


class nnUNetTrainerCMC_sortedCSC(nnUNetTrainerCMC):
    """CMC whose CSC compares the sorted values of each channel (its activation distribution), which does not
    depend on where the two unregistered images' structures lie (spec §1.5 (b), a suggestion)."""

    csc_sorted = True


class nnUNetTrainerCMC_mseCAC(nnUNetTrainerCMC):
    """CMC with CAC as the mean squared difference of the two modalities' probabilities (the 2024 version's
    anatomical term) instead of 1 − soft Dice."""

    cac_distance = "mse"

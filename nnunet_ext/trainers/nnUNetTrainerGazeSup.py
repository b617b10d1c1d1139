"""GazeSup: weakly supervised segmentation from gaze (Zhong et al., MICCAI 2024; spec §2.5–2.9, §2.12).

The training labels are gaze pseudo-masks at L levels (``nnunet_ext convert kvasir --gaze-csv``): one ordinal
map per image whose value is the number of CRF-map thresholds reached, declared as nested regions
``gaze_level_k`` = values k…L in dataset.json. nnU-Net turns them into one binary target Y_k per level.

* **Networks** (§2.6): L independent copies of the plans' U-Net (identical initial weights, nothing shared),
  one sigmoid output each; z_k is level k's logit.
* **Loss** (§2.7):

      L = Σ_k BCE(z_k, Y_k) + λ · Σ_k C_k,        λ = ``consistency_weight`` = 3

  with BCE only (no Dice: the pseudo-masks are noisy), under nnU-Net's deep supervision, and C_k the
  multi-level consistency of :mod:`nnunet_ext.training.level_consistency` at full resolution: in ``prop`` mode (the
  paper's default) level k's *propagated* logit z̃_k — its last decoder features averaged over a 5 × 5,
  dilation-2 neighbourhood with feature affinities, through its own segmentation layer (computed as the
  equal, cheaper propagation of the bias-free logit) — is pulled towards the peers' plain predictions; in
  ``pure`` mode z_k itself is. The peers are detached.
* **Inference** (§2.9): the logits are averaged over levels and the prediction is σ(mean logit) > 0.5. The
  network in ``eval()`` mode returns the mean logit as one channel, and the trainer writes a binary label set
  into its results folder's dataset.json (background and the target, declared as the region of all ordinal
  values; :func:`nnunet_ext.gaze.binary_dataset_json`), so the stock ``nnUNetv2_predict`` writes {0, 1} masks
  at the input size. The number of levels travels in the plans copy of the results
  folder (configuration key ``nnunet_ext_gaze_levels``), read by the predictor's :meth:`build_network_architecture`.

Online validation scores each level against its own pseudo-mask (nnU-Net's pseudo Dice per region). The
final validation, like every nnU-Net tool reading the results folder, scores the binary predictions against
gaze level 1 (the loosest pseudo-mask); the true masks of the training images (labelsTrReference) are never
read here: evaluate against them with ``nnunet_ext evaluate``. The state is the L networks and the optimizer,
so ``--c`` needs nothing extra. Options are class attributes; a variant subclass changes them
(``nnUNetTrainerGazeSup_pure``).
``nnUNetTrainerGazeSup_flipsOnly`` trains with the paper's augmentation, random flips only (§2.8), instead of
nnU-Net's; ``nnUNetTrainerGazeSup_paper`` adds the paper's optimiser and 15,000-iteration schedule.
"""
from typing import Dict, List, Union

import torch

from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_ext.gaze.levels import binary_dataset_json, gaze_level_count
from nnunet_ext.losses import SummedBinaryCrossEntropy
from nnunet_ext.networks import MultiLevelUNet
from nnunet_ext.trainers.flips_only_augmentation import FlipsOnlyAugmentationMixin
from nnunet_ext.trainers.loss_terms import nnUNetTrainerLossTerms
from nnunet_ext.trainers.paper_schedule import HalfCosineLR, PaperScheduleMixin
from nnunet_ext.training.level_consistency import level_agreement, propagate

PLANS_LEVELS_KEY = "nnunet_ext_gaze_levels"
"""Configuration key, in the results folder's plans.json, holding the number of level networks."""
CONSISTENCY_MODES = ("pure", "prop")


class nnUNetTrainerGazeSup(nnUNetTrainerLossTerms):
    """GazeSup: one network per gaze pseudo-mask level, a multi-level consistency, the mean logit at inference."""
    consistency_mode: str = "prop"
    """``prop``: propagated logits pulled towards the peers (paper default); ``pure``: plain logits."""
    consistency_weight: float = 3.0
    """λ of spec §2.7."""
    propagation_kernel_size: int = 5
    propagation_dilation: int = 2
    logged_terms = ("loss_bce", "loss_consistency")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.require_option("consistency_mode", CONSISTENCY_MODES)
        if self.label_manager.has_ignore_label:
            raise NotImplementedError(f"{type(self).__name__} does not support datasets with an 'ignore' label")
        self.num_levels = gaze_level_count(dataset_json, self.label_manager)
        self.plans_manager.plans["configurations"][configuration][PLANS_LEVELS_KEY] = self.num_levels
        self.configuration_manager.configuration[PLANS_LEVELS_KEY] = self.num_levels

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        """L one-output U-Nets of the plans; in eval mode they answer the mean level logit (see module doc)."""
        num_levels = configuration_manager.configuration.get(PLANS_LEVELS_KEY)
        if num_levels is None:
            raise RuntimeError(f"the plans' configuration has no '{PLANS_LEVELS_KEY}': the GazeSup network is "
                               f"built from the plans.json that nnUNetTrainerGazeSup writes to its results folder")
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels, 1,
                                                        enable_deep_supervision)
        return MultiLevelUNet(unet, num_levels)

    def _build_loss(self):
        """nnU-Net's region loss with its deep-supervision weights, but BCE only (spec §2.12)."""
        loss = super()._build_loss()
        if isinstance(loss, DeepSupervisionWrapper):
            loss.loss = SummedBinaryCrossEntropy()
            return loss
        return SummedBinaryCrossEntropy()

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        """nnU-Net's switch, applied to every level network's decoder."""
        for level in self.trained_network.levels:
            level.decoder.deep_supervision = enabled

    def inference_dataset_json(self) -> dict:
        """Background and the gaze target: what the level-averaged inference network answers."""
        return binary_dataset_json(self.dataset_json, self.num_levels)

    def propagated_logits(self, logits: torch.Tensor, features: List[torch.Tensor]) -> torch.Tensor:
        """z̃_k = segmentation layer_k(f̃_k) for every level, computed as propagate(f_k, z_k − b_k) + b_k (equal,
        since the layer is a 1×1 convolution and the affinities sum to 1; see ``propagate``)."""
        propagated = []
        for k, level_features in enumerate(features):
            bias = self.trained_network.final_segmentation_layer(k).bias
            bias = torch.zeros(1, device=logits.device) if bias is None else bias.float()
            bias = bias.view(1, 1, *([1] * (logits.ndim - 2)))
            propagated.append(propagate(level_features, logits[:, k:k + 1] - bias, self.propagation_kernel_size,
                                        self.propagation_dilation) + bias)
        return torch.cat(propagated, 1)

    def consistency(self, output: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        """(C_1, …, C_L) at full resolution, in the configured mode."""
        features = self.trained_network.last_features()
        logits = output[0] if isinstance(output, (list, tuple)) else output
        if self.consistency_mode == "pure":
            return level_agreement(logits, logits)
        return level_agreement(self.propagated_logits(logits, features), logits)

    def compute_loss(self, output: Union[torch.Tensor, List[torch.Tensor]],
                     target: Union[torch.Tensor, List[torch.Tensor]]) -> Dict[str, torch.Tensor]:
        """Σ_k BCE(z_k, Y_k) + λ Σ_k C_k; logs the BCE sum and the mean C_k."""
        supervised = self.loss(output, target)
        consistency = self.consistency(output)
        return {"loss": supervised + self.consistency_weight * consistency.sum(), "loss_bce": supervised,
                "loss_consistency": consistency.mean()}

    def train_step(self, batch: dict) -> dict:
        """One step of all L networks on one batch, with the loss terms logged."""
        data, target = self.to_device(batch["data"]), self.to_device(batch["target"])
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            terms = self.compute_loss(self.network(data), target)
        return self.optimize(terms)

    def on_validation_epoch_start(self) -> None:
        """Online validation scores each level against its own pseudo-mask, so the networks answer per level."""
        super().on_validation_epoch_start()
        self.trained_network.returns_levels_in_eval = True

    def on_validation_epoch_end(self, val_outputs: List[dict]) -> None:
        """Back to the inference output (the mean level logit) after the online validation."""
        self.trained_network.returns_levels_in_eval = False
        super().on_validation_epoch_end(val_outputs)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's validation with the inference label set: binary exports, scored against gaze level 1."""
        trained_json, trained_labels = self.dataset_json, self.label_manager
        self.dataset_json = self.inference_dataset_json()
        self.label_manager = self.plans_manager.get_label_manager(self.dataset_json)
        self.print_to_log_file("GazeSup validation: binary predictions (mean level logit > 0) scored against the "
                               "gaze level 1 pseudo-masks (every ordinal value > 0), not true masks; evaluate "
                               "against labelsTrReference with `nnunet_ext evaluate`.", also_print_to_console=True)
        try:
            super().perform_actual_validation(save_probabilities)
        finally:
            self.dataset_json, self.label_manager = trained_json, trained_labels


class nnUNetTrainerGazeSup_pure(nnUNetTrainerGazeSup):
    """GazeSup with the ``pure`` consistency (no feature propagation)."""

    consistency_mode = "pure"


class nnUNetTrainerGazeSup_flipsOnly(FlipsOnlyAugmentationMixin, nnUNetTrainerGazeSup):
    """GazeSup with the paper's augmentation: a random flip along each image axis, nothing else (§2.8)."""


class nnUNetTrainerGazeSup_paper(PaperScheduleMixin, nnUNetTrainerGazeSup_flipsOnly):
    """GazeSup with the paper's augmentation, optimisation and inference (§2.8, §2.9): flips only; SGD lr 0.01,
    Nesterov momentum 0.99, weight decay 4e-4, half-cosine decay to 1e-4 per epoch, 15,000 iterations; no
    test-time mirroring. Still nnU-Net's: the plans' U-Net and batch (paper: batch 8), per-image z-score
    normalisation (paper: ImageNet statistics), foreground oversampling (paper: uniform), padding, Gaussian tile
    weighting, deep supervision, gradient clipping to 12, mixed precision on CUDA."""

    paper_iterations = 15000
    paper_momentum = 0.99
    paper_nesterov = True
    paper_weight_decay = 4e-4
    paper_min_lr = 1e-4

    def paper_lr_scheduler(self, optimizer: torch.optim.Optimizer) -> HalfCosineLR:
        """The half-cosine decay from 0.01 to ``paper_min_lr`` over the epochs."""
        return HalfCosineLR(optimizer, self.initial_lr, self.paper_min_lr, self.num_epochs)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        """The flips-only settings; no mirroring in the predictor and final validation (the paper's §2.9)."""
        configured = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None
        return configured

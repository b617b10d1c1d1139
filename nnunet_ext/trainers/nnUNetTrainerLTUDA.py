"""LTUDA, labeled-to-unlabeled distribution alignment (Jiang et al., MedIA; spec §3, fixes §3.10, mapping §3.11;
DESIGN.md §8.3): one multi-organ model from a union of datasets that each annotate one organ.

Per step, on nnU-Net's batch (the **weak view** ``x_w``, nnU-Net's augmentation) with each case's annotated
organs from its key:

* the EMA **teacher** (decay 0.999, ``eval()`` mode) labels ``x_w``: organ ``1 + argmax σ(z)`` where the largest
  sigmoid reaches 0.5, else background; the **masked pseudo-label** keeps the teacher's organs the case does not
  annotate and the truth for the organ it does (teacher predictions of that organ outside the truth become
  background);
* two **strong views** ``x_s1``, ``x_s2``: cross-set CutMix of the batch with itself rolled by one
  (:mod:`nnunet_ext.training.cutmix`), the same boxes applied to the partial targets and pseudo-labels;
* one student forward over ``(x_w, x_s1, x_s2)``, a view at a time (the projection head embeds only the strong
  views, and only in stage 2, where the prototype terms use them). **Stage 1** (CDA):

      L = pBCE(z_w, Y_w) + Σ_s [pBCE(z_s, onehot(Ŷ_s)) + pBCE(z_s, Y_s)]

  with pBCE the partial BCE averaged over the known entries (:func:`~nnunet_ext.losses.partial_labels.partial_bce`;
  the original sums over samples) plus ``dice_weight`` times the partial soft Dice over the same entries
  (:func:`~nnunet_ext.losses.partial_labels.partial_soft_dice`, spec §3.11's option, nnU-Net's Dice + CE; 0 is
  the paper's pBCE alone); ``Y`` the partial one-hot targets, unknown for organs a case does not annotate.
  **Stage 2** (from ``stage_two_start`` of training; CDA + PDA) adds, per strong view and prototype bank (labeled:
  annotated organs and background, unlabeled: teacher-found organs and background;
  :mod:`nnunet_ext.training.prototypes`), ``CE(O_bank, Ŷ_s) + 0.01·PPC + 0.001·PPD`` and the banks' momentum update
  (0.999) from the correctly classified pixels, each class's prototypes seeded from its pixels' embeddings when
  it first appears (the original's random start does not move within our budgets). Under DDP, stage 1 adds the
  prototype heads with weight 0, so that every parameter takes part in each step as DDP requires.

The linear head is trained at full resolution (nnU-Net's deep supervision is off, as the original). The banks
are network buffers and the teacher and the step counter are in the checkpoint, so ``--c`` restores the stage,
the teacher and the banks, and ``nnUNetv2_predict`` uses the banks; the inference classifier is
``inference_classifier`` (``"unlabeled"``, the paper's; ``nnunet_ext predict --classifier`` overrides it). The
online validation scores the threshold rule of the linear head until stage 2 has trained the banks and the
inference classifier from then on, on each case's annotated organs; no model is selected on test data.
"""
from typing import Dict, List

import torch
from torch.nn import functional as F

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager

from nnunet_ext.losses.partial_labels import partial_bce, partial_soft_dice, partial_targets
from nnunet_ext.networks.prototype_unet import BANKS, CLASSIFIERS, PrototypeUNet
from nnunet_ext.trainers.multi_stream import Batch, nnUNetTrainerMultiStream
from nnunet_ext.trainers.partial_labels import nnUNetTrainerPartialLabels
from nnunet_ext.training.cutmix import cutmix, random_keep_masks
from nnunet_ext.training.prototypes import assign_and_update, contrast_terms, seed_unseen_classes


class nnUNetTrainerLTUDA(nnUNetTrainerPartialLabels, nnUNetTrainerMultiStream):
    """LTUDA: cross-set CutMix with masked teacher pseudo-labels (stage 1), plus labeled and unlabeled prototype
    classifiers aligned with the linear head (stage 2), for datasets whose cases each annotate some organs."""

    ema_decay = 0.999
    teacher_mode = "eval"
    stage_two_start: float = 0.5
    """Fraction of training from which the prototype terms are added (the original: two runs of equal length)."""
    pseudo_label_threshold: float = 0.5
    dice_weight: float = 1.0
    """Weight of the partial soft Dice beside each pBCE of the linear head; without it (the paper's loss, 0) the
    sigmoid heads stay below the teacher's threshold for long and the teacher's background pseudo-labels
    teach the unannotated organs as background (README, Benchmarks)."""
    ppc_weight: float = 0.01
    ppd_weight: float = 0.001
    prototype_momentum: float = 0.999
    prototypes_per_class: int = 5
    embedding_dim: int = 64
    inference_classifier: str = "unlabeled"
    """Classifier of ``nnUNetv2_predict``: ``"unlabeled"`` / ``"labeled"`` prototypes or ``"linear"`` (threshold)."""
    logged_terms = ("loss_weak", "loss_strong_pseudo", "loss_strong_partial", "loss_prototype_ce", "loss_ppc",
                    "loss_ppd", "stage")

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.require_option("inference_classifier", CLASSIFIERS)
        self.enable_deep_supervision = False

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> torch.nn.Module:
        """The plans' U-Net with one output per organ, the projection head and both banks (also the predictor's)."""
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels - 1, enable_deep_supervision)
        return PrototypeUNet(unet, num_output_channels, cls.prototypes_per_class, cls.embedding_dim,
                             cls.inference_classifier)

    @property
    def in_stage_two(self) -> bool:
        return self.training_fraction >= self.stage_two_start

    def masked_pseudo_label(self, teacher_logits: torch.Tensor, target: torch.Tensor,
                            annotated: torch.Tensor) -> torch.Tensor:
        """``(B, 1, *spatial)`` labels: the teacher's organs where the case does not annotate them, the truth for
        the organs it annotates, background elsewhere (spec §3.5)."""
        probabilities = torch.sigmoid(teacher_logits.float())
        confidence, organ = probabilities.max(1, keepdim=True)
        predicted = torch.where(confidence >= self.pseudo_label_threshold, organ + 1, torch.zeros_like(organ))
        shape = (*annotated.shape, *([1] * (target.ndim - 2)))
        predicted_annotated = torch.gather(annotated.view(shape).expand(-1, -1, *target.shape[2:]), 1, predicted)
        pseudo = torch.where(predicted_annotated, torch.zeros_like(predicted), predicted)
        return torch.where(target > 0, target.long(), pseudo)

    def linear_head_loss(self, logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """pBCE + ``dice_weight`` · partial soft Dice of the organ logits on the known entries."""
        loss = partial_bce(logits, targets, valid)
        return loss + self.dice_weight * partial_soft_dice(logits, targets, valid) if self.dice_weight else loss

    def prototype_terms(self, embeddings: torch.Tensor, pseudo: torch.Tensor,
                        bank_masks: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """CE of both banks' class logits against the pseudo-label, their PPC and PPD, for one view's embeddings
        ``(B, *spatial, D)``; the banks move (classes seen for the first time are seeded from them first)."""
        network = self.trained_network
        flat_embeddings = embeddings.detach().flatten(0, -2)
        terms = {"loss_prototype_ce": 0, "loss_ppc": 0, "loss_ppd": 0}
        for bank in BANKS:
            flat_mask = bank_masks[bank].reshape(-1)
            seed_unseen_classes(flat_embeddings, flat_mask, network.bank(bank), network.seeded(bank))
            logits, scores = network.prototype_logits(embeddings, bank)
            flat_logits = logits.flatten(0, -2)
            terms["loss_prototype_ce"] = terms["loss_prototype_ce"] + F.cross_entropy(flat_logits, pseudo.reshape(-1))
            targets = assign_and_update(flat_embeddings, flat_logits.detach().argmax(1), flat_mask,
                                        network.bank(bank), self.prototype_momentum)
            ppc, ppd = contrast_terms(scores.flatten(0, -2), targets)
            terms["loss_ppc"], terms["loss_ppd"] = terms["loss_ppc"] + ppc, terms["loss_ppd"] + ppd
        return terms

    def compute_terms(self, batches: Dict[str, Batch]) -> Dict[str, torch.Tensor]:
        batch = batches["labeled"]
        x, target = self.to_device(batch["data"]), self.to_device(batch["target"])
        annotated = self.annotation_mask(batch["keys"])
        partial = partial_targets(target, annotated)
        with torch.no_grad():
            pseudo = self.masked_pseudo_label(self.teacher.network.organ_logits(x), target, annotated)
        keeps = [random_keep_masks(x.shape[0], x.shape[2:], x.device) for _ in range(2)]
        stage_two = self.in_stage_two
        views = torch.cat([x] + [cutmix(x, keep) for keep in keeps])
        organ_logits, embeddings = self.network(views, embedded_from=x.shape[0] if stage_two or self.is_ddp
                                                else len(views), passes=3)
        z_weak, *z_strong = organ_logits.chunk(3)
        e_strong = embeddings or (None, None)
        terms: Dict[str, torch.Tensor] = {"loss_weak": self.linear_head_loss(z_weak, partial["targets"],
                                                                             partial["valid"]),
                                          "loss_strong_pseudo": 0, "loss_strong_partial": 0}
        bank_masks = {"labeled": torch.where(target > 0, target.long(), torch.where(pseudo > 0, -1, 0)),
                      "unlabeled": torch.where(target > 0, -1, pseudo)}
        prototype: Dict[str, torch.Tensor] = {}
        for z, e, keep in zip(z_strong, e_strong, keeps):
            pseudo_s = cutmix(pseudo, keep)
            one_hot = F.one_hot(pseudo_s[:, 0], annotated.shape[1]).movedim(-1, 1)[:, 1:].float()
            terms["loss_strong_pseudo"] = terms["loss_strong_pseudo"] + self.linear_head_loss(
                z, one_hot, torch.ones_like(one_hot, dtype=torch.bool))
            terms["loss_strong_partial"] = terms["loss_strong_partial"] + self.linear_head_loss(
                z, cutmix(partial["targets"], keep), cutmix(partial["valid"], keep))
            if stage_two:
                for key, value in self.prototype_terms(e, pseudo_s, {b: cutmix(m, keep) for b, m in
                                                                    bank_masks.items()}).items():
                    prototype[key] = prototype.get(key, 0) + value
        terms["loss"] = terms["loss_weak"] + terms["loss_strong_pseudo"] + terms["loss_strong_partial"]
        if stage_two:
            terms.update(prototype)
            terms["loss"] = terms["loss"] + terms["loss_prototype_ce"] + self.ppc_weight * terms["loss_ppc"] + \
                self.ppd_weight * terms["loss_ppd"]
        elif self.is_ddp:
            unused = self.trained_network.prototype_logits(e_strong[0], BANKS[0])[0].sum() + \
                self.trained_network.prototype_logits(e_strong[0], BANKS[1])[0].sum()
            terms["loss"] = terms["loss"] + 0 * unused
        terms["stage"] = torch.tensor(2.0 if stage_two else 1.0)
        return terms

    def on_validation_epoch_start(self) -> None:
        """Online validation with the inference classifier once stage 2 has trained its bank (some class seeded),
        the threshold rule before (the banks are random; the epoch that ends at the stage switch trained none)."""
        super().on_validation_epoch_start()
        network = self.trained_network
        banks_trained = self.inference_classifier == "linear" or bool(network.seeded(self.inference_classifier).any())
        network.classifier = self.inference_classifier if banks_trained else "linear"

    def on_validation_epoch_end(self, val_outputs: List[dict]) -> None:
        self.trained_network.classifier = self.inference_classifier
        super().on_validation_epoch_end(val_outputs)


class nnUNetTrainerLTUDA_paper(nnUNetTrainerLTUDA):
    """LTUDA's loss and optimiser (spec §3.5, §3.7): pBCE alone, SGD lr 1e-3 without weight decay; Nesterov momentum
    0.99 and the poly decay are nnU-Net's and the original's alike."""

    dice_weight = 0.0

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3
        self.weight_decay = 0.0

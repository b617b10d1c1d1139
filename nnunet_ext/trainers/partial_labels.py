"""The base of the partial-label trainers (DESIGN.md §8.3): which classes each case of a batch annotates, and
validation that scores only those.

``nnUNetTrainerPartialLabels`` reads ``annotated_labels`` from the dataset.json (:mod:`nnunet_ext.partial_labels`)
and turns the case keys nnU-Net puts in every batch into a ``(batch, classes)`` mask (:meth:`annotation_mask`,
background always annotated). Then

* the **online validation** (nnU-Net's loss and pseudo Dice) sees the marginal logits of each case
  (:func:`~nnunet_ext.losses.partial_labels.marginal_logits`): a class a case does not annotate is neither
  predicted nor counted there, so its pseudo Dice comes from the cases that annotate it;
* the **final validation** keeps nnU-Net's predictions and replaces its ``summary.json`` by one that scores each
  case on its annotated classes (:func:`~nnunet_ext.evaluation.folders.evaluate_folders` with
  ``annotated_labels``), which ``nnUNetv2_find_best_configuration`` reads as usual.

Label-based datasets only: nnU-Net's ``ignore`` label and regions do not describe partial annotations.
"""
import os
from os.path import join
from typing import Dict, List, Sequence

import torch

from nnunet_ext.evaluation.folders import evaluate_folders
from nnunet_ext.losses.partial_labels import marginal_logits
from nnunet_ext.partial_labels import annotated_labels_of
from nnunet_ext.trainers.loss_terms import nnUNetTrainerLossTerms


class nnUNetTrainerPartialLabels(nnUNetTrainerLossTerms):
    """Base class; a method trains on :meth:`annotation_mask` of each batch."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.label_manager.has_regions or self.label_manager.has_ignore_label:
            raise ValueError(f"{type(self).__name__} trains on partially labeled datasets with plain labels; "
                             f"{self.plans_manager.dataset_name} declares regions or an 'ignore' label")
        self.annotated: Dict[str, List[int]] = annotated_labels_of(
            dataset_json, f"the dataset.json of {self.plans_manager.dataset_name}",
            [int(v) for v in self.label_manager.foreground_labels])

    def annotation_mask(self, keys: Sequence[str]) -> torch.Tensor:
        """``(len(keys), classes)`` booleans on the training device: the classes each case annotates and
        background; ``ValueError`` naming a case without an ``annotated_labels`` entry."""
        mask = torch.zeros(len(keys), self.label_manager.num_segmentation_heads, dtype=torch.bool)
        mask[:, 0] = True
        for row, key in enumerate(keys):
            if key not in self.annotated:
                raise ValueError(f"case {key} of {self.plans_manager.dataset_name} has no entry in the dataset.json's "
                                 f"annotated_labels; every case must say which classes it annotates")
            mask[row, self.annotated[key]] = True
        return mask.to(self.device, non_blocking=True)

    def validation_step(self, batch: dict) -> dict:
        """nnU-Net's validation step on each case's marginal logits (see the module docstring)."""
        network, mask = self.network, self.annotation_mask(batch["keys"])
        self.network = lambda data: marginal_logits(network(data), mask)
        try:
            return super().validation_step(batch)
        finally:
            self.network = network

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's final validation, its summary.json replaced by the scores on each case's annotated classes."""
        super().perform_actual_validation(save_probabilities)
        if self.local_rank != 0:
            return
        folder = join(self.output_folder, "validation")
        ending = self.dataset_json["file_ending"]
        cases = sorted(f[:-len(ending)] for f in os.listdir(folder) if f.endswith(ending))
        if not cases:
            return
        summary = evaluate_folders(join(self.preprocessed_dataset_folder_base, "gt_segmentations"), folder,
                                   labels=[int(v) for v in self.label_manager.foreground_labels],
                                   output_file=join(folder, "summary.json"), file_names=[c + ending for c in cases],
                                   annotated_labels={c: self.annotated[c] for c in cases})
        self.print_to_log_file("Final validation on the annotated classes of each case: mean Dice per class "
                               + ", ".join(f"{k}: {v['Dice']:.4f}" for k, v in summary["mean"].items())
                               + f"; foreground mean {summary['foreground_mean']['Dice']:.4f}")

"""The base of trainers that learn from a primary dataset and its jointly planned partner (DESIGN.md §8.1),
written once: the partner's view of the training and the partner's results folder.

``nnUNetTrainerTwoDatasets`` is the multi-stream base plus

* :attr:`partner_view`: a trainer of the same class on the partner's plans and dataset.json (built in
  ``initialize``; started on the partner, ``initialize`` refuses and names the primary). It is never trained;
  it gives the partner's folders, split (nnU-Net's ``do_split``), configuration and label manager;
* the partner's results folder, ``nnUNet_results/<partner>/<Trainer>__<plans>__<configuration>``, a real folder
  (never a symlink: the predictor reads plans and dataset.json from it): its plans.json, dataset.json and
  fingerprint at the start, every checkpoint (the same weights, with the partner's plans and dataset.json as
  ``init_args``, written atomically) with a copy of ``progress.png``, and nnU-Net's final validation on the
  partner's validation cases. So ``nnUNetv2_predict -d PARTNER``, ``nnUNetv2_find_best_configuration`` and
  ``nnUNetv2_export_model_to_zip`` work on the partner with its own normalisation.

A method subclass declares its streams (the partner's through :attr:`partner_view`) and its terms.
"""
import os
import shutil
from os.path import basename, join
from typing import Optional

import torch
from batchgenerators.utilities.file_and_folder_operations import save_json

from nnunet_ext.partners import partner_of
from nnunet_ext.trainers.loss_terms import PARTIAL_SUFFIX
from nnunet_ext.trainers.multi_stream import nnUNetTrainerMultiStream

LATEST_CHECKPOINT = "checkpoint_latest.pth"
PROGRESS_PLOT = "progress.png"


class nnUNetTrainerTwoDatasets(nnUNetTrainerMultiStream):
    """Base class; not a method by itself."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.partner_view: Optional[nnUNetTrainerTwoDatasets] = None

    def initialize(self) -> None:
        """Find the partner (refusing to start on it) and make its view, then nnU-Net's initialisation."""
        if self.is_cascaded:
            raise NotImplementedError(f"{type(self).__name__} cannot train the cascade configuration "
                                      f"{self.configuration_name}: train 3d_fullres, 3d_lowres or 2d.")
        partner_plans, partner_json = partner_of(self.plans_manager.plans, self.dataset_json, self.configuration_name)
        self.partner_view = type(self)(dict(partner_plans, continue_training=False), self.configuration_name,
                                       self.fold, partner_json, self.device)
        super().initialize()

    def on_train_start(self) -> None:
        """nnU-Net's start, plus the partner's results folder: its plans.json, dataset.json and fingerprint."""
        super().on_train_start()
        partner = self.partner_view
        if self.local_rank == 0:
            os.makedirs(partner.output_folder, exist_ok=True)
            save_json(partner.plans_manager.plans, join(partner.output_folder_base, "plans.json"), sort_keys=False)
            save_json(partner.inference_dataset_json(), join(partner.output_folder_base, "dataset.json"),
                      sort_keys=False)
            shutil.copy(join(partner.preprocessed_dataset_folder_base, "dataset_fingerprint.json"),
                        join(partner.output_folder_base, "dataset_fingerprint.json"))

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint, and the same checkpoint in the partner's results folder with the partner's
        plans and dataset.json as its ``init_args`` (written atomically too), beside a copy of ``progress.png``
        (the one training's curves; ``nnUNetv2_export_model_to_zip`` expects it in every fold)."""
        super().save_checkpoint(filename)
        if self.local_rank != 0 or self.disable_checkpointing or self.partner_view is None:
            return
        checkpoint = torch.load(filename, map_location="cpu", weights_only=False)
        checkpoint["init_args"] = self.partner_view.my_init_kwargs
        target = join(self.partner_view.output_folder, basename(filename))
        torch.save(checkpoint, target + PARTIAL_SUFFIX)
        os.replace(target + PARTIAL_SUFFIX, target)
        progress = join(self.output_folder, PROGRESS_PLOT)
        if os.path.isfile(progress):
            shutil.copy(progress, join(self.partner_view.output_folder, PROGRESS_PLOT))

    def on_train_end(self) -> None:
        """nnU-Net's end (final checkpoint, ``checkpoint_latest`` removed), mirrored in the partner's folder."""
        super().on_train_end()
        latest = join(self.partner_view.output_folder, LATEST_CHECKPOINT)
        if self.local_rank == 0 and os.path.isfile(latest):
            os.remove(latest)

    def perform_actual_validation(self, save_probabilities: bool = False) -> None:
        """nnU-Net's final validation on the primary's validation cases, then on the partner's (in its results
        folder, with its preprocessed data and ground truth), both through the inference partner policy."""
        super().perform_actual_validation(save_probabilities)
        partner = self.partner_view
        if partner is None:
            return
        partner.network, partner.batch_size = self.network, self.batch_size
        partner.inference_allowed_mirroring_axes = self.inference_allowed_mirroring_axes
        partner.perform_actual_validation(save_probabilities)

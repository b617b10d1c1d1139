"""nnU-Net's trainer for methods whose objective is a sum of named loss terms, written once (DESIGN.md §5).

``nnUNetTrainerLossTerms`` adds to nnU-Net's trainer what every method trainer of this package needs around
its own loss:

* :meth:`optimize`: the backward pass and optimizer step exactly as nnU-Net takes them (gradient scaler on
  CUDA, gradient norm clipped to 12), for a ``train_step`` that computes several terms;
* per-epoch logging of every term named in ``logged_terms`` through nnU-Net's logger (averaged over DDP
  ranks), printed to the training log and drawn as an extra panel of ``progress.png``;
* :attr:`trained_network`, the network without its DDP / ``torch.compile`` wrappers;
* :meth:`inference_dataset_json`, the dataset.json written to the results folder for ``nnUNetv2_predict``: the
  training one, unless a method's inference network answers other classes than it trains on (GazeSup).
"""
from os.path import join
from typing import Dict, List, Tuple

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import save_json
from torch import distributed as dist
from torch._dynamo import OptimizedModule

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.collate_outputs import collate_outputs
from nnunetv2.utilities.helpers import dummy_context

from nnunet_ext.progress import append_terms_panel


class nnUNetTrainerLossTerms(nnUNetTrainer):
    """Base class; a method subclass names its terms in ``logged_terms`` and returns them from its train step."""

    logged_terms: Tuple[str, ...] = ()
    """Keys of the per-step loss terms logged per epoch (besides nnU-Net's total ``loss``)."""

    def initialize(self) -> None:
        super().initialize()
        for key in self.logged_terms:
            self.logger.local_logger.my_fantastic_logging.setdefault(key, [])

    @property
    def trained_network(self) -> torch.nn.Module:
        """The trained network without DDP / torch.compile wrappers."""
        module = self.network.module if self.is_ddp else self.network
        return module._orig_mod if isinstance(module, OptimizedModule) else module

    def inference_dataset_json(self) -> dict:
        """The dataset.json the predictor reads from the results folder (labels of the inference output)."""
        return self.dataset_json

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.local_rank == 0:
            save_json(self.inference_dataset_json(), join(self.output_folder_base, "dataset.json"), sort_keys=False)

    def autocast(self):
        """Mixed precision on CUDA, as nnU-Net's own steps (autocast is slow or unsupported elsewhere)."""
        return torch.autocast(self.device.type, enabled=True) if self.device.type == "cuda" else dummy_context()

    def optimize(self, terms: Dict[str, torch.Tensor]) -> Dict[str, np.ndarray]:
        """Back-propagate ``terms['loss']`` and step the optimizer as nnU-Net does; the terms as numbers."""
        if self.grad_scaler is not None:
            self.grad_scaler.scale(terms["loss"]).backward()
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.grad_scaler.step(self.optimizer)
            self.grad_scaler.update()
        else:
            terms["loss"].backward()
            torch.nn.utils.clip_grad_norm_(self.network.parameters(), 12)
            self.optimizer.step()
        return {k: torch.as_tensor(v).detach().float().cpu().numpy() for k, v in terms.items()}

    def on_train_epoch_end(self, train_outputs: List[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        outputs = collate_outputs(train_outputs)
        for key in self.logged_terms:
            value = float(np.mean(outputs[key]))
            if self.is_ddp:
                gathered = [None] * dist.get_world_size()
                dist.all_gather_object(gathered, value)
                value = float(np.mean(gathered))
            self.logger.log(key, value, self.current_epoch)
            self.print_to_log_file(f"{key}: {np.round(value, decimals=4)}")

    def on_epoch_end(self) -> None:
        super().on_epoch_end()
        if self.local_rank == 0:
            append_terms_panel(self.output_folder, self.logger.local_logger.my_fantastic_logging, self.logged_terms)

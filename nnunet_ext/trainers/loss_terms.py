"""nnU-Net's trainer for methods whose objective is a sum of named loss terms, written once (DESIGN.md §5).

``nnUNetTrainerLossTerms`` adds to nnU-Net's trainer what every method trainer of this package needs around
its own loss:

* :meth:`optimize`: the backward pass and optimizer step exactly as nnU-Net takes them (gradient scaler on
  CUDA, gradient norm clipped to 12), for a ``train_step`` that computes several terms;
* per-epoch logging of every term named in ``logged_terms`` through nnU-Net's logger (averaged over the steps
  and the DDP ranks that computed it; NaN in an epoch where none did), printed to the training log and drawn as
  an extra panel of ``progress.png`` (:class:`~nnunet_ext.training.term_logger.TermLogger`);
* checkpoints written atomically (a temporary file renamed over the old one, so a process killed while
  writing leaves the previous checkpoint intact), carrying :meth:`method_state` inside nnU-Net's own single
  write, and restored by :meth:`load_method_state` on ``--c``;
* :attr:`trained_network`, the network without its DDP / ``torch.compile`` wrappers;
* :meth:`inference_dataset_json`, the dataset.json written to the results folder for ``nnUNetv2_predict``: the
  training one, unless a method's inference network answers other classes than it trains on (GazeSup).
"""
import math
import os
from os.path import join
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np
import torch
from batchgenerators.utilities.file_and_folder_operations import save_json
from torch import distributed as dist
from torch._dynamo import OptimizedModule

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.helpers import dummy_context

from nnunet_ext.training.term_logger import TermLogger, checkpoint_method_state

PARTIAL_SUFFIX = ".partial"
"""A checkpoint is written to ``<name>.partial`` and renamed to ``<name>`` once complete."""


class nnUNetTrainerLossTerms(nnUNetTrainer):
    """Base class; a method subclass names its terms in ``logged_terms`` and returns them from its train step."""

    logged_terms: Tuple[str, ...] = ()
    """Keys of the per-step loss terms logged per epoch (besides nnU-Net's total ``loss``)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.logger.local_logger = TermLogger(self.logged_terms, self.method_state)

    def require_option(self, name: str, choices: Tuple[str, ...]) -> None:
        """A clear error when the class attribute ``name`` (a method option) is none of ``choices``."""
        value = getattr(self, name)
        if value not in choices:
            raise ValueError(f"{type(self).__name__}.{name} must be one of {choices}, got {value!r}")

    def method_state(self) -> Optional[Dict[str, Any]]:
        """Training state beyond nnU-Net's (teacher, counters, …) to write into every checkpoint; ``None``: none."""
        return None

    def load_method_state(self, state: Optional[Dict[str, Any]]) -> None:
        """Restore what :meth:`method_state` returned when the checkpoint was written (``None``: it had none)."""

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

    def to_device(self, value: Union[torch.Tensor, List[torch.Tensor]]) -> Union[torch.Tensor, List[torch.Tensor]]:
        """A batch entry (tensor or deep-supervision list) on the training device."""
        if isinstance(value, (list, tuple)):
            return [v.to(self.device, non_blocking=True) for v in value]
        return value.to(self.device, non_blocking=True)

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

    def epoch_mean(self, train_outputs: List[dict], key: str) -> float:
        """Mean of ``key`` over the epoch's steps (and the DDP ranks) that computed it; NaN if none did."""
        values = [float(np.mean(output[key])) for output in train_outputs if key in output]
        total, count = float(np.sum(values)), len(values)
        if self.is_ddp:
            gathered: List[Tuple[float, int]] = [(0.0, 0)] * dist.get_world_size()
            dist.all_gather_object(gathered, (total, count))
            total, count = sum(t for t, _ in gathered), sum(c for _, c in gathered)
        return total / count if count else math.nan

    def on_train_epoch_end(self, train_outputs: List[dict]) -> None:
        super().on_train_epoch_end(train_outputs)
        for key in self.logged_terms:
            value = self.epoch_mean(train_outputs, key)
            self.logger.log(key, value, self.current_epoch)
            self.print_to_log_file(f"{key}: {np.round(value, decimals=4)}")

    def save_checkpoint(self, filename: str) -> None:
        """nnU-Net's checkpoint (with :meth:`method_state` inside its one write), written atomically."""
        if self.local_rank != 0 or self.disable_checkpointing:
            super().save_checkpoint(filename)
            return
        partial = filename + PARTIAL_SUFFIX
        super().save_checkpoint(partial)
        os.replace(partial, filename)

    def load_checkpoint(self, filename_or_checkpoint: str) -> None:
        """nnU-Net's restore, then the method state (also from checkpoints written before it moved into the
        logger's entry, where it was a top-level key)."""
        super().load_checkpoint(filename_or_checkpoint)
        state = self.logger.local_logger.loaded_state
        if state is None and self.method_state() is not None:
            state = checkpoint_method_state(torch.load(filename_or_checkpoint, map_location="cpu", weights_only=False))
        self.load_method_state(state)

"""The original papers' optimisation schedules, for the ``*_paper`` variants of our trainers.

nnU-Net's defaults (SGD 0.01, Nesterov momentum 0.99, weight decay 3e-5, poly decay, 1000 × 250 iterations)
drive the main trainers. The ``_paper`` variants use what the original code ran instead: for the
semi-supervised methods (spec §7) SGD lr 0.01, momentum 0.9, weight decay 1e-4, a fixed number of iterations,
and a step decay (×0.1 every 2500 iterations, DTC / UA-MT on LA) or a constant rate (UG-MCL); for GazeSup
(spec §2.8) SGD lr 0.01, Nesterov momentum 0.99, weight decay 4e-4 and a half-cosine decay to 1e-4 over
15,000 iterations. The ramps stay fractions of training, which over the paper's iteration count is exactly
the original ramp.
"""
import math
from typing import Tuple, Union

import torch

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer


class StepDecayLR:
    """lr = base · gamma^⌊iterations done / step_iterations⌋, stepped once per epoch like nnU-Net's
    scheduler (``step(epoch)``); ``step_iterations = 0`` keeps the rate constant."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, iterations_per_epoch: int,
                 step_iterations: int, gamma: float = 0.1) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.iterations_per_epoch = iterations_per_epoch
        self.step_iterations = step_iterations
        self.gamma = gamma

    def step(self, epoch: int) -> None:
        decays = (epoch * self.iterations_per_epoch) // self.step_iterations if self.step_iterations else 0
        for group in self.optimizer.param_groups:
            group["lr"] = self.base_lr * self.gamma ** decays


class HalfCosineLR:
    """lr = min_lr + (base − min_lr) · (1 + cos(π · epoch / epochs)) / 2, stepped once per epoch as the GazeSup
    code does (no warm-up): base at epoch 0, min_lr after the last."""

    def __init__(self, optimizer: torch.optim.Optimizer, base_lr: float, min_lr: float, epochs: int) -> None:
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.min_lr = min_lr
        self.epochs = epochs

    def step(self, epoch: int) -> None:
        lr = self.min_lr + (self.base_lr - self.min_lr) * (1 + math.cos(math.pi * epoch / self.epochs)) / 2
        for group in self.optimizer.param_groups:
            group["lr"] = lr


class PaperScheduleMixin(nnUNetTrainer):
    """Mixed in before a method trainer: ``class nnUNetTrainerDTC_paper(PaperScheduleMixin, nnUNetTrainerDTC)``.
    The class attributes are the paper's optimiser; ``paper_lr_scheduler`` its decay."""

    paper_iterations = 6000
    paper_step_iterations = 2500
    """Iterations between ×0.1 decays; 0 for a constant learning rate."""
    paper_momentum = 0.9
    paper_nesterov = False
    paper_weight_decay = 1e-4

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 0.01
        self.weight_decay = self.paper_weight_decay
        self.num_epochs = math.ceil(self.paper_iterations / self.num_iterations_per_epoch)

    def paper_lr_scheduler(self, optimizer: torch.optim.Optimizer) -> Union[StepDecayLR, HalfCosineLR]:
        """The ×0.1 step decay (or constant rate) of the semi-supervised papers' code."""
        return StepDecayLR(optimizer, self.initial_lr, self.num_iterations_per_epoch, self.paper_step_iterations)

    def configure_optimizers(self) -> Tuple[torch.optim.SGD, Union[StepDecayLR, HalfCosineLR]]:
        """SGD with the paper's momentum, Nesterov flag and weight decay, and the paper's decay."""
        optimizer = torch.optim.SGD(self.network.parameters(), self.initial_lr, momentum=self.paper_momentum,
                                    nesterov=self.paper_nesterov, weight_decay=self.weight_decay)
        return optimizer, self.paper_lr_scheduler(optimizer)

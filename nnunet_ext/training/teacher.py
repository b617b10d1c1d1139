"""Exponential-moving-average teacher (Tarvainen & Valpola, "Mean teachers are better role models", 2017).

After every optimizer step ``θ_t ← α θ_t + (1 − α) θ_s`` with ``α = min(1 − 1/(step + 1), decay)``, where
``step`` counts the optimizer steps done before this update (spec §1.2): the first update copies the
student, α reaches ``decay`` after ``1/(1 − decay) − 1`` steps. Unlike the original code we average the
floating-point buffers too and copy the integer ones, so a teacher with running statistics stays consistent. The update is one fused ``lerp`` over all tensors (one pass over memory).
"""
from typing import Dict

import torch
from torch import nn


class EMATeacher:
    """Holds the teacher network, a gradient-free copy of the student architecture."""

    def __init__(self, teacher_network: nn.Module, student_network: nn.Module, decay: float = 0.99) -> None:
        self.network = teacher_network
        self.decay = decay
        self.network.load_state_dict(student_network.state_dict())
        for p in self.network.parameters():
            p.requires_grad_(False)

    def alpha(self, step: int) -> float:
        """The averaging weight of the teacher for the update after ``step`` earlier optimizer steps."""
        return min(1.0 - 1.0 / (step + 1), self.decay)

    @torch.no_grad()
    def update(self, student_network: nn.Module, step: int) -> None:
        """One EMA update from the student's current parameters and buffers."""
        weight = 1.0 - self.alpha(step)
        averaged = [(t, s) for t, s in zip(self.network.parameters(), student_network.parameters())]
        averaged += [(t, s) for t, s in zip(self.network.buffers(), student_network.buffers())
                     if t.dtype.is_floating_point]
        if averaged:
            teacher_tensors, student_tensors = zip(*averaged)
            torch._foreach_lerp_(list(teacher_tensors), [s.detach() for s in student_tensors], weight)
        for t, s in zip(self.network.buffers(), student_network.buffers()):
            if not t.dtype.is_floating_point:
                t.copy_(s)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return self.network.state_dict()

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        self.network.load_state_dict(state)

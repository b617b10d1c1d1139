"""Weight schedules expressed as functions of the fraction of training done.

All semi-supervised papers here ramp their unsupervised weight with the sigmoid-shaped curve of Laine &
Aila ("Temporal ensembling", 2017): ``exp(-5 (1 - t)^2)`` over the whole run (spec §1.1: in every original
repository 150·R equals the iteration count). Expressing it as a fraction of training makes the same
trainer work for a 5-epoch smoke run and for a 1000-epoch run.
"""
import math

import numpy as np


def sigmoid_rampup(fraction: float, rampup_fraction: float = 1.0) -> float:
    """``exp(-5 (1 - min(fraction / rampup_fraction, 1))^2)``: starts at exp(-5) ≈ 0.0067, reaches 1 at
    ``fraction == rampup_fraction`` and stays there. ``rampup_fraction == 0`` means no ramp (always 1)."""
    if rampup_fraction <= 0:
        return 1.0
    phase = 1.0 - float(np.clip(fraction / rampup_fraction, 0.0, 1.0))
    return math.exp(-5.0 * phase * phase)


def training_fraction(optimizer_steps: int, num_epochs: int, num_iterations_per_epoch: int) -> float:
    """Fraction of the planned optimizer steps already done, in [0, 1]."""
    total = max(1, num_epochs * num_iterations_per_epoch)
    return min(1.0, optimizer_steps / total)


def cosine_rampdown(fraction: float) -> float:
    """``½ (cos(π t) + 1)`` at ``t = fraction`` of training: 1 at the start, 0 at the end (CMC's weight of its
    anatomical consistency, spec §1.5 (d))."""
    return 0.5 * (math.cos(math.pi * float(np.clip(fraction, 0.0, 1.0))) + 1.0)

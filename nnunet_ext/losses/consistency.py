"""Consistency between two predictions (Mean Teacher's softmax-MSE, UA-MT's masked MSE, DTC's dual-task term
and level-set regression; semi-supervised spec §1.4, §3.1)."""
from typing import Optional

import torch


def mean_squared_error(prediction: torch.Tensor, target: torch.Tensor,
                       mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean squared difference (Mean Teacher's softmax-MSE, DTC's level-set regression and dual-task terms).

    Without a mask: the mean over every element. With a mask (UA-MT, Eq. of §3.1 step 7):
    ``Σ(M ⊙ D) / (C · ΣM)``, i.e. the mean over the channels and the kept voxels of the whole batch; the
    mask broadcasts over the channels when it has one channel.
    """
    squared = (prediction - target) ** 2
    if mask is None:
        return squared.mean()
    mask = mask.to(squared.dtype).expand_as(squared)
    return (mask * squared).sum() / (mask.sum() + 1e-16)

"""Soft Dice losses not in nnU-Net (semi-supervised spec §1.4)."""
from typing import Optional

import torch


def squared_soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, mask: Optional[torch.Tensor] = None,
                           smooth: float = 1e-5) -> torch.Tensor:
    """V-Net style soft Dice loss ``1 − (2Σpg + ε)/(Σp² + Σg² + ε)`` per channel, computed jointly over the
    batch and the voxels, averaged over channels (spec §1.4: the UA-MT/DTC/UG-MCL Dice; pass only the
    foreground channels). With ``mask`` (``(B, 1, ...)``, 1 = annotated) only the annotated voxels count, as
    nnU-Net's Dice does with an ignore label."""
    dims = [0] + list(range(2, probs.ndim))
    target = target.to(probs.dtype)
    if mask is not None:
        mask = mask.to(probs.dtype)
        probs, target = probs * mask, target * mask
    intersection = (probs * target).sum(dims)
    denominator = (probs * probs).sum(dims) + (target * target).sum(dims)
    return (1 - (2 * intersection + smooth) / (denominator + smooth)).mean()

"""Loss primitives shared by the trainers (semi-supervised spec §1.4, §3.1, §4.3; GazeSup spec §2.7).

They work on batched network outputs ``(B, C, *spatial)`` in float32 and on either label-based (softmax)
or region-based (sigmoid) nnU-Net configurations.
"""
from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F


def probabilities(logits: torch.Tensor, has_regions: bool) -> torch.Tensor:
    """Class probabilities of batched logits: softmax over channels, or per-region sigmoid."""
    logits = logits.float()
    return torch.sigmoid(logits) if has_regions else torch.softmax(logits, dim=1)


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


def squared_soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """V-Net style soft Dice loss ``1 − (2Σpg + ε)/(Σp² + Σg² + ε)`` per channel, computed jointly over the
    batch and the voxels, averaged over channels (spec §1.4: the UA-MT/DTC/UG-MCL Dice; pass only the
    foreground channels)."""
    dims = [0] + list(range(2, probs.ndim))
    target = target.to(probs.dtype)
    intersection = (probs * target).sum(dims)
    denominator = (probs * probs).sum(dims) + (target * target).sum(dims)
    return (1 - (2 * intersection + smooth) / (denominator + smooth)).mean()


def one_hot_foreground(target: torch.Tensor, num_output_channels: int, has_regions: bool) -> torch.Tensor:
    """Binary foreground maps in the layout of the network's foreground channels.

    Label-based: ``target`` is ``(B, 1, ...)`` integer labels 0..C-1 → ``(B, C-1, ...)`` one-hot without
    background. Region-based: ``target`` is already ``(B, R, ...)`` one-hot regions and is returned as is.
    """
    if has_regions:
        return target.float()
    labels = torch.arange(1, num_output_channels, device=target.device).view(1, -1, *([1] * (target.ndim - 2)))
    return (target == labels).float()


def foreground_channels(tensor: torch.Tensor, has_regions: bool) -> torch.Tensor:
    """The channels of a network output that describe foreground: all regions, or classes 1..C-1."""
    return tensor if has_regions else tensor[:, 1:]


class SummedBinaryCrossEntropy(nn.Module):
    """GazeSup's supervised loss Σ_i BCE(z_i, Y_i) (spec §2.7): binary cross-entropy with logits, averaged over
    the batch and the pixels of each output channel (one channel per level) and summed over the channels.
    Region targets of nnU-Net arrive as ``(B, L, ...)`` binary maps."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_element = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
        return per_element.transpose(0, 1).flatten(1).mean(1).sum()

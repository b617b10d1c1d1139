"""What the losses need from a network output: probabilities, foreground channels, one-hot targets.

They work on batched outputs ``(B, C, *spatial)`` and on either label-based (softmax) or region-based
(sigmoid) nnU-Net configurations, in float32.
"""
from typing import Optional, Tuple

import torch


def probabilities(logits: torch.Tensor, has_regions: bool) -> torch.Tensor:
    """Class probabilities of batched logits: softmax over channels, or per-region sigmoid."""
    logits = logits.float()
    return torch.sigmoid(logits) if has_regions else torch.softmax(logits, dim=1)


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


def split_ignore(target: torch.Tensor, ignore_label: Optional[int],
                 has_regions: bool) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """An nnU-Net target without its ignore label, and the mask of annotated voxels ``(B, 1, ...)`` (``None``
    without an ignore label).

    Label-based: ignored voxels carry the ignore value; they become background (0) and are masked. Region-based:
    nnU-Net appends the ignore region as the last channel; it is split off and inverted into the mask.
    """
    if ignore_label is None:
        return target, None
    if has_regions:
        return target[:, :-1], 1 - target[:, -1:].float()
    annotated = target != ignore_label
    return torch.where(annotated, target, torch.zeros_like(target)), annotated.float()

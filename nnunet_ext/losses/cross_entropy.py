"""Cross-entropy losses not in nnU-Net (GazeSup spec §2.7)."""
import torch
from torch import nn
from torch.nn import functional as F


class SummedBinaryCrossEntropy(nn.Module):
    """GazeSup's supervised loss Σ_i BCE(z_i, Y_i) (spec §2.7): binary cross-entropy with logits, averaged over
    the batch and the pixels of each output channel (one channel per level) and summed over the channels.
    Region targets of nnU-Net arrive as ``(B, L, ...)`` binary maps."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_element = F.binary_cross_entropy_with_logits(logits.float(), target.float(), reduction="none")
        return per_element.transpose(0, 1).flatten(1).mean(1).sum()

"""Extra output heads beside a U-Net's segmentation layer.

An :class:`OutputHead` is a 1×1(×1) convolution on the decoder's last features, like nnU-Net's own segmentation
layer. Its convolution is registered under ``seg_layers``, the name nnU-Net gives its output layers, so that
nnU-Net's ``-pretrained_weights`` transfer (which copies every parameter except those of ``.seg_layers.``) loads
a stock nnU-Net checkpoint into a network with extra heads: the heads start fresh, as nnU-Net's own segmentation
layers do.
"""
from typing import Dict, Type

import torch
from torch import nn

PRETRAINED_SKIP_MARKER = ".seg_layers."
"""The substring by which nnU-Net's ``load_pretrained_weights`` recognises layers it does not transfer."""


class OutputHead(nn.Module):
    """``conv_type(in_channels, out_channels, 1)`` on decoder features ``(B, in_channels, ...)``."""

    def __init__(self, conv_type: Type[nn.Module], in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.seg_layers = nn.ModuleList([conv_type(in_channels, out_channels, 1)])

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.seg_layers[0](features)


def renamed_state_dict(state_dict: Dict[str, torch.Tensor], prefix: str, renames: Dict[str, str]) -> None:
    """Rename, in place, the keys of ``state_dict`` below ``prefix`` that start with an old name of ``renames``
    (``{old_start: new_start}``): how a module keeps loading checkpoints written before its keys moved."""
    for key in list(state_dict):
        if not key.startswith(prefix):
            continue
        local = key[len(prefix):]
        for old, new in renames.items():
            if local.startswith(old):
                state_dict[prefix + new + local[len(old):]] = state_dict.pop(key)
                break

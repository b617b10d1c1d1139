"""GazeSup's networks (spec §2.6): L independent copies of the plans' U-Net with one sigmoid output each, all
starting from identical weights.

In training the module returns their logits stacked as nnU-Net's region outputs ``(B, L, ...)`` (per
deep-supervision scale); in ``eval()`` mode it returns the mean level logit ``(B, 1, ...)``, which the stock
predictor, given one region as label set, turns into σ(mean logit) > 0.5: exactly GazeSup's inference rule. The
full-resolution decoder features of every level (for the ``prop`` consistency) are read with
:class:`~nnunet_ext.networks.feature_taps.DecoderFeatureTap`.
"""
from copy import deepcopy
from typing import List, Union

import torch
from torch import nn

from nnunet_ext.networks.feature_taps import DecoderFeatureTap


class MultiLevelUNet(nn.Module):
    """L independent U-Nets, one per gaze level (spec §2.6: the first built, the others deep copies of it)."""

    def __init__(self, unet: nn.Module, num_levels: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList([unet] + [deepcopy(unet) for _ in range(num_levels - 1)])
        self._taps = [DecoderFeatureTap(level.decoder) for level in self.levels]
        self.returns_levels_in_eval = False
        """Whether ``eval()`` mode returns the per-level logits as training does (nnU-Net's online validation
        scores each level against its own pseudo-mask) instead of the inference logits."""

    def last_features(self) -> List[torch.Tensor]:
        """Per level, the full-resolution decoder features of the last forward pass."""
        return [tap.pop() for tap in self._taps]

    def final_segmentation_layer(self, level: int) -> nn.Module:
        """The 1×1 convolution that turns level ``level``'s features into its logit."""
        return self.levels[level].decoder.seg_layers[-1]

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        outputs = [level(x) for level in self.levels]
        if not self.training:
            self.last_features()
        if self.training or self.returns_levels_in_eval:
            if isinstance(outputs[0], (list, tuple)):
                return [torch.cat(scale, 1) for scale in zip(*outputs)]
            return torch.cat(outputs, 1)
        full = [o[0] if isinstance(o, (list, tuple)) else o for o in outputs]
        return torch.stack(full).mean(0)

"""The plans' U-Net with what the semi-supervised methods add to it (Mean Teacher, UA-MT, DTC, UG-MCL).

* Channel dropout at the bottleneck and on the last decoder stage, as the V-Net of UA-MT/DTC had
  (``Dropout3d(0.5)``; spec §1.6, §6.4). nnU-Net's U-Net has none, and Monte-Carlo uncertainty needs a
  stochastic network. Dropout is active in ``train()`` mode only, so inference is deterministic.
* A level-set head (DTC, UG-MCL; spec §6.3): a 1×1(×1) convolution + tanh on the last decoder stage's
  features, beside the segmentation head, one channel per output channel.

The U-Net's encoder and decoder are this module's own children, so its parameters carry the stock keys
(``encoder.…``, ``decoder.…``) and nnU-Net's ``-pretrained_weights`` loads a stock checkpoint into it; the
level-set head is an :class:`~nnunet_ext.networks.heads.OutputHead` and starts fresh. Checkpoints written
before this layout (keys ``unet.…`` and ``level_set_head.weight``) load unchanged.

In ``eval()`` mode the module returns exactly what the U-Net returns (one logits tensor when deep supervision
is off), which is what nnU-Net's predictor expects; in ``train()`` mode with a level-set head it returns
``(segmentation_output, level_set)``.
"""
from typing import List, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from nnunet_ext.networks.feature_taps import DecoderFeatureTap
from nnunet_ext.networks.heads import OutputHead, renamed_state_dict

PRE_LAYOUT_KEYS = {"unet.": "", "level_set_head.weight": "level_set_head.seg_layers.0.weight",
                   "level_set_head.bias": "level_set_head.seg_layers.0.bias"}
"""State-dict keys of checkpoints written before the encoder and decoder became direct children → today's."""

SegmentationOutput = Union[torch.Tensor, List[torch.Tensor]]


class SemiSupervisedUNet(nn.Module):
    """Built from a ``dynamic_network_architectures`` U-Net (``encoder.stages``, ``decoder.stages``,
    ``decoder.seg_layers``), whose encoder and decoder it takes over."""

    def __init__(self, unet: nn.Module, dropout_p: float = 0.0, num_level_set_channels: int = 0) -> None:
        super().__init__()
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.dropout_p = dropout_p
        final_conv = unet.decoder.seg_layers[-1]
        self.level_set_head = (OutputHead(type(final_conv), final_conv.in_channels, num_level_set_channels)
                               if num_level_set_channels > 0 else None)
        if dropout_p > 0:
            self.encoder.stages[-1].register_forward_hook(self._drop_out)
        self._last_features = DecoderFeatureTap(self.decoder, self._dropped_out if dropout_p > 0 else None)
        self.register_load_state_dict_pre_hook(self._accept_pre_layout_keys)

    @staticmethod
    def _accept_pre_layout_keys(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
        renamed_state_dict(state_dict, prefix, PRE_LAYOUT_KEYS)

    @property
    def extra_heads(self) -> List[str]:
        """Names of the heads a stock nnU-Net network does not have."""
        return [] if self.level_set_head is None else ["level_set_head"]

    def _dropped_out(self, features: torch.Tensor) -> torch.Tensor:
        drop = F.dropout3d if features.ndim == 5 else F.dropout2d
        return drop(features, self.dropout_p, self.training)

    def _drop_out(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return self._dropped_out(output)

    def forward(self, x: torch.Tensor) -> Union[SegmentationOutput, Tuple[SegmentationOutput, torch.Tensor]]:
        segmentation = self.decoder(self.encoder(x))
        features = self._last_features.pop()
        if self.level_set_head is None or not self.training:
            return segmentation
        return segmentation, torch.tanh(self.level_set_head(features))

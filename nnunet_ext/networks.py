"""The plans' U-Net with what the semi-supervised methods add to it, as one module the stock predictor loads.

* Channel dropout at the bottleneck and on the last decoder stage, as the V-Net of UA-MT/DTC had
  (``Dropout3d(0.5)``; spec §1.6, §6.4). nnU-Net's U-Net has none, and Monte-Carlo uncertainty needs a
  stochastic network. Dropout is active in ``train()`` mode only, so inference is deterministic.
* A level-set head (DTC, UG-MCL; spec §6.3): a 1×1(×1) convolution + tanh on the last decoder stage's
  features, beside the segmentation head, one channel per output channel.

The decoder's stage features are not returned by ``dynamic_network_architectures``; forward hooks on the
encoder's last stage and the decoder's last stage read (and drop out) them without re-implementing the
U-Net. In ``eval()`` mode the module returns exactly what the wrapped U-Net returns (one logits tensor when
deep supervision is off), which is what nnU-Net's predictor expects; in ``train()`` mode with a level-set
head it returns ``(segmentation_output, level_set)``.
"""
from typing import Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F


class SemiSupervisedUNet(nn.Module):
    """Wraps a ``dynamic_network_architectures`` U-Net (``encoder.stages``, ``decoder.stages``,
    ``decoder.seg_layers``)."""

    def __init__(self, unet: nn.Module, dropout_p: float = 0.0, num_level_set_channels: int = 0) -> None:
        super().__init__()
        self.unet = unet
        self.dropout_p = dropout_p
        final_conv = unet.decoder.seg_layers[-1]
        self.level_set_head = (type(final_conv)(final_conv.in_channels, num_level_set_channels, 1)
                               if num_level_set_channels > 0 else None)
        self._last_features: Optional[torch.Tensor] = None
        if dropout_p > 0:
            unet.encoder.stages[-1].register_forward_hook(self._drop_out)
        unet.decoder.stages[-1].register_forward_hook(self._remember_last_features)

    @property
    def decoder(self) -> nn.Module:
        """The U-Net's decoder, so nnU-Net's ``set_deep_supervision_enabled`` works unchanged."""
        return self.unet.decoder

    def _drop_out(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        drop = F.dropout3d if output.ndim == 5 else F.dropout2d
        return drop(output, self.dropout_p, self.training)

    def _remember_last_features(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.dropout_p > 0:
            output = self._drop_out(module, inputs, output)
        self._last_features = output
        return output

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list, Tuple[Union[torch.Tensor, list], torch.Tensor]]:
        segmentation = self.unet(x)
        features, self._last_features = self._last_features, None
        if self.level_set_head is None or not self.training:
            return segmentation
        return segmentation, torch.tanh(self.level_set_head(features))

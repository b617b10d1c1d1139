"""The plans' U-Net with what the methods add to it, as modules the stock predictor loads.

``SemiSupervisedUNet`` (Mean Teacher, UA-MT, DTC, UG-MCL):

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

``MultiLevelUNet`` (GazeSup; spec §2.6): L independent copies of the plans' U-Net with one sigmoid output
each, all starting from identical weights. In training it returns their logits stacked as nnU-Net's region
outputs ``(B, L, ...)`` (per deep-supervision scale); in ``eval()`` mode it returns the mean level logit
``(B, 1, ...)``, which the stock predictor, given one region as label set, turns into σ(mean logit) > 0.5:
exactly GazeSup's inference rule.
"""
from copy import deepcopy
from typing import List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F


class DecoderFeatureTap:
    """Forward hook on a U-Net's last decoder stage: keeps its output, the full-resolution features that the
    final 1×1 segmentation layer reads, optionally transformed (e.g. dropped out) on the way."""

    def __init__(self, unet: nn.Module, transform=None) -> None:
        self.transform = transform
        self.features: Optional[torch.Tensor] = None
        unet.decoder.stages[-1].register_forward_hook(self)

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            output = self.transform(output)
        self.features = output
        return output

    def pop(self) -> Optional[torch.Tensor]:
        """The features of the last forward pass, forgotten here so they are not kept alive."""
        features, self.features = self.features, None
        return features


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
        if dropout_p > 0:
            unet.encoder.stages[-1].register_forward_hook(self._drop_out)
        self._last_features = DecoderFeatureTap(unet, self._dropped_out if dropout_p > 0 else None)

    @property
    def decoder(self) -> nn.Module:
        """The U-Net's decoder, so nnU-Net's ``set_deep_supervision_enabled`` works unchanged."""
        return self.unet.decoder

    def _dropped_out(self, features: torch.Tensor) -> torch.Tensor:
        drop = F.dropout3d if features.ndim == 5 else F.dropout2d
        return drop(features, self.dropout_p, self.training)

    def _drop_out(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        return self._dropped_out(output)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, list, Tuple[Union[torch.Tensor, list], torch.Tensor]]:
        segmentation = self.unet(x)
        features = self._last_features.pop()
        if self.level_set_head is None or not self.training:
            return segmentation
        return segmentation, torch.tanh(self.level_set_head(features))


class MultiLevelUNet(nn.Module):
    """L independent U-Nets, one per gaze level (spec §2.6: the first built, the others deep copies of it)."""

    def __init__(self, unet: nn.Module, num_levels: int) -> None:
        super().__init__()
        self.levels = nn.ModuleList([unet] + [deepcopy(unet) for _ in range(num_levels - 1)])
        self._taps = [DecoderFeatureTap(level) for level in self.levels]
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

"""Reading a U-Net's decoder features without re-implementing the U-Net.

``dynamic_network_architectures`` U-Nets return only their segmentation logits. The methods need the
full-resolution decoder features that the final 1×1 segmentation layer reads (DTC's level-set head, GazeSup's
feature propagation); a forward hook on the decoder's last stage keeps them, optionally transformed on the way
(channel dropout of UA-MT's V-Net).
"""
from typing import Callable, Optional

import torch
from torch import nn


class DecoderFeatureTap:
    """Forward hook on a U-Net's last decoder stage: keeps its output, the full-resolution features that the
    final 1×1 segmentation layer reads, optionally transformed (e.g. dropped out) on the way."""

    def __init__(self, decoder: nn.Module, transform: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> None:
        self.transform = transform
        self.features: Optional[torch.Tensor] = None
        decoder.stages[-1].register_forward_hook(self)

    def __call__(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> torch.Tensor:
        if self.transform is not None:
            output = self.transform(output)
        self.features = output
        return output

    def pop(self) -> Optional[torch.Tensor]:
        """The features of the last forward pass, forgotten here so they are not kept alive."""
        features, self.features = self.features, None
        return features

"""The plans' U-Net shared by two unpaired modalities, with CMC's cross-modality fusion at the bottleneck
(Zhou et al., MICCAI 2024; spec §1.4, §1.10, §1.11).

One encoder and one decoder serve both modalities (shared weights). Between them, at the bottleneck ``f_m`` of
each modality ``m``:

* **channel attention** (the DANet channel-attention block the code calls "MIA"): for ``X = f_m`` as
  ``C × N``, ``A = softmax(rowmax(XXᵀ) − XXᵀ)``, ``a_m = γ·AX + X`` with a learnable scalar γ starting at 0;
* the **fusion gate** ``g = σ(conv(conv-norm-nonlin(concat(a_primary, a_partner))))``, one gate per pair, in
  (0, 1). The code ends its second convolution with a ReLU before the sigmoid, which confines the gate to
  [0.5, 1); here the last convolution is linear so the gate spans (0, 1);
* the **merged bottleneck** ``z_m = conv1×1(ReLU(GroupNorm(concat(g, a_m))))`` that the decoder receives in
  place of ``f_m``; the skips are the modality's own.

Pairs are formed by batch index. A pair whose ``self_paired`` flag is set uses the patch itself as its partner
(``concat(a_m, a_m)``); this **self-pairing** is the partner policy of inference (``forward(x)`` with one input,
which is what nnU-Net's predictor calls), so a prediction never depends on another image. Training flags a
fraction of its pairs, so the network learns the policy it is evaluated with.

The encoder and decoder are this module's own children, so their parameters carry the stock keys
(``encoder.…``, ``decoder.…``) and ``decoder.deep_supervision`` is nnU-Net's switch.
"""
import math
from typing import List, Optional, Tuple, Union

import torch
from torch import nn

SegmentationOutput = Union[torch.Tensor, List[torch.Tensor]]
PairOutput = Tuple[torch.Tensor, torch.Tensor, SegmentationOutput, SegmentationOutput]
GROUP_NORM_GROUPS = 16
"""GroupNorm groups of the merged bottleneck in the code (used where the channel count allows)."""


class ChannelAttention(nn.Module):
    """DANet's channel-attention module on a ``(B, C, *spatial)`` map, computed in float32 (``XXᵀ`` sums over
    every voxel and overflows half precision)."""

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        with torch.autocast(features.device.type, enabled=False):
            x = features.float().flatten(2)
            energy = torch.bmm(x, x.transpose(1, 2))
            attention = torch.softmax(energy.amax(-1, keepdim=True) - energy, dim=-1)
            attended = torch.bmm(attention, x).view_as(features)
        return (self.gamma * attended + features.float()).to(features.dtype)


class CrossModalityUNet(nn.Module):
    """Built from a ``dynamic_network_architectures`` U-Net (``encoder.stages``, ``decoder``), whose encoder and
    decoder it takes over; the fusion modules use the encoder's convolution, normalisation and nonlinearity."""

    def __init__(self, unet: nn.Module) -> None:
        super().__init__()
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        encoder = unet.encoder
        channels = encoder.output_channels[-1]
        conv, kernel = encoder.conv_op, encoder.kernel_sizes[-1]
        padding = [(k - 1) // 2 for k in kernel]
        self.channel_attention = ChannelAttention()
        self.fusion_gate = nn.Sequential(
            conv(2 * channels, channels, kernel, padding=padding, bias=encoder.conv_bias),
            encoder.norm_op(channels, **(encoder.norm_op_kwargs or {})),
            encoder.nonlin(**(encoder.nonlin_kwargs or {})),
            conv(channels, channels, kernel, padding=padding, bias=True),
            nn.Sigmoid())
        self.merge = nn.Sequential(nn.GroupNorm(math.gcd(GROUP_NORM_GROUPS, 2 * channels), 2 * channels),
                                   nn.ReLU(), conv(2 * channels, channels, 1))

    def fused_bottleneck(self, attended: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """``z = merge(concat(g, a))`` for attended bottlenecks ``a`` and their partners' ``context``, with the
        gate's input ordered (primary, partner) as in training."""
        return self.merge(torch.cat((self.fusion_gate(torch.cat(context, 1)), attended), 1))

    def forward(self, x: torch.Tensor, partner: Optional[torch.Tensor] = None,
                self_paired: Optional[torch.Tensor] = None) -> Union[SegmentationOutput, PairOutput]:
        """``forward(x)``: the segmentation of ``x`` with self-pairing (inference). ``forward(x, partner,
        self_paired)``: one pass over the pairs ``(x[i], partner[i])`` (``self_paired``: a boolean per pair,
        ``None`` = none) returning ``(f_x, f_partner, output_x, output_partner)``, with ``f`` the raw encoder
        bottlenecks (CSC's input) and the outputs deep-supervision lists when that is on."""
        if partner is None:
            skips = self.encoder(x)
            attended = self.channel_attention(skips[-1])
            skips[-1] = self.fused_bottleneck(attended, (attended, attended))
            return self.decoder(skips)
        n = x.shape[0]
        skips = self.encoder(torch.cat((x, partner)))
        bottleneck = skips[-1]
        attended = self.channel_attention(bottleneck)
        a_x, a_partner = attended[:n], attended[n:]
        if self_paired is None:
            self_paired = torch.zeros(n, dtype=torch.bool, device=x.device)
        own = self_paired.view(-1, *([1] * (bottleneck.ndim - 1)))
        context = (torch.cat((a_x, torch.where(own, a_partner, a_x))),
                   torch.cat((torch.where(own, a_x, a_partner), a_partner)))
        skips[-1] = self.fused_bottleneck(attended, context)
        output = self.decoder(skips)
        if isinstance(output, (list, tuple)):
            return bottleneck[:n], bottleneck[n:], [o[:n] for o in output], [o[n:] for o in output]
        return bottleneck[:n], bottleneck[n:], output[:n], output[n:]

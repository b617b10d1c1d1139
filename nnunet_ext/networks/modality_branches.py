"""MAML's network: one U-Net per co-registered input channel, fused by modality-aware attention (Zhang et al.,
MICCAI 2021; spec §5.2, §6.6; DESIGN.md §8.2).

For ``M`` input channels (modalities):

1. each channel ``x_i`` goes through its own **branch**, the plans' U-Net with one input channel at reduced width
   (:func:`reduced_width_configuration`), returning its segmentation ``S_i`` (a deep-supervision list in training)
   and, through a :class:`~nnunet_ext.networks.feature_taps.DecoderFeatureTap`, the features ``F_i`` of its last
   decoder stage (``C`` channels);
2. **fusion** ``F_fuse = conv(concat(F_1, …, F_M))`` (``M·C → C``);
3. one **modality-aware attention** module per modality, ``A_i = σ(conv(nonlin(norm(conv(concat(F_i, F_fuse))))))``,
   a voxel- and channel-wise map in (0, 1) (independent sigmoids, no softmax across modalities);
4. ``F_att = Σ_i A_i ⊙ F_i`` and the **joint head** ``S_joint = conv1×1(F_att)``.

A branch reads its own channel only, so an absent modality never reaches the other branches. **Absent
modalities** (modality dropout in training, missing files at inference) enter the fusion as ``F_i = 0``, so
they add nothing to ``F_fuse`` or ``F_att``; which channels are present is an argument of :meth:`forward` in
training and the attribute :attr:`ModalityBranchUNet.absent_channels` at inference (set by ``nnunet_ext
predict --missing``).

Outputs: with deep supervision on, ``[S_joint, [S_1 at every scale], …, [S_M at every scale]]`` (``output[0]`` is
the joint logits, as nnU-Net's validation step reads it); with it off, one tensor: the joint logits (the
``"joint"`` read-out, what ``nnUNetv2_predict`` gets) or, with ``readout = "branches"``, the mean of the present
branches' probabilities written as logits (``log p`` for softmax outputs, ``logit p`` for regions), so the
predictor's softmax or sigmoid gives back that mean.

The branches are built by nnU-Net (He initialisation); the fusion, attention and joint head keep PyTorch's
default initialisation, as the original.
"""
import copy
from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from dynamic_network_architectures.building_blocks.helper import maybe_convert_scalar_to_list
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

from nnunet_ext.networks.feature_taps import DecoderFeatureTap

READOUTS = ("joint", "branches")
"""What ``forward`` returns with deep supervision off: the joint head, or the mean of the present branches."""
MINIMUM_BRANCH_FEATURES = 8
BranchOutput = Union[torch.Tensor, List[torch.Tensor]]


def reduced_width_configuration(configuration_manager: ConfigurationManager, width: float = 0.5,
                                minimum: int = MINIMUM_BRANCH_FEATURES) -> ConfigurationManager:
    """The configuration with the U-Net's ``features_per_stage`` scaled by ``width`` (at least ``minimum``, never
    more than planned): the branch network of spec §6.6 (half width in the original)."""
    configuration = copy.deepcopy(configuration_manager.configuration)
    arch_kwargs = configuration["architecture"]["arch_kwargs"]
    arch_kwargs["features_per_stage"] = [min(f, max(minimum, int(round(f * width))))
                                         for f in arch_kwargs["features_per_stage"]]
    return ConfigurationManager(configuration)


def first_stage_kernel(encoder: nn.Module) -> Tuple[List[int], List[int]]:
    """The kernel of the encoder's first stage and the padding that keeps the size (the fusion's convolutions)."""
    kernel = maybe_convert_scalar_to_list(encoder.conv_op, encoder.kernel_sizes[0])
    return list(kernel), [(k - 1) // 2 for k in kernel]


class ModalityAttention(nn.Module):
    """``A_i = σ(conv(nonlin(norm(conv(concat(F_i, F_fuse))))))`` with the branches' convolution (kernel of their
    first stage), normalisation and nonlinearity; the MA module of spec §5.2 step 4."""

    def __init__(self, encoder: nn.Module, channels: int) -> None:
        super().__init__()
        kernel, padding = first_stage_kernel(encoder)
        self.layers = nn.Sequential(
            encoder.conv_op(2 * channels, channels, kernel, padding=padding, bias=True),
            encoder.norm_op(channels, **(encoder.norm_op_kwargs or {})),
            encoder.nonlin(**(encoder.nonlin_kwargs or {})),
            encoder.conv_op(channels, channels, kernel, padding=padding, bias=True),
            nn.Sigmoid())

    def forward(self, features: torch.Tensor, fused: torch.Tensor) -> torch.Tensor:
        return self.layers(torch.cat((features, fused), 1))


class ModalityBranchUNet(nn.Module):
    """Built from ``M`` ``dynamic_network_architectures`` U-Nets with one input channel each (the branches)."""

    def __init__(self, branches: Sequence[nn.Module]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self._taps = [DecoderFeatureTap(branch.decoder) for branch in self.branches]
        encoder = self.branches[0].encoder
        channels = encoder.output_channels[0]
        num_classes = self.branches[0].decoder.seg_layers[-1].out_channels
        kernel, padding = first_stage_kernel(encoder)
        self.fusion = encoder.conv_op(len(branches) * channels, channels, kernel, padding=padding, bias=True)
        self.attention = nn.ModuleList(ModalityAttention(encoder, channels) for _ in self.branches)
        self.joint_head = encoder.conv_op(channels, num_classes, 1, bias=False)
        self.absent_channels: Tuple[int, ...] = ()
        """Channels absent at inference (``forward(x)`` without ``present``): left out of the fusion."""
        self.readout = "joint"
        self.readout_regions = False
        """Whether the outputs are region sigmoids (the ``"branches"`` read-out averages sigmoids then)."""

    @property
    def num_modalities(self) -> int:
        return len(self.branches)

    @property
    def deep_supervision(self) -> bool:
        return self.branches[0].decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        for branch in self.branches:
            branch.decoder.deep_supervision = enabled

    def set_absent_channels(self, channels: Sequence[int], readout: str = "joint", regions: bool = False) -> None:
        """Predict without ``channels`` (indices), with the ``"joint"`` or ``"branches"`` read-out; ``regions``:
        the outputs are region sigmoids. ``ValueError`` for an unknown read-out, an unknown channel or all of them."""
        if readout not in READOUTS:
            raise ValueError(f"unknown read-out {readout!r}; choose one of {READOUTS}")
        unknown = [c for c in channels if not 0 <= c < self.num_modalities]
        if unknown:
            raise ValueError(f"channel(s) {unknown} do not exist: the network has {self.num_modalities} channels")
        if len(set(channels)) == self.num_modalities:
            raise ValueError("every channel would be absent; at least one modality must be present")
        self.absent_channels, self.readout, self.readout_regions = tuple(sorted(set(channels))), readout, regions

    def present_mask(self, x: torch.Tensor) -> torch.Tensor:
        """``(batch, M)`` booleans: the channels not in :attr:`absent_channels`, for every sample of ``x``."""
        present = torch.ones(x.shape[0], self.num_modalities, dtype=torch.bool, device=x.device)
        present[:, list(self.absent_channels)] = False
        return present

    def branch_readout(self, outputs: List[torch.Tensor], present: torch.Tensor) -> torch.Tensor:
        """The mean of the present branches' probabilities (spec §5.6 (a)) as logits of the same function."""
        weights = present.to(outputs[0].dtype).view(*present.shape, *([1] * (outputs[0].ndim - 1)))
        stacked = torch.stack([o.float().sigmoid() if self.readout_regions else o.float().softmax(1)
                               for o in outputs], 1)
        mean = (stacked * weights).sum(1) / weights.sum(1)
        mean = mean.clamp(1e-7, 1 - 1e-7) if self.readout_regions else mean.clamp_min(1e-7)
        return torch.logit(mean) if self.readout_regions else torch.log(mean)

    def forward(self, x: torch.Tensor, present: Optional[torch.Tensor] = None) -> Union[torch.Tensor, list]:
        """Segment ``x`` (``(batch, M, *spatial)``); ``present``: ``(batch, M)`` booleans of the modalities to
        fuse (default: all but :attr:`absent_channels`)."""
        if x.shape[1] != self.num_modalities:
            raise ValueError(f"the network has {self.num_modalities} modality branches but the input has "
                             f"{x.shape[1]} channels")
        if present is None:
            present = self.present_mask(x)
        outputs = [branch(x[:, i:i + 1]) for i, branch in enumerate(self.branches)]
        features = [tap.pop() for tap in self._taps]
        if self.readout == "branches" and not self.deep_supervision:
            return self.branch_readout(outputs, present)
        keep = present.to(features[0].dtype)
        features = [f * keep[:, i].view(-1, *([1] * (f.ndim - 1))) for i, f in enumerate(features)]
        fused = self.fusion(torch.cat(features, 1))
        attended = sum(attention(f, fused) * f for attention, f in zip(self.attention, features))
        joint = self.joint_head(attended)
        return [joint, *outputs] if self.deep_supervision else joint

"""Cross-set CutMix inside a batch (LTUDA's strong views; spec §3.4).

Sample ``i`` gets a box of sample ``i + 1`` (the batch rolled by one; consecutive samples of a partial-label union
usually come from different source datasets, hence "cross-set"). Box volume fraction ``U(0.02, 0.4)``, aspect
ratios ``U(0.3, 1/0.3)`` per in-plane axis pair, position uniform where the box fits. The same keep-mask mixes
images, annotations and pseudo-labels, so everything of a pasted region comes from one sample.
"""
import math
from typing import Sequence

import torch

AREA_RANGE = (0.02, 0.4)
ASPECT_RANGE = (0.3, 1 / 0.3)


def random_keep_masks(batch_size: int, spatial_shape: Sequence[int], device: torch.device) -> torch.Tensor:
    """``(batch, 1, *spatial)`` float masks: 0 inside each sample's box, 1 outside."""
    masks = torch.ones(batch_size, 1, *spatial_shape, device=device)
    for i in range(batch_size):
        fraction = float(torch.empty(1).uniform_(*AREA_RANGE))
        log_aspects = torch.empty(len(spatial_shape)).uniform_(math.log(ASPECT_RANGE[0]), math.log(ASPECT_RANGE[1]))
        log_aspects = log_aspects - log_aspects.mean()
        sides = [max(1, min(size, int(round(size * fraction ** (1 / len(spatial_shape)) * math.exp(a)))))
                 for size, a in zip(spatial_shape, log_aspects.tolist())]
        starts = [int(torch.randint(0, size - side + 1, (1,))) for size, side in zip(spatial_shape, sides)]
        masks[(i, 0, *[slice(s, s + side) for s, side in zip(starts, sides)])] = 0
    return masks


def cutmix(tensor: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``keep · t[i] + (1 − keep) · t[i + 1]``: each sample with its box taken from the next (``keep`` from
    :func:`random_keep_masks`, broadcast over channels)."""
    keep = keep.to(tensor.dtype) if tensor.dtype.is_floating_point else keep.bool()
    rolled = torch.roll(tensor, shifts=-1, dims=0)
    if tensor.dtype.is_floating_point:
        return keep * tensor + (1 - keep) * rolled
    return torch.where(keep, tensor, rolled)

"""GazeSup's multi-level consistency (spec §2.6, §2.7): agreement between the levels' predictions, and the
feature propagation of its ``prop`` mode.

With s(z) = σ(z) and the two-class vector v(z) = (1 − s(z), s(z)), level i's consistency is

    C_i = −1/(L−1) · Σ_{j≠i} mean ⟨ v(z_i), sg(v(z_j)) ⟩                  (``pure``)

where sg stops the gradient: each level is pulled towards its peers' current predictions, never the other way
round within the same term. In ``prop`` mode z_i is replaced by the level's *propagated* logit z̃_i: its
decoder features averaged over a dilated neighbourhood with affinities softmax_q(max(0, ⟨f_p, f_q⟩)), then
passed through the level's own segmentation layer. C_i ∈ [−1, 0].
"""
from itertools import product
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch.nn import functional as F


def level_agreement(logits: torch.Tensor, peer_logits: torch.Tensor) -> torch.Tensor:
    """``(C_1, …, C_L)`` for level logits ``(B, L, ...)`` against the (detached) peer logits ``(B, L, ...)``.

    ⟨v(a), v(b)⟩ = (1 − σa)(1 − σb) + σa σb is the probability that two independent binary predictions agree.
    """
    num_levels = logits.shape[1]
    if num_levels < 2:
        raise ValueError(f"level consistency needs at least 2 levels, got {num_levels}")
    mine = torch.sigmoid(logits.float())
    peers = torch.sigmoid(peer_logits.float()).detach()
    terms = []
    for i in range(num_levels):
        agreement = [((1 - mine[:, i]) * (1 - peers[:, j]) + mine[:, i] * peers[:, j]).mean()
                     for j in range(num_levels) if j != i]
        terms.append(-torch.stack(agreement).sum() / (num_levels - 1))
    return torch.stack(terms)


def _shifted(padded: torch.Tensor, offset: Tuple[int, ...], radius: int, spatial: Sequence[int]) -> torch.Tensor:
    """The view of a tensor zero-padded by ``radius`` whose voxel p holds the original voxel p + offset."""
    return padded[(slice(None), slice(None)) + tuple(slice(radius + o, radius + o + n) for o, n in zip(offset, spatial))]


class _NeighbourDotProducts(torch.autograd.Function):
    """D_o(p) = ⟨f_p, f_{p+o}⟩ for several offsets o, stacked as ``(B, O, *spatial)`` (zero features outside).

    Autograd of the plain expression would keep one padded C-channel gradient per offset; this backward
    accumulates ∂/∂f_p = Σ_o g_o(p) f_{p+o} + g_o(p−o) f_{p−o} in place into one buffer instead.
    """

    @staticmethod
    def forward(ctx, features: torch.Tensor, offsets: List[Tuple[int, ...]], radius: int) -> torch.Tensor:
        spatial = features.shape[2:]
        padded = F.pad(features, [radius] * (2 * len(spatial)))
        ctx.save_for_backward(features)
        ctx.offsets, ctx.radius = offsets, radius
        return torch.cat([(features * _shifted(padded, o, radius, spatial)).sum(1, keepdim=True) for o in offsets], 1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        features, = ctx.saved_tensors
        spatial, radius = features.shape[2:], ctx.radius
        padded = F.pad(features, [radius] * (2 * len(spatial)))
        grad_padded = torch.zeros_like(padded)
        centre = _shifted(grad_padded, tuple(0 for _ in spatial), radius, spatial)
        for k, offset in enumerate(ctx.offsets):
            g = grad[:, k:k + 1]
            centre.addcmul_(g, _shifted(padded, offset, radius, spatial))
            _shifted(grad_padded, offset, radius, spatial).addcmul_(g, features)
        return centre.contiguous(), None, None


def neighbourhood_affinity(features: torch.Tensor, kernel_size: int = 5, dilation: int = 2
                           ) -> Tuple[torch.Tensor, List[Tuple[int, ...]]]:
    """a_pq = softmax_q(max(0, ⟨f_p, f_q⟩)) over the ``kernel_size``^d positions q = p + o of a grid with
    ``dilation`` (zero features outside the image), as ``(B, Q, *spatial)``, and the offsets o in that order.

    ⟨f_p, f_{p+o}⟩ is ⟨f_{p'}, f_{p'−o}⟩ at p' = p + o, so the dot products of the offsets −o are shifted copies
    of those of +o: half the passes over the C-channel features.
    """
    spatial = features.shape[2:]
    radius = (kernel_size // 2) * dilation
    offsets = list(product(range(-radius, radius + 1, dilation), repeat=len(spatial)))
    positive = [o for o in offsets if o > tuple(-x for x in o)]
    computed = _NeighbourDotProducts.apply(features, positive, radius).split(1, dim=1)
    dots: Dict[Tuple[int, ...], torch.Tensor] = {tuple(0 for _ in spatial): (features * features).sum(1, keepdim=True)}
    for offset, dot in zip(positive, computed):
        dots[offset] = dot
        mirrored = tuple(-o for o in offset)
        dots[mirrored] = _shifted(F.pad(dot, [radius] * (2 * len(spatial))), mirrored, radius, spatial)
    affinity = torch.relu(torch.cat([dots[offset] for offset in offsets], 1))
    return torch.softmax(affinity, 1), offsets


def propagate(features: torch.Tensor, values: Optional[torch.Tensor] = None, kernel_size: int = 5,
              dilation: int = 2) -> torch.Tensor:
    """Σ_q a_pq v_q with the affinities of :func:`neighbourhood_affinity` (spec §2.6), in float32.

    ``values`` default to the features themselves: f̃ = Σ_q a_pq f_q, the propagated features. Because the
    affinities sum to 1 over q and a 1×1 segmentation layer is linear, its output on f̃ equals
    ``propagate(f, W f) + b``; the trainer propagates the (bias-free) logits that way, a 1-channel sum instead of
    a C-channel one, with the same value and gradients. Works on ``(B, C, *spatial)``, 2-D or 3-D.
    """
    features = features.float()
    values = features if values is None else values.float()
    spatial = features.shape[2:]
    radius = (kernel_size // 2) * dilation
    weights, offsets = neighbourhood_affinity(features, kernel_size, dilation)
    padded = F.pad(values, [radius] * (2 * len(spatial)))
    propagated = torch.zeros_like(values)
    for weight, offset in zip(weights.split(1, dim=1), offsets):
        propagated = propagated + weight * _shifted(padded, offset, radius, spatial)
    return propagated

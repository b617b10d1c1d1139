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


def propagate_features(features: torch.Tensor, kernel_size: int = 5, dilation: int = 2) -> torch.Tensor:
    """f̃_p = Σ_q a_pq f_q with a_pq = softmax_q(max(0, ⟨f_p, f_q⟩)) over the ``kernel_size``^d positions q of
    a grid with ``dilation`` around p (spec §2.6: 5 × 5, dilation 2; zero padding outside the image).

    Works on ``(B, C, *spatial)`` with 2-D or 3-D ``spatial``, in float32. The neighbours are shifted views of
    one padded tensor, so memory stays a few feature maps whatever the grid size; gradients flow through the
    affinities and the features.
    """
    features = features.float()
    spatial = features.shape[2:]
    radius = (kernel_size // 2) * dilation
    padded = F.pad(features, [radius] * (2 * len(spatial)))
    neighbours = [padded[(slice(None), slice(None)) + tuple(slice(o, o + n) for o, n in zip(offset, spatial))]
                  for offset in product(range(0, 2 * radius + 1, dilation), repeat=len(spatial))]
    affinity = torch.stack([torch.relu(torch.einsum("bc...,bc...->b...", features, q)) for q in neighbours], 1)
    weights = torch.softmax(affinity, 1)
    propagated = torch.zeros_like(features)
    for k, q in enumerate(neighbours):
        propagated = propagated + weights[:, k:k + 1] * q
    return propagated

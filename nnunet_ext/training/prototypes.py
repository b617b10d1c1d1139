"""Prototype classifiers of LTUDA (spec §3.3, §3.6; ProtoSeg-style): per class ``M`` unit-norm prototypes, pixels
assigned to them by Sinkhorn–Knopp, prototypes moved by momentum (no gradient).

For embeddings ``e_p`` (unit norm) and a bank ``P`` of shape ``(classes, M, D)``: similarities
``s_{p,k,m} = ⟨e_p, P_{k,m}⟩``, class scores ``o_{p,k} = max_m s_{p,k,m}`` (a learnable LayerNorm over the classes
turns them into logits, in the network). For the pixels a bank mask gives class ``k``: their balanced assignment to
the class's prototypes (Sinkhorn on ``exp(s/ε)``, ε = 0.05, 3 rounds), the assigned index as PPC target
(``k·M + m`` over all ``classes·M`` similarities) and PPD target (``(1 − s_assigned)²``), and the update
``P_{k,m} ← γ P_{k,m} + (1 − γ) normalise(Σ e_p)`` over the correctly classified pixels assigned to ``m``. The
assignment is the argmax of the Sinkhorn matrix (the original samples a Gumbel-softmax, which can disagree with
its own argmax target; spec §3.10).

A class's prototypes start as the embeddings of ``M`` random pixels of the class, the first time the class has
pixels in the bank's mask (:func:`seed_unseen_classes`; Forgy's k-means seeds). The original starts them
truncated-normal (std 0.02), random unit vectors far from every embedding: with momentum 0.999 they move by
``1 − 0.999^n`` of the way in ``n`` steps, too little within our budgets, and the prototype classifier learned a
class prior instead (every pixel background; README, Benchmarks).
"""
from typing import Tuple

import torch
from torch.nn import functional as F

SINKHORN_EPSILON = 0.05
SINKHORN_ITERATIONS = 3
IGNORE = -1


def similarities(embeddings: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
    """``(N, classes, M)`` cosine similarities of ``(N, D)`` unit embeddings to a ``(classes, M, D)`` bank."""
    return torch.einsum("nd,kmd->nkm", embeddings, bank)


def sinkhorn(scores: torch.Tensor, epsilon: float = SINKHORN_EPSILON,
             iterations: int = SINKHORN_ITERATIONS) -> torch.Tensor:
    """Balanced soft assignment ``(N, M)`` of N pixels to M prototypes from their similarities: each prototype
    receives ``N/M`` of the mass and each pixel's row sums to 1 (after the last round)."""
    q = torch.exp((scores - scores.max()) / epsilon).t()
    q = q / q.sum()
    num_prototypes, num_pixels = q.shape
    for _ in range(iterations):
        q = q / q.sum(1, keepdim=True) / num_prototypes
        q = q / q.sum(0, keepdim=True) / num_pixels
    return (q * num_pixels).t()


@torch.no_grad()
def seed_unseen_classes(embeddings: torch.Tensor, bank_mask: torch.Tensor, bank: torch.Tensor,
                        seeded: torch.Tensor) -> None:
    """Set the prototypes of each class not yet ``seeded`` that has pixels in ``bank_mask`` to the unit embeddings of
    ``M`` distinct random pixels of that class (repeated where it has fewer), in place, and mark it seeded."""
    num_prototypes = bank.shape[1]
    for k in (~seeded).nonzero()[:, 0].tolist():
        pixels = (bank_mask == k).nonzero()[:, 0]
        if not len(pixels):
            continue
        index = torch.randperm(len(pixels), device=pixels.device)[:num_prototypes]
        index = index[torch.arange(num_prototypes, device=pixels.device) % len(index)]
        bank[k] = F.normalize(embeddings[pixels[index]].float(), dim=-1).to(bank.dtype)
        seeded[k] = True


@torch.no_grad()
def assign_and_update(embeddings: torch.Tensor, predicted: torch.Tensor, bank_mask: torch.Tensor,
                      bank: torch.Tensor, momentum: float) -> torch.Tensor:
    """Assign each pixel with a bank class (``bank_mask`` ≥ 0) to one prototype of that class and move the bank
    (in place) towards the correctly predicted (``predicted == bank_mask``) pixels; returns the ``(N,)`` PPC targets
    ``k·M + m`` (:data:`IGNORE` for pixels without a bank class)."""
    num_classes, num_prototypes, _ = bank.shape
    targets = torch.full_like(bank_mask, IGNORE)
    for k in range(num_classes):
        pixels = bank_mask == k
        if not bool(pixels.any()):
            continue
        features = embeddings[pixels].float()
        assignment = sinkhorn(features @ bank[k].float().t()).argmax(1)
        targets[pixels] = k * num_prototypes + assignment
        correct = predicted[pixels] == k
        for m in range(num_prototypes):
            chosen = correct & (assignment == m)
            if bool(chosen.any()):
                moved = F.normalize(features[chosen].sum(0), dim=0)
                bank[k, m] = momentum * bank[k, m] + (1 - momentum) * moved.to(bank.dtype)
    bank.copy_(F.normalize(bank, dim=-1))
    return targets


def contrast_terms(scores: torch.Tensor, targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """(PPC, PPD) of ``(N, classes·M)`` similarities and their PPC targets: the cross-entropy of each pixel's
    similarities (no temperature, as the original) against its prototype, and the mean ``(1 − s_assigned)²``."""
    valid = targets != IGNORE
    if not bool(valid.any()):
        zero = scores.sum() * 0
        return zero, zero
    chosen, index = scores[valid], targets[valid]
    ppc = F.cross_entropy(chosen.float(), index)
    ppd = ((1 - chosen.gather(1, index[:, None]).float()) ** 2).mean()
    return ppc, ppd

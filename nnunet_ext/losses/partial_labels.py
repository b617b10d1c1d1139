"""The marginal view of a softmax output for partially labeled cases (DESIGN.md §8.3; the baseline of the
partial-label methods).

In a case that annotates the classes ``A`` (background always included), a voxel labeled 0 is "background or
any class not in ``A``". The marginal distribution merges those classes: ``p'(0) = p(0) + Σ_{c ∉ A} p(c)``,
``p'(c) = p(c)`` for ``c ∈ A``, and the unannotated classes have no probability of their own. Its logits are
``z'_0 = logsumexp(z_0, z_c for c ∉ A)``, ``z'_c = z_c`` for ``c ∈ A`` and a very low logit for ``c ∉ A``, so
nnU-Net's own loss on ``z'`` is the marginal loss: its cross-entropy is ``−log p'(y)`` (an unannotated organ is
never taught as background, as it is to stock nnU-Net), its soft Dice scores the annotated classes (an
unannotated class has neither prediction nor target in that case), and ``argmax z'`` is the prediction over
what the case can say.
"""
from typing import Dict, List, Union

import torch

Logits = Union[torch.Tensor, List[torch.Tensor]]


def marginal_logits(logits: Logits, annotated: torch.Tensor) -> Logits:
    """``z'`` of the module docstring for ``(batch, classes, *spatial)`` logits (or a deep-supervision list of
    them) and ``annotated``, ``(batch, classes)`` booleans with the background column ``True``."""
    if isinstance(logits, (list, tuple)):
        return [marginal_logits(scale, annotated) for scale in logits]
    mask = annotated.view(*annotated.shape, *([1] * (logits.ndim - 2)))
    into_background = ~mask
    into_background[:, 0] = True
    background = torch.logsumexp(logits.masked_fill(~into_background, float("-inf")), dim=1, keepdim=True)
    low = torch.finfo(logits.dtype).min / 4
    return torch.cat((background, logits[:, 1:].masked_fill(~mask[:, 1:], low)), 1)


def partial_targets(target: torch.Tensor, annotated: torch.Tensor) -> Dict[str, torch.Tensor]:
    """The inputs of :func:`partial_bce` and :func:`partial_soft_dice` for a ``(B, 1, *spatial)`` label map and
    the ``(B, classes)`` annotation mask: one-hot organ targets ``(B, classes − 1, *spatial)`` (``"targets"``) and
    where they are known (``"valid"``: the organs each case annotates; the others are unknown, not background)."""
    spatial = [1] * (target.ndim - 2)
    organs = torch.arange(1, annotated.shape[1], device=target.device).view(1, -1, *spatial)
    valid = annotated[:, 1:].view(*annotated.shape[:1], -1, *spatial).expand(-1, -1, *target.shape[2:])
    return {"targets": (target == organs).float(), "valid": valid}


def partial_bce(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """LTUDA's partial BCE (spec §3.5), fixed as §3.10 asks: per organ channel the sigmoid BCE averaged over the
    valid entries only (samples and voxels where the channel is known), then the mean over the channels with any
    valid entry. ``logits``, ``targets`` (0 / 1) and ``valid`` (booleans) are ``(batch, organs, *spatial)``."""
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), targets.float(), reduction="none")
    weights = valid.float()
    per_channel = weights.transpose(0, 1).flatten(1).sum(1)
    losses = (bce * weights).transpose(0, 1).flatten(1).sum(1) / per_channel.clamp_min(1)
    known = per_channel > 0
    return losses[known].mean() if bool(known.any()) else logits.sum() * 0


def partial_soft_dice(logits: torch.Tensor, targets: torch.Tensor, valid: torch.Tensor,
                      smooth: float = 1e-5) -> torch.Tensor:
    """``1 −`` the batch soft Dice of each organ's sigmoid against its 0 / 1 target over the valid entries only,
    averaged over the channels with any valid entry (the option of spec §3.11 beside pBCE; nnU-Net's
    ``smooth``, and its batch Dice: one Dice per channel over the whole batch). Shapes as :func:`partial_bce`."""
    weights = valid.float()
    probabilities = torch.sigmoid(logits.float()) * weights
    targets = targets.float() * weights
    intersection = (probabilities * targets).transpose(0, 1).flatten(1).sum(1)
    total = (probabilities + targets).transpose(0, 1).flatten(1).sum(1)
    known = weights.transpose(0, 1).flatten(1).sum(1) > 0
    dice = (2 * intersection + smooth) / (total + smooth)
    return (1 - dice[known]).mean() if bool(known.any()) else logits.sum() * 0

"""CMC's two unsupervised terms between the two modalities of an unpaired pair (spec §1.5, fixed reading §1.10)."""
import torch
from torch.nn import functional as F


def channel_contrastive_loss(f_a: torch.Tensor, f_b: torch.Tensor, temperature: float = 0.5,
                             sort_values: bool = False) -> torch.Tensor:
    """CSC, the channel-wise semantic consistency: NT-Xent whose instances are the **channels** of each sample's
    bottlenecks ``f_a``, ``f_b`` ``(B, C, *spatial)``.

    Each channel map (flattened, L2-normalised) is an instance; the positive of channel ``c`` of one modality is
    channel ``c`` of the other, the negatives are the other ``2C − 2`` channels of both. With ``s`` the cosine
    similarities over temperature, ``ℓ_i = −log(exp(s_ip) / Σ_{k≠i} exp(s_ik))``, averaged over the ``2C``
    anchors and the samples (the code's reshape mixed channels and voxels; spec §1.9-3).

    ``sort_values``: each channel map's values are sorted before the comparison, so a channel is described by the
    distribution of its activations rather than by where they are — a variant for unregistered pairs, whose maps
    compared position by position are themselves misaligned (spec §1.5 (b), a suggestion, not in the code)."""
    a, b = f_a.float().flatten(2), f_b.float().flatten(2)
    if sort_values:
        a, b = a.sort(dim=-1).values, b.sort(dim=-1).values
    a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    instances = torch.cat((a, b), 1)
    channels = a.shape[1]
    similarity = torch.bmm(instances, instances.transpose(1, 2)) / temperature
    eye = torch.eye(2 * channels, dtype=torch.bool, device=similarity.device)
    similarity = similarity.masked_fill(eye, float("-inf"))
    positives = torch.cat((torch.arange(channels, 2 * channels), torch.arange(channels))).to(similarity.device)
    return F.cross_entropy(similarity.flatten(0, 1), positives.repeat(similarity.shape[0]))


def soft_dice_disagreement(p_a: torch.Tensor, p_b: torch.Tensor, smooth: float = 1e-6) -> torch.Tensor:
    """CAC, the contrastive anatomical consistency: ``1 − mean_{b,c} (2Σ p_a p_b + ε) / (Σ p_a² + Σ p_b² + ε)``
    over the **probabilities** of the two modalities (all classes, background included), so that minimising it
    makes the predicted anatomy agree (the code added the similarity of logits; spec §1.9-2)."""
    dims = tuple(range(2, p_a.ndim))
    p_a, p_b = p_a.float(), p_b.float()
    dice = (2 * (p_a * p_b).sum(dims) + smooth) / ((p_a * p_a).sum(dims) + (p_b * p_b).sum(dims) + smooth)
    return 1 - dice.mean()

"""Random modality dropout: which modalities each training sample fuses (spec §5.6 (b)).

A sample is dropped out with probability ``p``; a dropped-out sample keeps one of the ``2^M − 1`` non-empty
subsets of its ``M`` modalities, drawn uniformly (the full set included), so every subset a user may predict
with is trained on and at least one modality is always kept.
"""
import torch


def random_present_modalities(batch_size: int, num_modalities: int, probability: float,
                              device: torch.device) -> torch.Tensor:
    """``(batch_size, num_modalities)`` booleans, ``True`` where a sample keeps a modality."""
    subsets = torch.randint(1, 2 ** num_modalities, (batch_size,), device=device)
    drawn = (subsets[:, None] >> torch.arange(num_modalities, device=device)) & 1 == 1
    dropped_out = torch.rand(batch_size, device=device) < probability
    return torch.where(dropped_out[:, None], drawn, torch.ones_like(drawn))

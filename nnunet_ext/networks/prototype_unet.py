"""LTUDA's network (spec §3.3, §3.11): the plans' U-Net as the linear classifier (one sigmoid channel per organ,
no background channel), a projection head on its last decoder features and two prototype banks (labeled and
unlabeled pixels) as buffers, so the stock predictor, ``--c`` and the exported weights carry them.

* Linear classifier: the U-Net with ``classes − 1`` outputs; its logits ``z`` (one per organ).
* Projection head: 1×1 conv → norm → nonlin → 1×1 conv (the plans' ops), L2-normalised, a LayerNorm over the
  embedding and L2-normalised again: unit embeddings ``e`` (``embedding_dim``), as pixel rows ``(B, *spatial, D)``
  (channels last: the normalisations, the LayerNorm and the prototype products then run over contiguous rows,
  and the trainer's per-pixel assignment reads them without a copy; 1.4–1.7 × faster than channels first on a
  CPU, docs/benchmarks.md).
* Prototype classifiers: per bank, class scores ``max_m ⟨e, P_{k,m}⟩`` through a learnable LayerNorm over the
  classes (a learned temperature), logits of a softmax over all classes (background included). Beside each bank
  a buffer ``seeded_<bank>`` records which classes' prototypes have been seeded from embeddings
  (:func:`~nnunet_ext.training.prototypes.seed_unseen_classes`).

In ``train()`` mode :meth:`forward` returns ``(z, e)``, ``e`` the embeddings of the samples from
``embedded_from`` on, ``None`` when that is past the batch (LTUDA's stage 1 and its weak view need none, and the
head at full resolution is costly). The batch goes through the network in ``passes`` equal parts (LTUDA's three
views, one at a time) and ``e`` is a tuple with the embeddings of each part that has any: the result is that of
one pass (the plans' instance norm sees each sample alone), but no activation is larger than a stock step's
(on a CPU, glibc serves blocks above 32 MB by ``mmap`` and each such allocation page-faults anew: one pass over
three views was 1.3 × slower than three). In ``eval()`` mode it returns logits of all classes for nnU-Net's
softmax: with deep supervision off those of :attr:`classifier` — ``"unlabeled"`` (the paper's
default), ``"labeled"``, or ``"linear"``, the threshold rule (background unless an organ's sigmoid reaches 0.5,
then the most probable organ) written as ``[0, z_1 … z_{K-1}]``, whose argmax is that rule —, with deep
supervision on (nnU-Net's online validation) the threshold rule at every scale.
"""
from typing import List, Optional, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from nnunet_ext.networks.feature_taps import DecoderFeatureTap

CLASSIFIERS = ("unlabeled", "labeled", "linear")
BANKS = ("labeled", "unlabeled")
Logits = Union[torch.Tensor, List[torch.Tensor]]


def threshold_rule_logits(organ_logits: torch.Tensor) -> torch.Tensor:
    """``[0, z_1 … z_{K-1}]``: softmax-argmax gives background where every ``σ(z) < 0.5`` (every ``z < 0``), else the
    organ with the largest ``z`` (spec §3.8's linear classifier)."""
    return torch.cat((torch.zeros_like(organ_logits[:, :1]), organ_logits), 1)


class PrototypeUNet(nn.Module):
    """Built from a ``dynamic_network_architectures`` U-Net with ``num_classes − 1`` outputs."""

    def __init__(self, unet: nn.Module, num_classes: int, prototypes_per_class: int = 5, embedding_dim: int = 64,
                 classifier: str = "unlabeled") -> None:
        super().__init__()
        if classifier not in CLASSIFIERS:
            raise ValueError(f"unknown classifier {classifier!r}; choose one of {CLASSIFIERS}")
        self.encoder = unet.encoder
        self.decoder = unet.decoder
        self.classifier = classifier
        encoder = unet.encoder
        channels = unet.decoder.seg_layers[-1].in_channels
        self.projection = nn.Sequential(
            encoder.conv_op(channels, embedding_dim, 1), encoder.norm_op(embedding_dim, **(encoder.norm_op_kwargs or {})),
            encoder.nonlin(**(encoder.nonlin_kwargs or {})), encoder.conv_op(embedding_dim, embedding_dim, 1))
        self.embedding_norm = nn.LayerNorm(embedding_dim)
        self.class_norms = nn.ModuleDict({bank: nn.LayerNorm(num_classes) for bank in BANKS})
        for bank in BANKS:
            initial = nn.init.trunc_normal_(torch.empty(num_classes, prototypes_per_class, embedding_dim), std=0.02)
            self.register_buffer(f"prototypes_{bank}", F.normalize(initial, dim=-1))
            self.register_buffer(f"seeded_{bank}", torch.zeros(num_classes, dtype=torch.bool))
        self._features = DecoderFeatureTap(self.decoder)

    def bank(self, name: str) -> torch.Tensor:
        return getattr(self, f"prototypes_{name}")

    def seeded(self, name: str) -> torch.Tensor:
        """``(classes,)`` which classes of bank ``name`` have been seeded from embeddings."""
        return getattr(self, f"seeded_{name}")

    def embed(self, features: torch.Tensor) -> torch.Tensor:
        """Unit embeddings ``(B, *spatial, D)`` of the last decoder features ``(B, C, *spatial)``."""
        rows = self.projection(features).movedim(1, -1).contiguous()
        return F.normalize(self.embedding_norm(F.normalize(rows, dim=-1)), dim=-1)

    def prototype_logits(self, embeddings: torch.Tensor, bank: str) -> Tuple[torch.Tensor, torch.Tensor]:
        """(class logits ``(B, *spatial, classes)``, similarities ``(B, *spatial, classes·M)``) of one bank for
        embeddings ``(B, *spatial, D)``."""
        prototypes = self.bank(bank).detach().clone()
        scores = embeddings.float() @ prototypes.flatten(0, 1).float().t()
        class_scores = scores.unflatten(-1, prototypes.shape[:2]).amax(-1)
        return self.class_norms[bank](class_scores), scores

    def logits_and_features(self, x: torch.Tensor) -> Tuple[Logits, torch.Tensor]:
        """The U-Net's organ logits and its last decoder features (taken off the tap, so none are left over)."""
        logits = self.decoder(self.encoder(x))
        return logits, self._features.pop()

    def organ_logits(self, x: torch.Tensor) -> Logits:
        """The linear classifier's organ logits alone (the teacher's pseudo-labels)."""
        return self.logits_and_features(x)[0]

    def forward(self, x: torch.Tensor, embedded_from: int = 0,
                passes: int = 1) -> Union[Tuple[Logits, Optional[Tuple[torch.Tensor, ...]]], Logits]:
        if self.training:
            return self.training_forward(x, embedded_from, passes)
        organ_logits, features = self.logits_and_features(x)
        if isinstance(organ_logits, (list, tuple)):
            return [threshold_rule_logits(scale) for scale in organ_logits]
        if self.classifier == "linear":
            return threshold_rule_logits(organ_logits)
        return self.prototype_logits(self.embed(features), self.classifier)[0].movedim(-1, 1)

    def training_forward(self, x: torch.Tensor, embedded_from: int,
                         passes: int) -> Tuple[Logits, Optional[Tuple[torch.Tensor, ...]]]:
        """Organ logits of the whole batch and, per part that has samples from ``embedded_from`` on, their
        embeddings; the batch split into ``passes`` equal parts that go through the network one after the other."""
        if len(x) % passes:
            raise ValueError(f"a batch of {len(x)} cannot be split into {passes} equal passes")
        size = len(x) // passes
        organ_logits, embeddings = [], []
        for start in range(0, len(x), size):
            logits, features = self.logits_and_features(x[start:start + size])
            organ_logits.append(logits)
            if start + size > embedded_from:
                embeddings.append(self.embed(features[max(0, embedded_from - start):]))
        if isinstance(organ_logits[0], (list, tuple)):
            organ_logits = [torch.cat(scale) for scale in zip(*organ_logits)]
        else:
            organ_logits = torch.cat(organ_logits)
        return organ_logits, tuple(embeddings) or None

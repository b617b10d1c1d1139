"""The marginal-loss baseline for partially labeled data (DESIGN.md §8.3): nnU-Net with its loss made marginal.

Stock nnU-Net trained on a union of single-organ datasets learns that every organ a case does not annotate is
background. Here nnU-Net's own loss (Dice + CE, deep supervision) is computed on each case's marginal logits
(:mod:`nnunet_ext.losses.partial_labels`): the probabilities of the classes a case does not annotate are summed
into background, so an unannotated organ is never a background target, while the annotated ones are learned
as by nnU-Net. Everything else (network, augmentation, schedule, inference) is nnU-Net's; the partial-label base
(:mod:`nnunet_ext.trainers.partial_labels`) scores validation on the annotated classes only. LTUDA's gain is
measured against this trainer.
"""

from nnunet_ext.losses.partial_labels import marginal_logits
from nnunet_ext.trainers.partial_labels import nnUNetTrainerPartialLabels


class nnUNetTrainerMarginal(nnUNetTrainerPartialLabels):
    """nnU-Net on partially labeled data with the marginal loss: classes a case does not annotate are merged into
    background, never taught as background."""

    def train_step(self, batch: dict) -> dict:
        """nnU-Net's step with its loss on the marginal logits of each case."""
        data, target = self.to_device(batch["data"]), self.to_device(batch["target"])
        mask = self.annotation_mask(batch["keys"])
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            loss = self.loss(marginal_logits(self.network(data), mask), target)
        return self.optimize({"loss": loss})

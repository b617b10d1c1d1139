"""The mechanics every semi-supervised trainer shares (DESIGN.md §5, spec §6.2), written once.

``nnUNetTrainerSemiSupervised`` is the multi-stream base (:mod:`nnunet_ext.trainers.multi_stream`: step
counter, ramps, EMA teacher, method state in checkpoints) with one extra stream, ``unlabeled``: the preprocessed
unlabeled cases at uniformly random patch positions, with the dataset's own augmentation. Each step the student
sees ``labeled + unlabeled`` patches in one forward pass (labeled first); both batches are moved to the device
before they are joined, so pinned memory pays off.

The network is the plans' U-Net with the method's channel dropout (``dropout_p``) and, for DTC and UG-MCL, a
level-set head (:class:`~nnunet_ext.networks.SemiSupervisedUNet`). Dropout is off by default (``dropout_p = 0``):
nnU-Net's U-Net has none, unlike the V-Net of the papers, so Mean Teacher's and DTC's student and teacher
differ only by the teacher's input noise and the EMA (Mean Teacher) unless a variant sets ``dropout_p``.

A method subclass sets its class attributes and implements :meth:`compute_loss`.
"""
from typing import Dict, List, Sequence, Union

import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.data.streams import StreamSpec
from nnunet_ext.data.transforms import AppendSignedDistanceMaps
from nnunet_ext.losses import probabilities
from nnunet_ext.networks import SemiSupervisedUNet
from nnunet_ext.paths import unlabeled_preprocessed_folder
from nnunet_ext.trainers.multi_stream import Batch, nnUNetTrainerMultiStream

NetworkOutput = Union[torch.Tensor, List[torch.Tensor]]
UNLABELED = "unlabeled"


class nnUNetTrainerSemiSupervised(nnUNetTrainerMultiStream):
    """Base class; not a method by itself (:meth:`compute_loss` is abstract)."""

    unlabeled_batch_size: Union[int, None] = None
    """Unlabeled patches per step over all DDP ranks (split among them as nnU-Net splits the labeled batch);
    ``None``: as many as labeled ones on every rank (the papers' 2 + 2)."""
    consistency_weight: float = 0.1
    """Maximum weight of the unsupervised term (reached at the end of the ramp)."""
    dropout_p: float = 0.0
    """Channel dropout at the bottleneck and the last decoder stage (see ``nnunet_ext.networks``)."""
    has_level_set_head: bool = False
    """Whether the network has a tanh level-set head beside the segmentation head."""

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> torch.nn.Module:
        """The plans' U-Net wrapped with the method's dropout and heads; also what the predictor builds."""
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        return SemiSupervisedUNet(unet, cls.dropout_p, num_output_channels if cls.has_level_set_head else 0)

    @property
    def needs_signed_distance_maps(self) -> bool:
        """Whether the labeled stream appends the labels' signed distance maps (the level-set regression)."""
        return self.has_level_set_head

    def initialize(self) -> None:
        if self.is_cascaded:
            raise NotImplementedError(
                f"{type(self).__name__} cannot train the cascade configuration {self.configuration_name}: its "
                f"unlabeled cases have no segmentation of the previous stage. Train 3d_fullres, 3d_lowres or 2d.")
        if self.needs_signed_distance_maps and self.label_manager.has_ignore_label:
            raise NotImplementedError(f"{type(self).__name__} needs dense labels for its signed distance targets; "
                                      "datasets with an 'ignore' label are not supported.")
        super().initialize()
        heads = self.student.extra_heads
        if heads:
            self.print_to_log_file(f"Heads a stock nnU-Net network does not have (they start fresh when "
                                   f"-pretrained_weights loads a stock nnU-Net checkpoint): {', '.join(heads)}")

    @property
    def has_regions(self) -> bool:
        return self.label_manager.has_regions

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, **kwargs) -> ComposeTransforms:
        """nnU-Net's training augmentation, plus the signed distance maps of the labels when the method regresses
        a level set (computed in the augmentation workers; see ``nnunet_ext.data.transforms``)."""
        transforms = super().get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales,
                                                     mirror_axes, do_dummy_2d_data_aug, **kwargs)
        if self.needs_signed_distance_maps:
            transforms.transforms.append(AppendSignedDistanceMaps(
                self.label_manager.foreground_labels, self.has_regions, self.configuration_manager.spacing))
        return transforms

    def stream_specs(self) -> Sequence[StreamSpec]:
        """The unlabeled cases: same patch size and augmentation as the labeled stream, random positions."""
        initial_patch_size = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()[2]
        batch_size = self.batch_size if self.unlabeled_batch_size is None else self.per_rank(self.unlabeled_batch_size)
        return [StreamSpec(UNLABELED, unlabeled_preprocessed_folder(self.preprocessed_dataset_folder), batch_size,
                           self.training_transforms(), self.label_manager, self.configuration_manager.patch_size,
                           initial_patch_size, pin_memory=self.device.type == "cuda")]

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return probabilities(logits, self.has_regions)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution segmentation logits of the teacher (its level-set output, if any, dropped)."""
        output = self.teacher.network(x)
        return output[0] if isinstance(output, tuple) else output

    def compute_terms(self, batches: Dict[str, Batch]) -> Dict[str, torch.Tensor]:
        """One forward of the student over ``labeled + unlabeled`` patches, then the method's loss."""
        labeled = self.to_device(batches["labeled"]["data"])
        data = torch.cat((labeled[:, :self.num_input_channels], self.to_device(batches[UNLABELED]["data"])))
        target = self.to_device(batches["labeled"]["target"])
        return self.compute_loss(data, self.network(data), target, labeled[:, self.num_input_channels:],
                                 labeled.shape[0])

    def compute_loss(self, data: torch.Tensor, output, target: NetworkOutput, label_derived: torch.Tensor,
                     num_labeled: int) -> Dict[str, torch.Tensor]:
        """The method's objective for one step.

        ``data``: the student's input, labeled patches first; ``output``: the student's output on it;
        ``target``: nnU-Net's (deep-supervision) targets of the labeled patches; ``label_derived``: extra
        per-voxel targets computed from the labels in the data workers (e.g. signed distance maps), empty if
        none. Returns ``{'loss': total, <each name of logged_terms>: value}``.
        """
        raise NotImplementedError(f"{type(self).__name__} is the shared base of the semi-supervised trainers, "
                                  "not a method: train one of its subclasses (e.g. nnUNetTrainerMeanTeacher).")

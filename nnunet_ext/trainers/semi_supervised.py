"""The mechanics every semi-supervised trainer shares (DESIGN.md §5, spec §6.2), written once.

``nnUNetTrainerSemiSupervised`` adds to nnU-Net's trainer (besides the term logging of
:class:`~nnunet_ext.trainers.loss_terms.nnUNetTrainerLossTerms`):

* an unlabeled stream beside nnU-Net's labeled one; each step the student sees ``labeled + unlabeled``
  patches in one forward pass (labeled first);
* an optional EMA teacher (``ema_decay``), updated after every optimizer step and kept in ``train()`` mode
  (Monte-Carlo dropout, as the originals);
* an optimizer-step counter, so ramps and thresholds are functions of the fraction of training done;
* checkpoints that carry the teacher and the counter (``--c`` restores them); ``network_weights`` holds the
  student, which is what the papers evaluate and what ``nnUNetv2_predict`` loads.

A method subclass sets its class attributes and implements :meth:`compute_loss`. Options are class
attributes, because nnU-Net's trainer ``__init__`` must keep its exact five arguments; a variant subclass
overrides them.
"""
from typing import Dict, List, Optional, Union

import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.level_set import AppendSignedDistanceMaps
from nnunet_ext.losses import probabilities
from nnunet_ext.networks import SemiSupervisedUNet
from nnunet_ext.schedules import sigmoid_rampup, training_fraction
from nnunet_ext.teacher import EMATeacher
from nnunet_ext.trainers.loss_terms import nnUNetTrainerLossTerms
from nnunet_ext.unlabeled_stream import UnlabeledStream

NetworkOutput = Union[torch.Tensor, List[torch.Tensor]]


class nnUNetTrainerSemiSupervised(nnUNetTrainerLossTerms):
    """Base class; not a method by itself (:meth:`compute_loss` is abstract)."""

    unlabeled_batch_size: Optional[int] = None
    """Unlabeled patches per step; ``None``: as many as labeled ones (the papers' 2 + 2)."""
    consistency_weight: float = 0.1
    """Maximum weight of the unsupervised term (reached at the end of the ramp)."""
    consistency_rampup: float = 1.0
    """Fraction of training over which the weight ramps up; the originals ramp over the whole run."""
    ema_decay: Optional[float] = None
    """Decay of the EMA teacher; ``None``: the method has no teacher."""
    dropout_p: float = 0.0
    """Channel dropout at the bottleneck and the last decoder stage (see ``nnunet_ext.networks``)."""
    has_level_set_head: bool = False
    """Whether the network has a tanh level-set head beside the segmentation head."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.optimizer_steps = 0
        self.teacher: Optional[EMATeacher] = None
        self.unlabeled_stream: Optional[UnlabeledStream] = None

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> torch.nn.Module:
        """The plans' U-Net wrapped with the method's dropout and heads; also what the predictor builds."""
        unet = nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                        num_output_channels, enable_deep_supervision)
        return SemiSupervisedUNet(unet, cls.dropout_p, num_output_channels if cls.has_level_set_head else 0)

    def initialize(self) -> None:
        if self.has_level_set_head and self.label_manager.has_ignore_label:
            raise NotImplementedError(f"{type(self).__name__} needs dense labels for its signed distance targets; "
                                      "datasets with an 'ignore' label are not supported.")
        super().initialize()
        if self.ema_decay is not None:
            teacher = self.build_network_architecture(self.plans_manager, self.configuration_manager,
                                                      self.num_input_channels,
                                                      self.label_manager.num_segmentation_heads, False)
            self.teacher = EMATeacher(teacher.to(self.device), self.student, self.ema_decay)
            self.teacher.network.train()

    @property
    def student(self) -> torch.nn.Module:
        """The trained network (the student) without DDP / torch.compile wrappers."""
        return self.trained_network

    @property
    def has_regions(self) -> bool:
        return self.label_manager.has_regions

    @property
    def training_fraction(self) -> float:
        return training_fraction(self.optimizer_steps, self.num_epochs, self.num_iterations_per_epoch)

    def ramped(self, weight: float) -> float:
        """``weight`` times the sigmoid ramp-up at the current point of training (spec §1.1)."""
        return weight * sigmoid_rampup(self.training_fraction, self.consistency_rampup)

    def get_training_transforms(self, patch_size, rotation_for_DA, deep_supervision_scales, mirror_axes,
                                do_dummy_2d_data_aug, **kwargs) -> ComposeTransforms:
        """nnU-Net's training augmentation, plus the signed distance maps of the labels when the method has a
        level-set head (computed in the augmentation workers; see ``nnunet_ext.level_set``)."""
        transforms = super().get_training_transforms(patch_size, rotation_for_DA, deep_supervision_scales,
                                                     mirror_axes, do_dummy_2d_data_aug, **kwargs)
        if self.has_level_set_head:
            transforms.transforms.append(AppendSignedDistanceMaps(
                self.label_manager.foreground_labels, self.has_regions, self.configuration_manager.spacing))
        return transforms

    def get_dataloaders(self):
        train, val = super().get_dataloaders()
        rotation, dummy_2d, initial_patch_size, mirror_axes = \
            self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        transforms = self.get_training_transforms(
            self.configuration_manager.patch_size, rotation, self._get_deep_supervision_scales(), mirror_axes,
            dummy_2d, use_mask_for_norm=self.configuration_manager.use_mask_for_norm, is_cascaded=self.is_cascaded,
            foreground_labels=self.label_manager.foreground_labels,
            regions=self.label_manager.foreground_regions if self.has_regions else None,
            ignore_label=self.label_manager.ignore_label)
        self.unlabeled_stream = UnlabeledStream(
            self.preprocessed_dataset_folder, self.unlabeled_batch_size or self.batch_size, initial_patch_size,
            self.configuration_manager.patch_size, self.label_manager, transforms, self.device.type == "cuda")
        next(self.unlabeled_stream)
        return train, val

    def on_train_end(self) -> None:
        super().on_train_end()
        if self.unlabeled_stream is not None:
            self.unlabeled_stream.finish()

    @staticmethod
    def full_resolution(output: NetworkOutput) -> torch.Tensor:
        """The highest-resolution output of a (possibly deep-supervised) prediction or target."""
        return output[0] if isinstance(output, (list, tuple)) else output

    def supervised_loss(self, output: NetworkOutput, target: NetworkOutput, num_labeled: int) -> torch.Tensor:
        """nnU-Net's own loss (deep supervision included) on the labeled part of the batch."""
        labeled = [o[:num_labeled] for o in output] if isinstance(output, (list, tuple)) else output[:num_labeled]
        return self.loss(labeled, target)

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return probabilities(logits, self.has_regions)

    def teacher_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Full-resolution segmentation logits of the teacher (its level-set output, if any, dropped)."""
        output = self.teacher.network(x)
        return output[0] if isinstance(output, tuple) else output

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

    def train_step(self, batch: dict) -> dict:
        labeled = batch["data"]
        data = torch.cat((labeled[:, :self.num_input_channels], next(self.unlabeled_stream)["data"]))
        data = data.to(self.device, non_blocking=True)
        label_derived = labeled[:, self.num_input_channels:].to(self.device, non_blocking=True)
        target = batch["target"]
        target = [t.to(self.device, non_blocking=True) for t in target] if isinstance(target, list) \
            else target.to(self.device, non_blocking=True)

        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            terms = self.compute_loss(data, self.network(data), target, label_derived, labeled.shape[0])
        logged = self.optimize(terms)
        if self.teacher is not None:
            self.teacher.update(self.student, self.optimizer_steps)
        self.optimizer_steps += 1
        return logged

    def save_checkpoint(self, filename: str) -> None:
        super().save_checkpoint(filename)
        if self.local_rank == 0 and not self.disable_checkpointing:
            checkpoint = torch.load(filename, map_location="cpu", weights_only=False)
            checkpoint["nnunet_ext_state"] = {
                "optimizer_steps": self.optimizer_steps,
                "teacher_weights": None if self.teacher is None else self.teacher.state_dict(),
            }
            torch.save(checkpoint, filename)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        super().load_checkpoint(filename_or_checkpoint)
        checkpoint = filename_or_checkpoint if isinstance(filename_or_checkpoint, dict) else \
            torch.load(filename_or_checkpoint, map_location=self.device, weights_only=False)
        state = checkpoint.get("nnunet_ext_state")
        if state is None:
            raise RuntimeError(f"The checkpoint has no nnunet_ext method state (teacher, step counter); it was "
                               f"not written by {type(self).__name__}, so training cannot resume from it.")
        self.optimizer_steps = state["optimizer_steps"]
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher_weights"])

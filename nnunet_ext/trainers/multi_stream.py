"""The base of every method that learns from more than nnU-Net's labeled stream (DESIGN.md §5), written once.

``nnUNetTrainerMultiStream`` owns, beside nnU-Net's labeled loader,

* the method's **named streams** (unlabeled cases, a partner dataset's cases, …): a method returns their
  :class:`~nnunet_ext.data.streams.StreamSpec` from :meth:`stream_specs` and computes its terms from the
  batches ``{'labeled': …, <stream name>: …}`` in :meth:`compute_terms`;
* the **optimizer-step counter**, so ramps and thresholds are functions of the fraction of training done
  (:meth:`ramped`), for short and full schedules alike;
* an optional **EMA teacher** (``ema_decay``), updated after every optimizer step, kept in ``train()`` mode
  (Monte-Carlo dropout, as the originals) or ``eval()`` mode (``teacher_mode``);
* the **method state** in every checkpoint (step counter, teacher, and what a method adds in
  :meth:`method_state`), restored by ``--c``.

``network_weights`` holds the student, which is what the papers evaluate and what ``nnUNetv2_predict`` loads.
Options are class attributes, because nnU-Net's trainer ``__init__`` must keep its exact five arguments; a variant
subclass overrides them.
"""
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.utilities.label_handling.label_handling import LabelManager
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager
from torch import distributed as dist

from nnunet_ext.data.streams import Stream, StreamSpec, build_stream
from nnunet_ext.training.schedules import sigmoid_rampup, training_fraction
from nnunet_ext.training.teacher import EMATeacher
from nnunet_ext.trainers.loss_terms import nnUNetTrainerLossTerms

Batch = Dict[str, Any]
TensorOrList = Union[torch.Tensor, List[torch.Tensor]]
TEACHER_MODES = ("train", "eval")


def rank_share(total: int, world_size: int, rank: int) -> int:
    """This rank's part of a global batch of ``total`` samples, split as nnU-Net splits its labeled batch (the
    first ``total % world_size`` ranks take one more)."""
    return total // world_size + (1 if rank < total % world_size else 0)


class nnUNetTrainerMultiStream(nnUNetTrainerLossTerms):
    """Base class; a method declares :meth:`stream_specs` and implements :meth:`compute_terms`."""

    consistency_rampup: float = 1.0
    """Fraction of training over which :meth:`ramped` weights ramp up; the originals ramp over the whole run."""
    ema_decay: Optional[float] = None
    """Decay of the EMA teacher; ``None``: the method has no teacher."""
    teacher_mode: str = "train"
    """``"train"``: the teacher runs with dropout active (Monte-Carlo passes); ``"eval"``: deterministically."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.require_option("teacher_mode", TEACHER_MODES)
        self.optimizer_steps = 0
        self.teacher: Optional[EMATeacher] = None
        self.streams: Dict[str, Stream] = {}

    def initialize(self) -> None:
        super().initialize()
        if self.ema_decay is not None:
            teacher = self.build_network_architecture(self.plans_manager, self.configuration_manager,
                                                      self.num_input_channels,
                                                      self.label_manager.num_segmentation_heads, False)
            self.teacher = EMATeacher(teacher.to(self.device), self.student, self.ema_decay)
            self.teacher.network.train(self.teacher_mode == "train")

    @property
    def student(self) -> torch.nn.Module:
        """The trained network (the student) without DDP / torch.compile wrappers."""
        return self.trained_network

    @property
    def world_size(self) -> int:
        return dist.get_world_size() if self.is_ddp else 1

    def per_rank(self, total: int) -> int:
        """This rank's share of a global batch size given by a method option."""
        return rank_share(total, self.world_size, self.local_rank)

    @property
    def training_fraction(self) -> float:
        return training_fraction(self.optimizer_steps, self.num_epochs, self.num_iterations_per_epoch)

    def ramped(self, weight: float) -> float:
        """``weight`` times the sigmoid ramp-up at the current point of training (spec §1.1)."""
        return weight * sigmoid_rampup(self.training_fraction, self.consistency_rampup)

    def training_transforms(self, configuration_manager: Optional[ConfigurationManager] = None,
                            label_manager: Optional[LabelManager] = None) -> ComposeTransforms:
        """The labeled stream's augmentation, as nnU-Net builds it in ``get_dataloaders``; with another dataset's
        configuration and label manager (a partner's), the same augmentation with that dataset's normalisation
        masks and labels."""
        configuration_manager = configuration_manager or self.configuration_manager
        label_manager = label_manager or self.label_manager
        rotation, dummy_2d, _, mirror_axes = self.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        return self.get_training_transforms(
            self.configuration_manager.patch_size, rotation, self._get_deep_supervision_scales(), mirror_axes,
            dummy_2d, use_mask_for_norm=configuration_manager.use_mask_for_norm, is_cascaded=self.is_cascaded,
            foreground_labels=label_manager.foreground_labels,
            regions=label_manager.foreground_regions if label_manager.has_regions else None,
            ignore_label=label_manager.ignore_label)

    def stream_specs(self) -> Sequence[StreamSpec]:
        """The method's streams besides nnU-Net's labeled one; built once, when the loaders start."""
        return ()

    def get_dataloaders(self):
        train, val = super().get_dataloaders()
        self.streams = {spec.name: build_stream(spec) for spec in self.stream_specs()}
        return train, val

    @staticmethod
    def rows(output: TensorOrList, selection: slice) -> TensorOrList:
        """The selected samples of a network output, target or deep-supervision list."""
        return [o[selection] for o in output] if isinstance(output, (list, tuple)) else output[selection]

    @staticmethod
    def full_resolution(output: TensorOrList) -> torch.Tensor:
        """The highest-resolution output of a (possibly deep-supervised) prediction or target."""
        return output[0] if isinstance(output, (list, tuple)) else output

    def supervised_loss(self, output: TensorOrList, target: TensorOrList, num_labeled: int) -> torch.Tensor:
        """nnU-Net's own loss (deep supervision included) on the labeled part of the batch."""
        return self.loss(self.rows(output, slice(num_labeled)), target)

    def next_batches(self, labeled: Batch) -> Dict[str, Batch]:
        """``{'labeled': nnU-Net's batch, <name>: the next batch of each stream}`` (on the CPU)."""
        return {"labeled": labeled, **{name: next(stream) for name, stream in self.streams.items()}}

    def compute_terms(self, batches: Dict[str, Batch]) -> Dict[str, torch.Tensor]:
        """The method's objective for one step: ``{'loss': total, <each name of logged_terms>: value}``."""
        raise NotImplementedError(f"{type(self).__name__} is a shared base, not a method: train one of its "
                                  "subclasses (e.g. nnUNetTrainerMeanTeacher).")

    def train_step(self, batch: Batch) -> dict:
        batches = self.next_batches(batch)
        self.optimizer.zero_grad(set_to_none=True)
        with self.autocast():
            terms = self.compute_terms(batches)
        logged = self.optimize(terms)
        if self.teacher is not None:
            self.teacher.update(self.student, self.optimizer_steps)
        self.optimizer_steps += 1
        return logged

    def on_train_start(self) -> None:
        """nnU-Net's start; a teacher that has not been updated yet starts as the student (which may hold
        ``-pretrained_weights`` loaded after the teacher was built)."""
        super().on_train_start()
        if self.teacher is not None and self.optimizer_steps == 0:
            self.teacher.network.load_state_dict(self.student.state_dict())

    def on_train_end(self) -> None:
        super().on_train_end()
        for stream in self.streams.values():
            stream.finish()

    def method_state(self) -> Dict[str, Any]:
        """The step counter and the teacher's weights; a method adds its own entries."""
        return {"optimizer_steps": self.optimizer_steps,
                "teacher_weights": None if self.teacher is None else self.teacher.state_dict()}

    def load_method_state(self, state: Optional[Dict[str, Any]]) -> None:
        if state is None:
            raise RuntimeError(f"The checkpoint has no nnunet_ext method state (teacher, step counter); it was "
                               f"not written by {type(self).__name__}, so training cannot resume from it.")
        self.optimizer_steps = state["optimizer_steps"]
        if self.teacher is not None:
            self.teacher.load_state_dict(state["teacher_weights"])

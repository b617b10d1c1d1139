"""Named data streams beside nnU-Net's labeled one (DESIGN.md §5), all built by one factory.

The labeled stream of the dataset being trained is nnU-Net's own loader. Every other stream a method needs
(the unlabeled cases; a partner dataset's labeled and unlabeled cases) is an nnU-Net data loader described by a
:class:`StreamSpec` — its folder of preprocessed cases, the case identifiers, its batch size, its patch sampling,
whether it yields targets, and the augmentation of *its own* dataset — and built with :func:`build_stream`.

A stream without targets (unlabeled cases) draws its patches at uniformly random positions: no foreground
oversampling and no ignore-label sampling, since both would steer the crops by a label (and nnU-Net's
ignore-label sampling needs class locations that unlabeled cases do not have). It also drops every transform
that derives a target from the labels, so nothing is ever derived from an unlabeled case. Unlabeled cases live
in ``<data_identifier>_unlabeled`` (written by ``nnunet_ext plan_and_preprocess``); their "segmentation" is only
the nonzero mask nnU-Net's preprocessor derives from the image.

Each stream runs its own augmentation workers (``nnUNet_n_proc_DA``); workers seed from OS entropy, so the
streams of different DDP ranks draw different patches.
"""
import os
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA
from nnunetv2.utilities.label_handling.label_handling import LabelManager

from nnunet_ext.data.transforms import LabelDerivedTargetTransform
from nnunet_ext.paths import UNLABELED_IMAGES_DIR


@dataclass(frozen=True)
class StreamSpec:
    """Everything that tells one extra stream from another."""

    name: str
    """How the method refers to the stream's batches (``"unlabeled"``, ``"partner_labeled"``, …)."""
    folder: str
    """Folder of preprocessed cases (nnU-Net's ``<data_identifier>`` folder, or its ``_unlabeled`` sibling)."""
    batch_size: int
    transforms: ComposeTransforms
    """The training augmentation of the stream's own dataset (its normalisation masks, regions, …)."""
    label_manager: LabelManager
    patch_size: Sequence[int]
    initial_patch_size: Sequence[int]
    """The larger patch loaded before the spatial augmentation crops ``patch_size`` (nnU-Net's rotation margin)."""
    identifiers: Optional[Sequence[str]] = None
    """Cases to draw from; ``None``: every case in ``folder``."""
    with_targets: bool = False
    """Whether batches carry nnU-Net's (deep-supervision) targets; without, patches are uniformly random."""
    oversample_foreground_percent: float = 0.0
    """nnU-Net's foreground oversampling, for streams with targets only."""
    pin_memory: bool = False


class RandomPatchDataLoader(nnUNetDataLoader):
    """nnU-Net's loader with uniformly random patch positions: no foreground oversampling and no ignore-label
    sampling (which would read class locations that cases without labels do not have)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.has_ignore = False
        self.oversample_foreground_percent = 0.0


def case_identifiers(folder: str) -> List[str]:
    """Case identifiers in a preprocessed folder; a clear error when the folder is missing or empty."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"No preprocessed cases at {folder}. Unlabeled images go to {UNLABELED_IMAGES_DIR}/ of the raw dataset "
            f"and are preprocessed by 'nnunet_ext plan_and_preprocess' (nnU-Net's own command skips them).")
    identifiers = infer_dataset_class(folder).get_identifiers(folder)
    if not identifiers:
        raise FileNotFoundError(f"{folder} holds no preprocessed case.")
    return identifiers


def without_label_derived_targets(transforms: ComposeTransforms) -> ComposeTransforms:
    """A training pipeline minus the transforms that derive targets from labels."""
    return ComposeTransforms([t for t in transforms.transforms if not isinstance(t, LabelDerivedTargetTransform)])


class Stream:
    """Batches of one :class:`StreamSpec`: ``next(stream)`` → ``{'data', 'keys'}`` (plus ``'target'``)."""

    def __init__(self, spec: StreamSpec) -> None:
        self.spec = spec
        identifiers = list(spec.identifiers) if spec.identifiers is not None else case_identifiers(spec.folder)
        dataset = infer_dataset_class(spec.folder)(spec.folder, identifiers)
        if spec.with_targets:
            self.loader = nnUNetDataLoader(dataset, spec.batch_size, spec.initial_patch_size, spec.patch_size,
                                           spec.label_manager, spec.oversample_foreground_percent,
                                           transforms=spec.transforms)
        else:
            self.loader = RandomPatchDataLoader(dataset, spec.batch_size, spec.initial_patch_size, spec.patch_size,
                                                spec.label_manager, transforms=without_label_derived_targets(
                                                    spec.transforms))
        num_processes = get_allowed_n_proc_DA()
        self.augmenter = SingleThreadedAugmenter(self.loader, None) if num_processes == 0 else \
            NonDetMultiThreadedAugmenter(self.loader, None, num_processes, num_cached=max(6, num_processes // 2),
                                         seeds=None, pin_memory=spec.pin_memory, wait_time=0.002)

    def __next__(self) -> Dict:
        batch = next(self.augmenter)
        keys = ("data", "keys", "target") if self.spec.with_targets else ("data", "keys")
        return {key: batch[key] for key in keys}

    def __iter__(self) -> "Stream":
        return self

    def finish(self) -> None:
        """Stop the background workers."""
        if isinstance(self.augmenter, NonDetMultiThreadedAugmenter):
            self.augmenter._finish()


def build_stream(spec: StreamSpec) -> Stream:
    """The one factory of extra streams: an nnU-Net loader (and its workers) for ``spec``, started."""
    stream = Stream(spec)
    next(stream)
    return stream

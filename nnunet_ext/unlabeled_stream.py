"""The unlabeled data stream (DESIGN.md §5): a second nnU-Net loader over the preprocessed unlabeled cases.

Same patch size and augmentation as the labeled stream, random patch positions (foreground oversampling 0:
anything else would steer crops by a label), no label-derived targets, its own augmentation workers
(``nnUNet_n_proc_DA``). The cases live in ``<data_identifier>_unlabeled`` (written by ``nnunet_ext
plan_and_preprocess``); their "segmentation" is only the nonzero mask nnU-Net's preprocessor derives from
the image, so no label is ever read. Workers seed from OS entropy, so DDP ranks draw different patches.
"""
import os
from typing import List

from batchgenerators.dataloading.nondet_multi_threaded_augmenter import NonDetMultiThreadedAugmenter
from batchgenerators.dataloading.single_threaded_augmenter import SingleThreadedAugmenter
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from nnunetv2.training.dataloading.data_loader import nnUNetDataLoader
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.default_n_proc_DA import get_allowed_n_proc_DA

from nnunet_ext.level_set import LabelDerivedTargetTransform
from nnunet_ext.paths import UNLABELED_IMAGES_DIR, unlabeled_preprocessed_folder


def without_label_derived_targets(transforms: ComposeTransforms) -> ComposeTransforms:
    """The labeled training pipeline minus the transforms that derive targets from labels."""
    return ComposeTransforms([t for t in transforms.transforms if not isinstance(t, LabelDerivedTargetTransform)])


def unlabeled_case_identifiers(folder: str) -> List[str]:
    """Case identifiers in a preprocessed unlabeled folder; a clear error when there are none."""
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"No preprocessed unlabeled cases at {folder}. Put the unlabeled images in {UNLABELED_IMAGES_DIR}/ of "
            f"the raw dataset and run 'nnunet_ext plan_and_preprocess' (nnU-Net's own command skips them).")
    identifiers = infer_dataset_class(folder).get_identifiers(folder)
    if not identifiers:
        raise FileNotFoundError(f"{folder} holds no preprocessed unlabeled case.")
    return identifiers


class UnlabeledStream:
    """Batches of augmented unlabeled patches: ``next(stream)`` → ``{'data', 'keys'}``."""

    def __init__(self, preprocessed_dataset_folder: str, batch_size: int, initial_patch_size, patch_size,
                 label_manager, transforms: ComposeTransforms, pin_memory: bool = False) -> None:
        self.folder = unlabeled_preprocessed_folder(preprocessed_dataset_folder)
        identifiers = unlabeled_case_identifiers(self.folder)
        dataset = infer_dataset_class(self.folder)(self.folder, identifiers)
        self.loader = nnUNetDataLoader(dataset, batch_size, initial_patch_size, patch_size, label_manager,
                                       oversample_foreground_percent=0.0, sampling_probabilities=None,
                                       pad_sides=None, transforms=without_label_derived_targets(transforms))
        num_processes = get_allowed_n_proc_DA()
        self.augmenter = SingleThreadedAugmenter(self.loader, None) if num_processes == 0 else \
            NonDetMultiThreadedAugmenter(self.loader, None, num_processes, num_cached=max(6, num_processes // 2),
                                         seeds=None, pin_memory=pin_memory, wait_time=0.002)

    def __next__(self) -> dict:
        batch = next(self.augmenter)
        return {"data": batch["data"], "keys": batch["keys"]}

    def __iter__(self) -> "UnlabeledStream":
        return self

    def finish(self) -> None:
        """Stop the background workers."""
        if isinstance(self.augmenter, NonDetMultiThreadedAugmenter):
            self.augmenter._finish()

"""Folder and file names of nnunet_ext's raw and preprocessed data conventions (DESIGN.md §3, §5)."""
import os
from typing import Union

UNLABELED_IMAGES_DIR = "imagesTrUnlabeled"
"""Raw folder beside ``imagesTr`` holding unlabeled training images, same naming and channels."""

REFERENCE_LABELS_DIR = "labelsTrReference"
"""Raw folder holding true labels of unlabeled / weakly labeled training cases: reporting only, never trained on."""

UNLABELED_SUFFIX = "_unlabeled"


def unlabeled_preprocessed_folder(preprocessed_dataset_folder: str) -> str:
    """Preprocessed folder of the unlabeled cases for one configuration.

    It sits beside nnU-Net's ``<data_identifier>`` folder (never inside it), so nnU-Net's splits never see
    unlabeled cases: ``nnUNet_preprocessed/DatasetXXX/<data_identifier>_unlabeled``.
    """
    return os.path.normpath(preprocessed_dataset_folder) + UNLABELED_SUFFIX


def dataset_name(dataset: Union[int, str]) -> str:
    """nnU-Net's folder name (``DatasetXXX_Name``) of a dataset id or name, looked up as nnU-Net does; a
    ``ValueError`` naming the folders searched when there is none (nnU-Net raises a multi-line RuntimeError)."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name
    try:
        return maybe_convert_to_dataset_name(dataset)
    except RuntimeError as error:
        raise ValueError(" ".join(str(error).split())) from None

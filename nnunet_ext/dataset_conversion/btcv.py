"""BTCV (Multi-Atlas Labeling Beyond the Cranial Vault, abdomen CT, 13 organs) to an nnU-Net raw dataset, with
BTCV's 13 organs or LTUDA's four.

Input (``-i DIR``): the BTCV abdomen release, searched recursively (symbolic links followed): images
``imgNNNN.nii.gz`` and labels ``labelNNNN.nii.gz``, paired by their number, as in ``RawData/Training/img/`` +
``RawData/Training/label/`` and ``RawData/Testing/img/`` (images only). A file name found twice, or a label
without its image, is an error naming the files; other files are ignored.

BTCV's label codes: 0 background, 1 spleen, 2 right kidney, 3 left kidney, 4 gallbladder, 5 esophagus, 6 liver,
7 stomach, 8 aorta, 9 inferior vena cava, 10 portal and splenic vein, 11 pancreas, 12 right adrenal gland,
13 left adrenal gland. Any other value is an error naming the file.

``--label-set full`` (default) keeps the 13 codes as they are. ``--label-set ltuda`` writes LTUDA's four organs
(specs/cmc_gazesup_ltuda.md §3): liver 1 (BTCV 6), spleen 2 (BTCV 1), kidney 3 (BTCV 2 and 3 merged), pancreas 4
(BTCV 11), every other organ background; the same values as AbdomenCT-1K's ``ltuda`` set and the partial-label
union's {background, liver, spleen, kidney, pancreas}.

Where the cases go: LTUDA uses BTCV as an external test set, but nnU-Net needs every raw dataset to hold training
cases (and :class:`RawDatasetWriter` refuses one without), so the labeled cases go to imagesTr/labelsTr, as in
nnU-Net v1's own BTCV dataset (Task017_AbdominalOrganSegmentation); the images without a label (BTCV's Testing
images) go to imagesTs. To test a model trained elsewhere on BTCV, predict ``imagesTr`` and score against
``labelsTr``; to train on BTCV, use it as any nnU-Net dataset. Case ids ``btcv_NNNN`` keep BTCV's numbers.

Output ``Dataset{id}_{name}`` (default name ``BTCV``, ``BTCVLTUDA`` with ``--label-set ltuda``), one channel
``{"0": "CT"}``, ``.nii.gz``. Images are validated and copied byte for byte; labels are re-coded to uint8 on the
image's grid. :class:`RawDatasetWriter` checks that image and label share size, spacing, origin and direction
(an error names the case and both files), writes in ``-np`` worker processes with a progress bar, and lets the
dataset appear only once complete. dataset.json records the label set, the code mapping and the cases.

The release reading and writing is :mod:`~nnunet_ext.dataset_conversion.nifti_release`'s, shared with AbdomenCT-1K.
"""

import argparse
import re
from typing import Optional

from nnunet_ext.dataset_conversion.nifti_release import (NiftiRelease, add_release_arguments, convert_release,
                                                         run_release)

BTCV = NiftiRelease(
    source_name="BTCV", key="btcv",
    organs=dict(enumerate(("spleen", "right_kidney", "left_kidney", "gallbladder", "esophagus", "liver", "stomach",
                           "aorta", "inferior_vena_cava", "portal_and_splenic_vein", "pancreas",
                           "right_adrenal_gland", "left_adrenal_gland"), start=1)),
    to_ltuda={"liver": "liver", "spleen": "spleen", "right_kidney": "kidney", "left_kidney": "kidney",
              "pancreas": "pancreas"},
    image_pattern=re.compile(r"img(\d{4})\.nii\.gz"), label_pattern=re.compile(r"label(\d{4})\.nii\.gz"),
    case_prefix="btcv_", layout="RawData/Training/img/imgNNNN.nii.gz + RawData/Training/label/labelNNNN.nii.gz",
    reference="Landman et al., MICCAI 2015 Multi-Atlas Labeling Beyond the Cranial Vault - Workshop and Challenge, "
              "Synapse syn3193805, doi:10.7303/syn3193805",
    default_name="BTCV")


def convert_btcv(input_folder: str, dataset_id: int, label_set: str = "full", name: Optional[str] = None,
                 num_processes: int = 2, overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert a BTCV abdomen release; return the dataset folder (see the module docstring)."""
    return convert_release(BTCV, input_folder, dataset_id, label_set, name, num_processes, overwrite, raw_root)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert btcv``."""
    parser.description = __doc__.split("\n\n")[0]
    add_release_arguments(parser, BTCV, 736)


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert btcv``."""
    run_release(BTCV, args)

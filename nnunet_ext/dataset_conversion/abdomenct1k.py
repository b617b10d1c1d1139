"""AbdomenCT-1K (abdominal CT, liver / kidney / spleen / pancreas) to an nnU-Net raw dataset, with the release's
codes or LTUDA's.

Input (``-i DIR``): the AbdomenCT-1K release, searched recursively (symbolic links followed): images
``Case_XXXXX_0000.nii.gz`` (the ``AbdomenCT-1K-ImagePart*`` folders) and masks ``Case_XXXXX.nii.gz`` (the ``Mask``
folder), paired by the case number. A file name found twice, or a mask without its image, is an error naming the
files; other files are ignored.

AbdomenCT-1K's label codes: 0 background, 1 liver, 2 kidney (left and right), 3 spleen, 4 pancreas. Any other
value is an error naming the file.

``--label-set full`` (default) keeps these codes. ``--label-set ltuda`` writes LTUDA's order (specs/
cmc_gazesup_ltuda.md §3): liver 1 (AbdomenCT-1K 1), spleen 2 (3), kidney 3 (2), pancreas 4 (4) — note that
spleen and kidney swap places — the same values as BTCV's ``ltuda`` set and the partial-label union's
{background, liver, spleen, kidney, pancreas}.

Where the cases go: as for BTCV (:mod:`~nnunet_ext.dataset_conversion.btcv`), the labeled cases go to
imagesTr/labelsTr (nnU-Net needs training cases; to use AbdomenCT-1K as LTUDA's external test set, predict
``imagesTr`` and score against ``labelsTr``), images without a mask to imagesTs. Case ids are the release's
(``Case_00001``).

Output ``Dataset{id}_{name}`` (default name ``AbdomenCT1K``, ``AbdomenCT1KLTUDA`` with ``--label-set ltuda``), one
channel ``{"0": "CT"}``, ``.nii.gz``; images copied byte for byte, masks re-coded to uint8 on the image's grid,
geometry (size, spacing, origin, direction) of image and mask checked, ``-np`` writer processes with a progress
bar, nothing left behind on an error. dataset.json records the label set, the code mapping and the cases.
"""
import argparse
import re
from typing import Optional

from nnunet_ext.dataset_conversion.nifti_release import (NiftiRelease, add_release_arguments, convert_release,
                                                         run_release)

ABDOMENCT1K = NiftiRelease(
    source_name="AbdomenCT-1K", key="abdomenct1k", organs={1: "liver", 2: "kidney", 3: "spleen", 4: "pancreas"},
    to_ltuda={"liver": "liver", "kidney": "kidney", "spleen": "spleen", "pancreas": "pancreas"},
    image_pattern=re.compile(r"(Case_\d{5})_0000\.nii\.gz"), label_pattern=re.compile(r"(Case_\d{5})\.nii\.gz"),
    case_prefix="", layout="AbdomenCT-1K-ImagePart*/Case_XXXXX_0000.nii.gz + Mask/Case_XXXXX.nii.gz",
    reference="Ma et al., AbdomenCT-1K: Is Abdominal Organ Segmentation a Solved Problem?, IEEE TPAMI 44(10), 2022",
    default_name="AbdomenCT1K")


def convert_abdomenct1k(input_folder: str, dataset_id: int, label_set: str = "full", name: Optional[str] = None,
                        num_processes: int = 2, overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert an AbdomenCT-1K release; return the dataset folder (see the module docstring)."""
    return convert_release(ABDOMENCT1K, input_folder, dataset_id, label_set, name, num_processes, overwrite, raw_root)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert abdomenct1k``."""
    parser.description = __doc__.split("\n\n")[0]
    add_release_arguments(parser, ABDOMENCT1K, 737)


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert abdomenct1k``."""
    run_release(ABDOMENCT1K, args)

"""``nnunet_ext convert NAME ...``: one subcommand per public dataset.

Each converter module provides ``add_arguments(parser)`` and ``run(args)``. A converter's module is imported
only when its name is on the command line, so ``nnunet_ext convert --help`` stays fast and one converter's
optional dependencies never affect another.
"""
import argparse
import importlib
from typing import Dict, Tuple

from nnunet_ext.help_format import DefaultsHelpFormatter

CONVERTERS: Dict[str, Tuple[str, str]] = {
    "la": ("nnunet_ext.dataset_conversion.la2018",
           "LA 2018 left-atrium MRI (the h5 release of the semi-supervised papers) to labeled, unlabeled and test "
           "volumes"),
    "kvasir": ("nnunet_ext.dataset_conversion.kvasir",
               "Kvasir-SEG polyp images to RGB PNG cases, with true masks or GazeSup gaze pseudo-masks"),
    "nci_isbi": ("nnunet_ext.dataset_conversion.nci_isbi",
                 "NCI-ISBI 2013 prostate MRI (TCIA DICOM + NRRD labels) to 3-D volumes, or gazed 2-D slices with "
                 "gaze pseudo-masks"),
    "amos": ("nnunet_ext.dataset_conversion.amos",
             "AMOS 2022 abdominal CT and MRI to two partner datasets with one label set (CMC)"),
    "brats": ("nnunet_ext.dataset_conversion.brats",
              "BraTS 2018-2021 or 2023 brain tumour MR to four-channel volumes (T1, T1ce, T2, FLAIR) with the tumour "
              "regions"),
    "mscmrseg": ("nnunet_ext.dataset_conversion.mscmrseg",
                 "MS-CMRSeg 2019 cardiac MR (or MyoPS) to one dataset per sequence, the two sequences linked as "
                 "partners (CMC)"),
    "acdc": ("nnunet_ext.dataset_conversion.acdc",
             "ACDC cine cardiac MR (the h5 release of WSL4MIS/SSL4MIS) to RV, myocardium and LV volumes split by "
             "patient, or their scribbles"),
    "myops": ("nnunet_ext.dataset_conversion.myops",
              "MyoPS cardiac MR (bSSFP, LGE, T2 co-registered) to three-channel volumes with LV, myocardium, RV, "
              "edema and scar labels"),
    "lits": ("nnunet_ext.dataset_conversion.lits",
             "LiTS liver CT to a liver dataset, the tumour merged into the liver, kept or set to background"),
    "kits": ("nnunet_ext.dataset_conversion.kits",
             "KiTS19/21/23 kidney CT to a kidney dataset, tumour and cyst as background, merged or kept"),
    "msd": ("nnunet_ext.dataset_conversion.msd",
            "any Medical Segmentation Decathlon task (e.g. Task09_Spleen), 4-D multi-modal images split into channels"),
    "btcv": ("nnunet_ext.dataset_conversion.btcv",
             "BTCV abdominal CT with its 13 organs, or LTUDA's liver, spleen, kidney and pancreas"),
    "abdomenct1k": ("nnunet_ext.dataset_conversion.abdomenct1k",
                    "AbdomenCT-1K abdominal CT (liver, kidney, spleen, pancreas), its codes or LTUDA's order"),
    "nih_pancreas": ("nnunet_ext.dataset_conversion.nih_pancreas",
                     "NIH Pancreas-CT (TCIA DICOM + NIfTI labels) to pancreas volumes, optionally DTC's 12/50/20 "
                     "split"),
}
"""Converter name on the command line -> (module path, what it converts)."""


class _LazyConverterSubparsers(argparse._SubParsersAction):
    """argparse's subparsers action, importing the chosen converter to fill its parser just before parsing."""

    def __call__(self, parser, namespace, values, option_string=None):
        name = values[0]
        sub = self._name_parser_map.get(name)
        if sub is not None and sub.get_default("converter_run") is None:
            module = importlib.import_module(CONVERTERS[name][0])
            module.add_arguments(sub)
            sub.set_defaults(converter_run=module.run, command_prog=sub.prog)
        super().__call__(parser, namespace, values, option_string)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One subparser per entry of :data:`CONVERTERS`; its arguments come from the converter module."""
    subparsers = parser.add_subparsers(dest="converter", metavar="DATASET", required=True,
                                       action=_LazyConverterSubparsers)
    for name, (_, converts) in CONVERTERS.items():
        subparsers.add_parser(name, help=converts, description=converts, formatter_class=DefaultsHelpFormatter)


def run(args: argparse.Namespace) -> None:
    """Run the selected converter."""
    args.converter_run(args)

"""The ``nnunet_ext`` command: one entry point, one subcommand per task.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and ``run(args)``.
Modules are imported only when their subcommand is used, so ``nnunet_ext --help`` stays fast.

Errors in what the user gave (a wrong folder, a missing file, bad label values, an unknown dataset) are raised
by our code as ``ValueError`` or ``OSError`` with a message naming the file and the problem; the command prints
them as one line, ``nnunet_ext <command>: error: <message>``, and exits with status 1. Every other error — any
other type, or one raised inside a library — keeps its traceback.
"""
import argparse
import importlib
import os
import sys
import traceback
from typing import List, Optional

from nnunet_ext.help_format import DefaultsHelpFormatter

SUBCOMMANDS = {
    "env": ("nnunet_ext.environment", "print the environment variables nnU-Net needs to find our trainers"),
    "demo": ("nnunet_ext.demo", "convert, plan, train, predict and evaluate on a small synthetic dataset"),
    "trainers": ("nnunet_ext.trainers.catalog", "list every trainer and variant: what it does, the data it needs"),
    "convert": ("nnunet_ext.dataset_conversion.cli", "convert a public dataset to nnU-Net's raw format"),
    "make_semisupervised": ("nnunet_ext.dataset_conversion.semisupervised",
                            "turn an nnU-Net raw dataset into a semi-supervised one"),
    "make_partial_union": ("nnunet_ext.dataset_conversion.partial_union",
                           "one partially labeled dataset from datasets that each annotate one structure"),
    "plan_and_preprocess": ("nnunet_ext.planners.plan_and_preprocess",
                            "nnU-Net's plan and preprocess, plus our planners and unlabeled images"),
    "evaluate": ("nnunet_ext.evaluation.command", "Dice, Jaccard, HD95, ASD and ASSD of a prediction folder"),
    "predict": ("nnunet_ext.inference.command", "nnUNetv2_predict for cases that lack some modalities (--missing)"),
    "evaluate_missing": ("nnunet_ext.evaluation.missing_command",
                         "Dice of every subset of the modalities: one table and a heat-map (MAML, stock)"),
    "benchmark": ("nnunet_ext.benchmark", "train-step and inference time of trainers against stock nnU-Net"),
    "gaze": ("nnunet_ext.gaze.command", "gaze heatmaps, dense-CRF maps and level masks from GazeMedSeg fixations"),
}
USER_ERRORS = (ValueError, OSError)
"""Exception types our code raises for bad input (``FileNotFoundError`` and friends are ``OSError``)."""
PACKAGE_FOLDER = os.path.dirname(os.path.abspath(__file__))


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen subcommand's module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="nnunet_ext", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text, formatter_class=DefaultsHelpFormatter)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run, command_prog=sub.prog)
    return parser


def raised_by_us(error: BaseException) -> bool:
    """Whether the innermost frame of ``error``'s traceback is in this package (an error we raised on purpose,
    not one a library ran into)."""
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and os.path.abspath(frames[-1].filename).startswith(PACKAGE_FOLDER + os.sep)


def parse_arguments(argv: List[str]) -> argparse.Namespace:
    """The parsed command line; only the chosen subcommand's module is imported."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return build_parser(command).parse_args(argv)


def main(argv: Optional[List[str]] = None) -> None:
    """Run one subcommand; errors propagate (for calls from Python and the tests)."""
    args = parse_arguments(sys.argv[1:] if argv is None else argv)
    args.run(args)


def console_main() -> None:
    """Entry point of the ``nnunet_ext`` console script: bad input is one line on stderr and exit status 1."""
    args = parse_arguments(sys.argv[1:])
    try:
        args.run(args)
    except USER_ERRORS as error:
        if not raised_by_us(error):
            raise
        sys.stderr.write(f"{args.command_prog}: error: {' '.join(str(error).split())}\n")
        sys.exit(1)


if __name__ == "__main__":
    console_main()

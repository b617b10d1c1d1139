"""The ``nnunet_ext`` command: one entry point, one subcommand per task.

Each subcommand lives in its own module, which provides ``add_arguments(parser)`` and ``run(args)``.
Modules are imported only when their subcommand is used, so ``nnunet_ext --help`` stays fast.
"""
import argparse
import importlib
import sys
from typing import List, Optional

SUBCOMMANDS = {
    "env": ("nnunet_ext.environment", "print the environment variables nnU-Net needs to find our trainers"),
    "demo": ("nnunet_ext.demo", "convert, plan, train, predict and evaluate on a small synthetic dataset"),
    "convert": ("nnunet_ext.dataset_conversion.cli", "convert a public dataset to nnU-Net's raw format"),
    "make_semisupervised": ("nnunet_ext.dataset_conversion.semisupervised",
                            "turn an nnU-Net raw dataset into a semi-supervised one"),
    "plan_and_preprocess": ("nnunet_ext.planners.plan_and_preprocess",
                            "nnU-Net's plan and preprocess, plus our planners and unlabeled images"),
    "evaluate": ("nnunet_ext.evaluation.command", "Dice, Jaccard, HD95, ASD and ASSD of a prediction folder"),
    "benchmark": ("nnunet_ext.benchmark", "train-step and inference time of trainers against stock nnU-Net"),
    "gaze": ("nnunet_ext.gaze.command", "gaze heatmaps, dense-CRF maps and level masks from GazeMedSeg fixations"),
}


def build_parser(command: Optional[str] = None) -> argparse.ArgumentParser:
    """The top-level parser; only the chosen subcommand's module is imported to add its arguments."""
    parser = argparse.ArgumentParser(prog="nnunet_ext", description=__doc__.splitlines()[0])
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        if name == command:
            module = importlib.import_module(module_name)
            module.add_arguments(sub)
            sub.set_defaults(run=module.run)
    return parser


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``nnunet_ext`` console script."""
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()

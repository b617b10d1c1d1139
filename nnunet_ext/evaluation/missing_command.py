"""``nnunet_ext evaluate_missing``: the command line of :mod:`nnunet_ext.evaluation.missing_modalities`."""
import argparse
import os

from nnunet_ext.evaluation.missing_modalities import evaluate_missing, format_markdown
from nnunet_ext.inference.command import add_model_arguments, predictor_from_arguments
from nnunet_ext.inference.missing_modalities import PROTOCOLS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The model (as nnUNetv2_predict chooses it), the test images and references, the output folder."""
    parser.add_argument("-i", dest="images", required=True, help="test images (CASE_XXXX files, every channel)")
    parser.add_argument("-ref", dest="references", required=True, help="reference segmentations of those cases")
    parser.add_argument("-o", dest="output", required=True, help="output folder: predictions per subset, the table")
    add_model_arguments(parser)
    parser.add_argument("--protocol", nargs="+", choices=PROTOCOLS, default=["joint"],
                        help="MAML read-out(s) to tabulate; a stock model is always predicted zero-filled")
    parser.add_argument("-np", dest="num_processes", type=int, default=2, help="processes scoring the cases")


def run(args: argparse.Namespace) -> None:
    """Predict every subset, score it, print the table and say where it went."""
    predictor = predictor_from_arguments(args)
    table = evaluate_missing(predictor, args.images, args.references, args.output, args.protocol,
                             args.npp, args.nps, args.num_processes)
    print(format_markdown(table))
    print(f"\ntable written to {os.path.join(args.output, 'missing_modalities.csv')} (and .json, .png)")


"""``nnunet_ext evaluate``: the command line of :mod:`nnunet_ext.evaluation`."""
import argparse
import os

from nnunet_ext.evaluation.folders import evaluate_folders, format_table
from nnunet_ext.evaluation.label_sets import annotated_labels_from, regions_from_dataset_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-ref", required=True, help="folder of reference segmentations")
    parser.add_argument("-pred", required=True, help="folder of predictions, same file names as the references")
    parser.add_argument("-o", dest="output_file", default=None,
                        help="output JSON file (default: PRED/summary.json)")
    parser.add_argument("--voxel-units", action="store_true",
                        help="distances in voxels (spacing 1 per axis) instead of the reference spacing's mm")
    parser.add_argument("-l", dest="labels", type=int, nargs="+", default=None,
                        help="labels to evaluate (default: every non-zero value found in the references)")
    parser.add_argument("--regions-from", metavar="DATASET_JSON", default=None,
                        help="score the regions this dataset.json declares (e.g. BraTS whole tumour [1, 2, 3], "
                             "tumour core [2, 3], enhancing tumour [3]) instead of single labels")
    parser.add_argument("--annotated-labels-from", metavar="DATASET_JSON", default=None,
                        help="partially labeled data: score each case only on the classes its 'annotated_labels' "
                             "entry in this dataset.json names (means over the cases that annotate a class)")
    parser.add_argument("-np", dest="num_processes", type=int, default=2,
                        help="number of processes evaluating cases in parallel (default: 2)")


def run(args: argparse.Namespace) -> None:
    regions = regions_from_dataset_json(args.regions_from) if args.regions_from else None
    annotated = annotated_labels_from(args.annotated_labels_from) if args.annotated_labels_from else None
    summary = evaluate_folders(args.ref, args.pred, labels=args.labels, output_file=args.output_file,
                               voxel_units=args.voxel_units, num_processes=args.num_processes, regions=regions,
                               annotated_labels=annotated)
    print(format_table(summary))
    output_file = args.output_file if args.output_file is not None else os.path.join(args.pred, "summary.json")
    print(f"\nsummary written to {output_file}")

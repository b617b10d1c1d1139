"""``nnunet_ext evaluate``: the command line of :mod:`nnunet_ext.evaluation`.

Folders are given as nnU-Net's ``nnUNetv2_evaluate_folder`` takes them (``evaluate REF PRED``) or with ``-ref`` /
``-pred``; ``--chill`` is nnU-Net's flag too.
"""
import argparse
import json
import os
import sys
from typing import Optional

from nnunet_ext.evaluation.folders import evaluate_folders, format_table
from nnunet_ext.evaluation.label_sets import annotated_labels_from, regions_from_dataset_json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext evaluate``."""
    parser.add_argument("references", nargs="?", metavar="REF", help="folder of reference segmentations")
    parser.add_argument("predictions", nargs="?", metavar="PRED",
                        help="folder of predictions, same file names as the references")
    parser.add_argument("-ref", help="folder of reference segmentations (instead of REF)")
    parser.add_argument("-pred", help="folder of predictions (instead of PRED)")
    parser.add_argument("-o", dest="output_file", default=None,
                        help="output JSON file (default: PRED/summary.json)")
    parser.add_argument("--voxel-units", action="store_true",
                        help="distances in voxels (spacing 1 per axis) instead of the reference spacing's mm "
                             "(2-D PNG / BMP images have no spacing: their distances are always in pixels)")
    parser.add_argument("-l", dest="labels", type=int, nargs="+", default=None,
                        help="labels to evaluate (default: every non-zero value found in the references)")
    parser.add_argument("--regions-from", metavar="DATASET_JSON", default=None,
                        help="score the regions this dataset.json declares (e.g. BraTS whole tumour [1, 2, 3], "
                             "tumour core [2, 3], enhancing tumour [3]) instead of single labels")
    parser.add_argument("--annotated-labels-from", metavar="DATASET_JSON", default=None,
                        help="partially labeled data: score each case only on the classes its 'annotated_labels' "
                             "entry in this dataset.json names (means over the cases that annotate a class)")
    parser.add_argument("--slice-hd", action="store_true",
                        help="also LTUDA's reported 'HD' (slice_HD_px): per slice of the reference's range the 2-D "
                             "Hausdorff distance (maximum) in pixels, slices with an empty prediction skipped, "
                             "averaged; for comparing with the paper beside HD95 in mm")
    parser.add_argument("--chill", action="store_true",
                        help="score the references that have a prediction and list the others, instead of stopping")
    parser.add_argument("-np", dest="num_processes", type=int, default=2,
                        help="number of processes evaluating cases in parallel (default: 2)")
    parser.set_defaults(parser=parser)


def folder_argument(parser: argparse.ArgumentParser, positional: Optional[str], flag: Optional[str],
                    name: str) -> str:
    """The folder given as positional argument or as flag; a usage error (exit 2) for both or neither."""
    if positional is not None and flag is not None and os.path.abspath(positional) != os.path.abspath(flag):
        parser.error(f"the {name} folder is given twice ({positional} and -{name} {flag}); give one")
    if positional is None and flag is None:
        parser.error(f"the following arguments are required: the {name} folder (`nnunet_ext evaluate REF PRED` or "
                     f"-ref REF -pred PRED)")
    return positional if positional is not None else flag


def ordinal_gaze_warning(ref_dir: str, regions_given: bool) -> Optional[str]:
    """A warning when ``ref_dir`` is the labelsTr of a gaze dataset scored as plain labels: its values are
    ordinal level counts, so each value would be scored as a class of its own."""
    dataset_json = os.path.join(os.path.dirname(os.path.abspath(ref_dir)), "dataset.json")
    if regions_given or os.path.basename(os.path.abspath(ref_dir)) != "labelsTr" or not os.path.isfile(dataset_json):
        return None
    with open(dataset_json) as f:
        if "gaze" not in json.load(f):
            return None
    return (f"WARNING: {ref_dir} holds gaze pseudo-masks as ordinal maps (value = number of levels reached), "
            f"scored here as plain labels (each value on its own); score the levels with --regions-from "
            f"{dataset_json}, or the true masks in labelsTrReference")


def run(args: argparse.Namespace) -> None:
    """Evaluate, print the table and say where the summary went."""
    ref_dir = folder_argument(args.parser, args.references, args.ref, "ref")
    pred_dir = folder_argument(args.parser, args.predictions, args.pred, "pred")
    warning = ordinal_gaze_warning(ref_dir, args.regions_from is not None)
    if warning:
        print(warning, file=sys.stderr)
    regions = regions_from_dataset_json(args.regions_from) if args.regions_from else None
    annotated = annotated_labels_from(args.annotated_labels_from) if args.annotated_labels_from else None
    summary = evaluate_folders(ref_dir, pred_dir, labels=args.labels, output_file=args.output_file,
                               voxel_units=args.voxel_units, num_processes=args.num_processes, regions=regions,
                               annotated_labels=annotated, chill=args.chill, slice_hd=args.slice_hd)
    print(format_table(summary))
    if summary.get("missing_predictions"):
        print(f"\n--chill: {len(summary['missing_predictions'])} reference(s) without a prediction in {pred_dir}, "
              f"not scored: {', '.join(summary['missing_predictions'])}")
    output_file = args.output_file if args.output_file is not None else os.path.join(pred_dir, "summary.json")
    print(f"\nsummary written to {output_file}")

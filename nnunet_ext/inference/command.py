"""``nnunet_ext predict``: ``nnUNetv2_predict`` (same flags) for cases that lack some modalities, or with another
classifier of a model that has several.

``--missing NAMES`` makes those channels absent for every case; a case whose folder lacks a channel's file has it
absent too, so a folder where some cases have every channel and some do not is predicted case by case.
``--protocol`` says how a MAML model treats absent modalities (:mod:`nnunet_ext.inference.missing_modalities`).
``--classifier`` chooses an LTUDA model's classifier (linear threshold rule, labeled or unlabeled prototypes).
"""
import argparse
import os

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.file_path_utilities import get_output_folder

from nnunet_ext.inference.missing_modalities import PROTOCOLS, channel_indices, channel_names, predict_with_missing
from nnunet_ext.networks.prototype_unet import CLASSIFIERS


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """nnUNetv2_predict's arguments that choose the model and how it predicts."""
    parser.add_argument("-d", dest="dataset", required=True, help="dataset name or id")
    parser.add_argument("-p", dest="plans", default="nnUNetPlans", help="plans identifier")
    parser.add_argument("-tr", dest="trainer", default="nnUNetTrainer", help="trainer class of the model")
    parser.add_argument("-c", dest="configuration", required=True, help="configuration")
    parser.add_argument("-f", dest="folds", nargs="+", default=["0", "1", "2", "3", "4"],
                        help="folds to ensemble ('all' for the fold trained on every case)")
    parser.add_argument("-chk", dest="checkpoint", default="checkpoint_final.pth", help="checkpoint file name")
    parser.add_argument("-step_size", type=float, default=0.5, help="sliding-window step (fraction of the patch)")
    parser.add_argument("--disable_tta", action="store_true", help="no mirroring at test time")
    parser.add_argument("--verbose", action="store_true", help="nnU-Net's verbose output")
    parser.add_argument("-npp", type=int, default=3, help="processes for preprocessing")
    parser.add_argument("-nps", type=int, default=3, help="processes for the segmentation export")
    parser.add_argument("-device", default="cuda", choices=("cuda", "cpu", "mps"), help="device to predict on")
    parser.add_argument("--disable_progress_bar", action="store_true", help="no progress bar")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """nnUNetv2_predict's arguments plus ``--missing`` and ``--protocol``."""
    parser.add_argument("-i", dest="input", required=True, help="input folder (CASE_XXXX files, as nnUNetv2_predict)")
    parser.add_argument("-o", dest="output", required=True, help="output folder")
    add_model_arguments(parser)
    parser.add_argument("--save_probabilities", action="store_true", help="also export probabilities (.npz)")
    parser.add_argument("--continue_prediction", action="store_true", help="keep the cases already predicted")
    parser.add_argument("-prev_stage_predictions", default=None, help="previous stage's predictions (cascade)")
    parser.add_argument("-num_parts", type=int, default=1, help="number of separate calls sharing the cases")
    parser.add_argument("-part_id", type=int, default=0, help="which of the -num_parts calls this is")
    parser.add_argument("--missing", nargs="+", default=[], metavar="CHANNEL",
                        help="channels absent in every case (names as in dataset.json's channel_names, or indices)")
    parser.add_argument("--protocol", choices=PROTOCOLS, default="joint",
                        help="MAML models: 'joint' = fused head without the absent modalities (as trained with "
                             "modality dropout), 'branches' = mean of the present branches' probabilities")
    parser.add_argument("--classifier", choices=CLASSIFIERS, default=None,
                        help="LTUDA models: the classifier to predict with instead of the trained model's recorded "
                             "one ('unlabeled' / 'labeled' prototypes, 'linear' threshold rule)")


def predictor_from_arguments(args: argparse.Namespace) -> nnUNetPredictor:
    """nnU-Net's predictor of the model the arguments name, as nnUNetv2_predict builds it."""
    model_folder = get_output_folder(args.dataset, args.trainer, args.plans, args.configuration)
    if not os.path.isdir(model_folder):
        raise ValueError(f"there is no trained model in {model_folder} (-d {args.dataset} -tr {args.trainer} "
                         f"-p {args.plans} -c {args.configuration})")
    device = torch.device(args.device)
    predictor = nnUNetPredictor(tile_step_size=args.step_size, use_gaussian=True, use_mirroring=not args.disable_tta,
                                perform_everything_on_device=device.type == "cuda", device=device,
                                verbose=args.verbose, allow_tqdm=not args.disable_progress_bar)
    folds = [fold if fold == "all" else int(fold) for fold in args.folds]
    predictor.initialize_from_trained_model_folder(model_folder, folds, args.checkpoint)
    return predictor


def choose_classifier(predictor: nnUNetPredictor, classifier: str) -> None:
    """Predict with ``classifier`` (a network with several classifiers: LTUDA's); refused for any other network."""
    network = getattr(predictor.network, "_orig_mod", predictor.network)
    if not hasattr(network, "classifier"):
        raise ValueError(f"--classifier needs a network with several classifiers (nnUNetTrainerLTUDA); "
                         f"{type(network).__name__} has one")
    network.classifier = classifier


def run(args: argparse.Namespace) -> None:
    """Predict, then say which cases were predicted without which channels."""
    if not 0 <= args.part_id < args.num_parts:
        raise ValueError(f"-part_id {args.part_id} must lie in 0 … {args.num_parts - 1} "
                         f"(-num_parts {args.num_parts})")
    predictor = predictor_from_arguments(args)
    if args.classifier is not None:
        choose_classifier(predictor, args.classifier)
    missing = channel_indices(predictor.dataset_json, args.missing)
    groups = predict_with_missing(predictor, args.input, args.output, missing, args.protocol, args.save_probabilities,
                                  not args.continue_prediction, args.npp, args.nps, args.prev_stage_predictions,
                                  args.num_parts, args.part_id)
    names = channel_names(predictor.dataset_json)
    for absent, cases in groups.items():
        how = f"without {', '.join(names[c] for c in absent)} (protocol {args.protocol})" if absent else \
            "with every channel"
        print(f"{len(cases)} case(s) predicted {how} into {args.output}")

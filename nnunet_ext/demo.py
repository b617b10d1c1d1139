"""``nnunet_ext demo``: the whole chain on a small synthetic dataset, in a few minutes.

convert (generate) → ``nnunet_ext plan_and_preprocess`` → ``nnUNetv2_train`` with a short variant of the
chosen trainer → stock ``nnUNetv2_predict`` → ``nnunet_ext evaluate``. The dataset matches the trainer's family:
3-D volumes with unlabeled cases (``3d_fullres``) for the semi-supervised trainers and the supervised baseline,
2-D RGB images with gaze pseudo-mask levels (``2d``, true masks in labelsTs) for the GazeSup trainers, two
unpaired partner datasets ("CT" as ``-d``, "MR" as ``-d`` + 1, planned ``--joint``, ``2d``, both predicted) for
CMC. Every step runs as the command a user
would type, in its own process, inside a work folder of its own (nnU-Net's three folders are set there, so
the demo never touches a user's real ones). The short variant is written as a small module in the work
folder and found through ``nnUNet_extTrainer``, which is how a user adds their own schedule variants.
"""
import argparse
import os

import torch

from nnunet_ext.pipeline import (STOCK_TRAINER, console_script, nnunet_ext_command, pipeline_environment, run_step,
                                 write_schedule_variants)
from nnunet_ext import trainers
from nnunet_ext.trainers import __all__ as OUR_TRAINERS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-tr", "--trainer", default="nnUNetTrainerMeanTeacher", choices=OUR_TRAINERS + [STOCK_TRAINER],
                        help="trainer to demonstrate (nnUNetTrainer = the supervised-only baseline; the GazeSup "
                             "trainers get a 2-D gaze dataset, CMC two unpaired partner datasets)")
    parser.add_argument("-d", "--dataset-id", type=int, default=999, help="dataset id of the synthetic dataset (CMC: also the next id)")
    parser.add_argument("-o", "--work-dir", default="nnunet_ext_demo", help="folder for everything the demo writes")
    parser.add_argument("--epochs", type=int, default=2, help="epochs of the short schedule")
    parser.add_argument("--iterations", type=int, default=20, help="training iterations per epoch")
    parser.add_argument("-device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cpu", "cuda"))


def run(args: argparse.Namespace) -> None:
    work = os.path.abspath(args.work_dir)
    variants_folder = os.path.join(work, "trainers")
    variant, = write_schedule_variants(variants_folder, [args.trainer], "demo", args.epochs, args.iterations)
    env = pipeline_environment(work, variants_folder)
    dataset = str(args.dataset_id)

    from nnunet_ext.dataset_conversion.synthetic import (write_synthetic_dataset, write_synthetic_gaze_dataset,
                                                         write_synthetic_partner_datasets)
    trainer_class = getattr(trainers, args.trainer, None)
    gaze = trainer_class is not None and issubclass(trainer_class, trainers.nnUNetTrainerGazeSup)
    two_datasets = trainer_class is not None and issubclass(trainer_class, trainers.nnUNetTrainerCMC)
    configuration = "2d" if gaze or two_datasets else "3d_fullres"
    kind = "gaze" if gaze else "unpaired CT + MR" if two_datasets else "semi-supervised"
    print(f"=== convert: generating the synthetic {kind} dataset", flush=True)
    if gaze:
        raws = [write_synthetic_gaze_dataset(args.dataset_id, num_training=8, num_test=4, size=64,
                                             raw_root=env["nnUNet_raw"], overwrite=True)]
    elif two_datasets:
        raws = list(write_synthetic_partner_datasets(args.dataset_id, args.dataset_id + 1,
                                                     raw_root=env["nnUNet_raw"], overwrite=True))
    else:
        raws = [write_synthetic_dataset(args.dataset_id, num_labeled=6, num_unlabeled=10, num_test=4,
                                        raw_root=env["nnUNet_raw"], overwrite=True)]
    ids = [str(args.dataset_id + k) for k in range(len(raws))]
    print(f"--- raw dataset: {', '.join(raws)}")
    run_step("plan and preprocess", nnunet_ext_command("plan_and_preprocess", "-d", *ids, "-c", configuration,
                                                       "-np", "2", "-npfp", "2",
                                                       *(["--joint"] if two_datasets else [])), env)
    run_step(f"train {variant}", [console_script("nnUNetv2_train"), dataset, configuration, "0", "-tr", variant,
                                  "-device", args.device], env)
    where = [f"  raw dataset          {', '.join(raws)}",
             f"  preprocessed data    {os.path.join(env['nnUNet_preprocessed'], os.path.basename(raws[0]))}"]
    for raw, dataset_id in zip(raws, ids):
        suffix = "" if len(raws) == 1 else f"_{dataset_id}"
        predictions = os.path.join(work, f"predictions_{variant}{suffix}")
        run_step(f"predict {os.path.basename(raw)} (stock nnUNetv2_predict)",
                 [console_script("nnUNetv2_predict"), "-i", os.path.join(raw, "imagesTs"), "-o", predictions,
                  "-d", dataset_id, "-c", configuration, "-f", "0", "-tr", variant, "-device", args.device,
                  "-npp", "0", "-nps", "0"], env)
        summary = os.path.join(predictions, "summary.json")
        run_step("evaluate", nnunet_ext_command("evaluate", "-ref", os.path.join(raw, "labelsTs"), "-pred",
                                                predictions, "-o", summary, *(["--voxel-units"] if gaze else [])), env)
        model = os.path.join(env["nnUNet_results"], os.path.basename(raw), f"{variant}__nnUNetPlans__{configuration}")
        where += [f"  trained model        {model}  (progress.png and training log in fold_0/)",
                  f"  predictions          {predictions}", f"  evaluation summary   {summary}"]
    print("\nDemo finished. Where everything went:\n" + "\n".join(where) +
          f"\n  trainer variant      {os.path.join(variants_folder, 'nnunet_ext_demo_trainers.py')}")

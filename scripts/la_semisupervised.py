"""LA 2018, N labeled + the rest unlabeled (DTC paper protocol: 16 or 8), end to end with a budget knob.

convert (``nnunet_ext convert la``) → ``nnunet_ext plan_and_preprocess`` → ``nnUNetv2_train -f all`` for the
supervised-only baseline (stock nnUNetTrainer on the labeled subset) and for Mean Teacher, UA-MT, DTC and
UG-MCL → stock ``nnUNetv2_predict`` on test.list → ``nnunet_ext evaluate`` in voxels (as the papers report)
and in mm → one table, written as Markdown beside the DTC paper's numbers.

The training budget is a number of iterations (the paper: 6000 at batch 2 + 2); the schedule is nnU-Net's
(poly learning rate, ramps over the whole budget). Runs on whatever cases the LA folder holds
(``--only-present``), e.g. ../shared/data/LA_2018_h5: 16 labeled + 24 unlabeled + 10 test.

    python scripts/la_semisupervised.py --la-dir ../shared/data/LA_2018_h5 --work-dir la_run \
        --iterations 6000 --configuration 3d_fullres
"""
import argparse
import json
import os

from nnunet_ext.pipeline import (STOCK_TRAINER, budgeted_run, console_script, nnunet_ext_command,
                                 plans_with_batch_size, run_step)

TRAINERS = [STOCK_TRAINER, "nnUNetTrainerMeanTeacher", "nnUNetTrainerUAMT", "nnUNetTrainerDTC", "nnUNetTrainerUGMCL"]
PAPER = {  # DTC paper (AAAI 2021) Table 3, LA 16 labeled: Dice %, Jaccard %, 95HD voxels, ASD voxels
    "nnUNetTrainer": ("V-Net 16 labeled", 86.03, 73.26, 17.93, 5.75),
    "nnUNetTrainerMeanTeacher": ("MT", 88.23, 79.29, 10.64, 2.73),
    "nnUNetTrainerUAMT": ("UA-MT", 88.88, 80.21, 7.32, 2.26),
    "nnUNetTrainerDTC": ("DTC", 89.42, 80.98, 7.32, 2.10),
    "nnUNetTrainerUGMCL": ("UG-MCL (not in the DTC table)", None, None, None, None),
}


def parse_args() -> argparse.Namespace:
    """The experiment's options; ``--iterations`` is the budget knob."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--la-dir", required=True, help="LA h5 release (train.list, test.list, 2018LA_Seg_Training Set)")
    parser.add_argument("--work-dir", default="la_semisupervised_run")
    parser.add_argument("--iterations", type=int, default=6000, help="training budget in iterations")
    parser.add_argument("--iterations-per-epoch", type=int, default=250)
    parser.add_argument("--num-labeled", type=int, default=16, help="labeled cases (first N of train.list)")
    parser.add_argument("--seeds", type=int, nargs="+", default=None,
                        help="train every trainer once per seed (variants <trainer>_budget_seed<k>: Python, NumPy "
                             "and torch seeded before the network is built); default: one unseeded run")
    parser.add_argument("--save-every", type=int, default=1,
                        help="write checkpoint_latest every this many epochs, so --c loses little")
    parser.add_argument("--c", action="store_true",
                        help="continue each training from its last checkpoint (nnUNetv2_train --c); finished "
                             "trainings are not repeated")
    parser.add_argument("--configuration", default="3d_fullres", choices=("3d_fullres", "2d"))
    parser.add_argument("--plans-batch-size", type=int, default=0,
                        help="override the plans' batch size (a plans copy nnUNetPlansBudget), e.g. 2 on a CPU")
    parser.add_argument("--trainers", nargs="+", default=TRAINERS)
    parser.add_argument("-device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--disable-tta", action="store_true", help="predict without mirroring (faster on a CPU)")
    parser.add_argument("-d", "--dataset-id", type=int, default=801)
    return parser.parse_args()


def table(rows: dict) -> str:
    lines = ["| trainer | Dice % | Jaccard % | 95HD (vox) | ASD (vox) | 95HD (mm) | ASD (mm) | paper: method | "
             "Dice | Jaccard | 95HD | ASD |", "|" + "---|" * 12]
    for variant, (trainer, voxels, mm) in rows.items():
        name, *paper = PAPER.get(trainer, ("", None, None, None, None))
        paper_cells = " | ".join("" if v is None else f"{v:.2f}" for v in paper)
        lines.append(f"| {variant} | {100 * voxels['Dice']:.2f} | {100 * voxels['Jaccard']:.2f} | {voxels['HD95']:.2f} | "
                     f"{voxels['ASD']:.2f} | {mm['HD95']:.2f} | {mm['ASD']:.2f} | {name} | {paper_cells} |")
    return "\n".join(lines)


def main() -> None:
    """Convert and plan (once) → per trainer: train, stock predict, evaluate → one table in the work dir."""
    args = parse_args()
    work = os.path.abspath(args.work_dir)
    seeds = args.seeds or [None]
    epochs, iterations, variants, env = budgeted_run(work, args.trainers, args.iterations, args.iterations_per_epoch,
                                                     seeds, args.save_every)
    dataset = str(args.dataset_id)
    raw = os.path.join(env["nnUNet_raw"], f"Dataset{args.dataset_id:03d}_LA")
    if not os.path.isdir(raw):
        run_step("convert", nnunet_ext_command("convert", "la", "-i", args.la_dir, "-d", dataset, "--num-labeled",
                                               str(args.num_labeled),
                                               "--only-present", "-np", "2"), env)
        run_step("plan and preprocess", nnunet_ext_command("plan_and_preprocess", "-d", dataset, "-c",
                                                           args.configuration, "-np", "2", "-npfp", "2"), env)
    plans = "nnUNetPlans"
    if args.plans_batch_size:
        plans = plans_with_batch_size(os.path.join(env["nnUNet_preprocessed"], os.path.basename(raw)),
                                      args.plans_batch_size, args.configuration)
    rows = {}
    trainers = [trainer for trainer in args.trainers for _ in seeds]
    for trainer, variant in zip(trainers, variants):
        run_step(f"train {variant}", [console_script("nnUNetv2_train"), dataset, args.configuration, "all", "-tr",
                                      variant, "-p", plans, "-device", args.device, *(["--c"] if args.c else [])],
                 env)
        predictions = os.path.join(work, "predictions", variant)
        run_step(f"predict {variant}", [console_script("nnUNetv2_predict"), "-i", os.path.join(raw, "imagesTs"),
                                        "-o", predictions, "-d", dataset, "-c", args.configuration, "-f", "all",
                                        "-tr", variant, "-p", plans, "-device", args.device,
                                        *(["--disable_tta"] if args.disable_tta else [])], env)
        summaries = []
        for units in ("voxels", "mm"):
            summary = os.path.join(work, "predictions", f"{variant}_summary_{units}.json")
            run_step(f"evaluate {variant} ({units})", nnunet_ext_command(
                "evaluate", "-ref", os.path.join(raw, "labelsTs"), "-pred", predictions, "-o", summary,
                *(["--voxel-units"] if units == "voxels" else [])), env)
            with open(summary) as f:
                summaries.append(json.load(f)["mean"]["1"])
        rows[variant] = (trainer, *summaries)
    markdown = (f"LA 2018, {args.num_labeled} labeled (+ unlabeled for the semi-supervised trainers), {args.configuration}, "
                f"{epochs} × {iterations} iterations, plans {plans}, device {args.device}, "
                f"TTA {'off' if args.disable_tta else 'on'}.\n\n" + table(rows))
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(markdown + "\n")
    print("\n" + markdown)


if __name__ == "__main__":
    main()

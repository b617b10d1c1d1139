"""CMC on real, unpaired cardiac MR: MyoPS bSSFP (C0) and LGE from disjoint patients, against stock nnU-Net per
sequence, end to end with a budget knob.

convert (``nnunet_ext convert mscmrseg --disjoint-patients``: each patient in one sequence's dataset only, so the
two sequences are unpaired while each one's truth is exact) → ``nnunet_ext plan_and_preprocess --joint`` →
``nnUNetv2_train -f all``: nnUNetTrainerCMC on the C0 dataset (it trains on both), stock nnUNetTrainer once per
sequence on the same labeled cases and for the same iterations → stock ``nnUNetv2_predict`` on each sequence's
held-out patients → ``nnunet_ext evaluate`` → Dice per structure and patient, and the paired differences CMC −
stock with their standard errors, in ``results.md``.

    python scripts/myops_cmc.py --myops-dir ../shared/data/MyoPS_multiseq --work-dir myops_run \
        --iterations 2000 -device cuda
"""
import argparse
import os
from typing import Dict

from nnunet_ext.evaluation.paired import mean_and_standard_error, per_case_dice
from nnunet_ext.pipeline import (STOCK_TRAINER, add_budget_arguments, budgeted_run, console_script,
                                 nnunet_ext_command, plans_with_batch_size, run_step)

CMC = "nnUNetTrainerCMC"
SEQUENCES = ("C0", "LGE")
STRUCTURES = {"1": "LV blood pool", "2": "myocardium", "3": "RV blood pool"}


def parse_args() -> argparse.Namespace:
    """The experiment's options; ``--iterations`` is the budget knob."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--myops-dir", required=True, help="MyoPS folder (CaseN_{C0,LGE,T2,gd}.nii.gz)")
    add_budget_arguments(parser, "myops_cmc_run", iterations=1000)
    parser.add_argument("--num-labeled", type=int, default=2, help="labeled training patients per sequence")
    parser.add_argument("--test-fraction", type=float, default=0.4, help="held-out patients (split between sequences)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument("--plans-batch-size", type=int, default=0,
                        help="override the plans' 2d batch size in both plans; 0: the plans'")
    parser.add_argument("--patch-size", type=int, nargs=2, default=None,
                        help="override the plans' 2d patch size in both plans (e.g. 256 256 on a CPU: a crop around "
                             "the heart at the same spacing); default: the plans'")
    parser.add_argument("--disable-tta", action="store_true", help="predict without mirroring (faster on a CPU)")
    parser.add_argument("-d", "--dataset-id", type=int, default=703, help="id of the C0 dataset; LGE gets the next")
    return parser.parse_args()


def main() -> None:
    """Convert and plan (once) → train CMC and the two stock baselines → predict, evaluate → ``results.md``."""
    args = parse_args()
    work = os.path.abspath(args.work_dir)
    epochs, per_epoch, variants, env = budgeted_run(work, [CMC, STOCK_TRAINER], args.iterations,
                                                    args.iterations_per_epoch, save_every=args.save_every)
    cmc, stock = variants
    ids = {s: args.dataset_id + k for k, s in enumerate(SEQUENCES)}
    names = {s: f"Dataset{ids[s]:03d}_MSCMRSeg{s}" for s in SEQUENCES}
    raw = {s: os.path.join(env["nnUNet_raw"], names[s]) for s in SEQUENCES}
    if not all(os.path.isdir(folder) for folder in raw.values()):
        run_step("convert", nnunet_ext_command(
            "convert", "mscmrseg", "-i", args.myops_dir, "-d", str(args.dataset_id), "--sequences", *SEQUENCES,
            "--disjoint-patients", "--num-labeled", str(args.num_labeled), "--test-fraction", str(args.test_fraction),
            "--seed", str(args.seed)), env)
        run_step("plan and preprocess jointly", nnunet_ext_command(
            "plan_and_preprocess", "-d", *map(str, ids.values()), "--joint", "-c", "2d", "-np", "2", "-npfp", "2"), env)
    plans = "nnUNetPlans"
    if args.plans_batch_size or args.patch_size:
        for s in SEQUENCES:
            plans = plans_with_batch_size(os.path.join(env["nnUNet_preprocessed"], names[s]),
                                          args.plans_batch_size, "2d", args.patch_size)
    resume = ["--c"] if args.c else []
    trainings = [(cmc, SEQUENCES[0])] + [(stock, s) for s in SEQUENCES]
    for variant, sequence in trainings:
        run_step(f"train {variant} on {sequence}", [
            console_script("nnUNetv2_train"), str(ids[sequence]), "2d", "all", "-tr", variant, "-p", plans,
            "-device", args.device, *resume], env)
    dice: Dict[str, Dict[str, Dict[str, Dict[str, float]]]] = {}
    for variant in (cmc, stock):
        for s in SEQUENCES:
            predictions = os.path.join(work, "predictions", f"{variant}_{s}")
            run_step(f"predict {s} with {variant}", [
                console_script("nnUNetv2_predict"), "-i", os.path.join(raw[s], "imagesTs"), "-o", predictions,
                "-d", str(ids[s]), "-c", "2d", "-f", "all", "-tr", variant, "-p", plans, "-device", args.device,
                *(["--disable_tta"] if args.disable_tta else [])], env)
            summary = os.path.join(work, "predictions", f"{variant}_{s}_summary.json")
            run_step(f"evaluate {s} with {variant}", nnunet_ext_command(
                "evaluate", os.path.join(raw[s], "labelsTs"), predictions, "-o", summary), env)
            dice.setdefault(variant, {})[s] = per_case_dice(summary)
    lines = ["| sequence | structure | test patients | stock nnU-Net Dice % | CMC Dice % | CMC − stock (± s.e.) |",
             "|---|---|---|---|---|---|"]
    for s in SEQUENCES:
        cases = sorted(dice[cmc][s])
        for label, structure in STRUCTURES.items():
            ours = [dice[cmc][s][c][label] for c in cases]
            theirs = [dice[stock][s][c][label] for c in cases]
            lines.append(f"| {s} | {structure} | {len(cases)} | {mean_and_standard_error(theirs)} | "
                         f"{mean_and_standard_error(ours)} | "
                         f"{mean_and_standard_error([a - b for a, b in zip(ours, theirs)])} |")
    markdown = (f"MyoPS C0 and LGE from disjoint patients, {args.num_labeled} labeled patients per sequence "
                f"(+ the unlabeled ones for CMC), 2d, patch {args.patch_size or 'of the plans'}, {epochs} × {per_epoch} iterations, plans {plans}, device "
                f"{args.device}, TTA {'off' if args.disable_tta else 'on'}.\n\n" + "\n".join(lines))
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(markdown + "\n")
    print("\n" + markdown)


if __name__ == "__main__":
    main()

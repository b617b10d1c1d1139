"""Partially labeled synthetic data: does a partial-label method learn at all? Three single-structure datasets
(``write_synthetic_single_structure_datasets``: every image shows a liver, a spleen and a kidney ellipsoid of its
own brightness, each dataset labels one) are united and trained with LTUDA (our default and the paper's loss and
optimiser), the marginal loss and stock nnU-Net for the same iterations; about an hour on a 2-core CPU.

``nnunet_ext make_partial_union`` → ``nnunet_ext plan_and_preprocess -c 2d`` → ``nnUNetv2_train -f all`` per
trainer → stock ``nnUNetv2_predict`` of the held-out cases (LTUDA also with ``nnunet_ext predict --classifier
linear|labeled``) → ``nnunet_ext evaluate --annotated-labels-from`` (each test case is scored on the structure
its source annotates) → ``results.md``: Dice per structure, mean ± s.e. over the test cases that annotate it.

    python scripts/partial_synthetic.py --work-dir partial_synthetic_run -device cpu
"""
import argparse
import os
from collections import defaultdict
from typing import Dict, List

from nnunet_ext.dataset_conversion.synthetic import write_synthetic_single_structure_datasets
from nnunet_ext.evaluation.paired import mean_and_standard_error, per_case_dice
from nnunet_ext.pipeline import (STOCK_TRAINER, add_budget_arguments, budgeted_run, console_script,
                                 nnunet_ext_command, run_step)

STRUCTURES = ["liver", "spleen", "kidney"]
TRAINERS = ["nnUNetTrainerLTUDA", "nnUNetTrainerLTUDA_paper", "nnUNetTrainerMarginal", STOCK_TRAINER]
RUNS = {  # run name → (trainer, nnunet_ext predict extra arguments or None for nnUNetv2_predict)
    "LTUDA (unlabeled-prototype classifier, the default)": ("nnUNetTrainerLTUDA", None),
    "LTUDA (labeled-prototype classifier)": ("nnUNetTrainerLTUDA", ["--classifier", "labeled"]),
    "LTUDA (linear head)": ("nnUNetTrainerLTUDA", ["--classifier", "linear"]),
    "nnUNetTrainerLTUDA_paper (unlabeled-prototype classifier)": ("nnUNetTrainerLTUDA_paper", None),
    "nnUNetTrainerLTUDA_paper (linear head)": ("nnUNetTrainerLTUDA_paper", ["--classifier", "linear"]),
    "nnUNetTrainerMarginal": ("nnUNetTrainerMarginal", None),
    "stock nnU-Net on the union": (STOCK_TRAINER, None),
}


def parse_args() -> argparse.Namespace:
    """The experiment's options; ``--iterations`` is the budget knob."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_budget_arguments(parser, "partial_synthetic_run", iterations=600)
    parser.add_argument("--num-training", type=int, default=6, help="training cases per source dataset")
    parser.add_argument("--num-test", type=int, default=2, help="held-out cases per source dataset")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic images")
    parser.add_argument("-d", "--dataset-id", type=int, default=871,
                        help="the first source dataset; the other sources take the next ids, the union the one after")
    return parser.parse_args()


def structure_dice(summary_file: str) -> Dict[str, List[float]]:
    """``{structure: [Dice of each test case that annotates it]}`` (fractions)."""
    dice: Dict[str, List[float]] = defaultdict(list)
    for scores in per_case_dice(summary_file).values():
        for label, value in scores.items():
            dice[STRUCTURES[int(label) - 1]].append(value)
    return dice


def main() -> None:
    """Write the sources and the union (once) → plan → train the four trainers → predict and evaluate →
    ``results.md``."""
    args = parse_args()
    work = os.path.abspath(args.work_dir)
    epochs, per_epoch, variants, env = budgeted_run(work, TRAINERS, args.iterations, args.iterations_per_epoch,
                                                    save_every=args.save_every)
    variant_of = dict(zip(TRAINERS, variants))
    union_id = args.dataset_id + len(STRUCTURES)
    union_name = f"Dataset{union_id:03d}_PartialUnion"
    union_folder = os.path.join(env["nnUNet_raw"], union_name)
    if not os.path.isdir(union_folder):
        write_synthetic_single_structure_datasets(args.dataset_id, STRUCTURES, num_training=args.num_training,
                                                  num_test=args.num_test, seed=args.seed,
                                                  raw_root=env["nnUNet_raw"], overwrite=True)
        run_step("make_partial_union", nnunet_ext_command(
            "make_partial_union", "-s", *[f"{args.dataset_id + k}:{s}" for k, s in enumerate(STRUCTURES)],
            "-d", union_name), env)
    if not os.path.isfile(os.path.join(env["nnUNet_preprocessed"], union_name, "nnUNetPlans.json")):
        run_step("plan and preprocess", nnunet_ext_command("plan_and_preprocess", "-d", str(union_id), "-c", "2d",
                                                           "-np", "2", "-npfp", "2"), env)
    continuing = ["--c"] if args.c else []
    for trainer in TRAINERS:
        run_step(f"train {trainer}", [console_script("nnUNetv2_train"), str(union_id), "2d", "all", "-tr",
                                      variant_of[trainer], "-device", args.device, *continuing], env)
    dice = {}
    for run, (trainer, classifier) in RUNS.items():
        output = os.path.join(work, "predictions", "".join(c if c.isalnum() else "_" for c in run))
        common = ["-i", os.path.join(union_folder, "imagesTs"), "-o", output, "-d", str(union_id), "-c", "2d",
                  "-f", "all", "-tr", variant_of[trainer], "-device", args.device, "-npp", "0", "-nps", "0"]
        command = [console_script("nnUNetv2_predict"), *common] if classifier is None else \
            nnunet_ext_command("predict", *common, *classifier)
        run_step(f"predict {run}", command, env)
        run_step(f"evaluate {run}", nnunet_ext_command(
            "evaluate", "-ref", os.path.join(union_folder, "labelsTs"), "-pred", output, "-l", "1", "2", "3",
            "--annotated-labels-from", os.path.join(union_folder, "dataset.json")), env)
        dice[run] = structure_dice(os.path.join(output, "summary.json"))
    lines = [f"Synthetic partial union ({', '.join(STRUCTURES)}; {args.num_training} training and {args.num_test} "
             f"test cases per source, seed {args.seed}), 2d with the plans' patch and batch, {epochs} × {per_epoch} "
             f"iterations for every run, device {args.device}.", "",
             "Dice % per structure (mean ± s.e. over the test cases that annotate it; mean: of the structures):", "",
             "| run | " + " | ".join(STRUCTURES) + " | mean |", "|---|" + "---|" * (len(STRUCTURES) + 1)]
    for run, per_structure in dice.items():
        means = [sum(v) / len(v) for v in per_structure.values()]
        lines.append(f"| {run} | " + " | ".join(mean_and_standard_error(per_structure[s]) for s in STRUCTURES)
                     + f" | {100 * sum(means) / len(means):.1f} |")
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()

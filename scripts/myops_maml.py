"""MAML on real co-registered cardiac MR (MyoPS bSSFP C0, LGE, T2) against stock nnU-Net on the same three channels,
with every subset of missing sequences, end to end with a budget knob.

convert (``nnunet_ext convert myops``, seeded patient split) → ``nnunet_ext plan_and_preprocess -c 2d`` →
``nnUNetv2_train -f all``: nnUNetTrainerMAML and stock nnUNetTrainer on the same cases for the same iterations →
``nnunet_ext evaluate_missing`` on the held-out patients: MAML with both protocols (``joint``, ``branches``) and
stock nnU-Net with zero-filled channels, 7 subsets each → ``results.md``: the full table (Dice per class and
subset), and per subset the paired difference MAML − stock of each patient's mean Dice over the classes, with its
standard error.

    python scripts/myops_maml.py --myops-dir ../shared/data/MyoPS_multiseq --work-dir myops_maml_run \
        --iterations 2000 -device cuda
"""
import argparse
import json
import os
import re
from typing import Dict, List

from nnunet_ext.evaluation.missing_modalities import format_markdown
from nnunet_ext.evaluation.paired import mean_and_standard_error, per_case_dice
from nnunet_ext.pipeline import (STOCK_TRAINER, add_budget_arguments, budgeted_run, console_script,
                                 nnunet_ext_command, plans_with_batch_size, run_step)

MAML = "nnUNetTrainerMAML"


def parse_args() -> argparse.Namespace:
    """The experiment's options; ``--iterations`` is the budget knob."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--myops-dir", required=True, help="MyoPS folder (CaseN_{C0,LGE,T2,gd}.nii.gz)")
    add_budget_arguments(parser, "myops_maml_run", iterations=1000)
    parser.add_argument("--test-fraction", type=float, default=0.4, help="held-out patients")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument("--plans-batch-size", type=int, default=0,
                        help="override the plans' 2d batch size; 0: the plans'")
    parser.add_argument("--patch-size", type=int, nargs=2, default=None,
                        help="override the plans' 2d patch size (e.g. 256 256 on a CPU); default: the plans'")
    parser.add_argument("--disable-tta", action="store_true", help="predict without mirroring (faster on a CPU)")
    parser.add_argument("-d", "--dataset-id", type=int, default=705)
    return parser.parse_args()


def paired_lines(tables: Dict[str, dict], work: str) -> List[str]:
    """Per subset: each test patient's mean Dice over the classes, MAML (both protocols) − stock, ± s.e."""
    lines = ["| present | stock (zero-filled) | MAML joint | MAML branches | joint − stock | branches − stock |",
             "|---|---|---|---|---|---|"]
    stock_rows = tables[STOCK_TRAINER]["rows"]
    for stock_row in stock_rows:
        present = re.sub(r"\W+", "_", "+".join(stock_row["present"]))
        patients = {}
        for variant, protocol in ((STOCK_TRAINER, "zero-filled"), (MAML, "joint"), (MAML, "branches")):
            summary = os.path.join(work, "missing", variant, protocol, present, "summary.json")
            dice = per_case_dice(summary)
            patients[protocol] = {case: sum(scores.values()) / len(scores) for case, scores in dice.items()}
        cases = sorted(patients["zero-filled"])
        values = {protocol: [patients[protocol][c] for c in cases] for protocol in patients}
        differences = [mean_and_standard_error([a - b for a, b in zip(values[p], values["zero-filled"])])
                       for p in ("joint", "branches")]
        lines.append(f"| {'+'.join(stock_row['present'])} | " +
                     " | ".join(mean_and_standard_error(values[p]) for p in ("zero-filled", "joint", "branches")) +
                     f" | {differences[0]} | {differences[1]} |")
    return lines


def main() -> None:
    """Convert and plan (once) → train MAML and stock → evaluate every subset → ``results.md``."""
    args = parse_args()
    work = os.path.abspath(args.work_dir)
    epochs, per_epoch, variants, env = budgeted_run(work, [MAML, STOCK_TRAINER], args.iterations,
                                                    args.iterations_per_epoch, save_every=args.save_every)
    name = f"Dataset{args.dataset_id:03d}_MyoPS"
    raw = os.path.join(env["nnUNet_raw"], name)
    if not os.path.isdir(raw):
        run_step("convert", nnunet_ext_command("convert", "myops", "-i", args.myops_dir, "-d", str(args.dataset_id),
                                               "--test-fraction", str(args.test_fraction), "--seed", str(args.seed)),
                 env)
        run_step("plan and preprocess", nnunet_ext_command("plan_and_preprocess", "-d", str(args.dataset_id), "-c",
                                                           "2d", "-np", "2", "-npfp", "2"), env)
    plans = "nnUNetPlans"
    if args.plans_batch_size or args.patch_size:
        plans = plans_with_batch_size(os.path.join(env["nnUNet_preprocessed"], name), args.plans_batch_size, "2d",
                                      args.patch_size)
    tables = {}
    for variant, trainer in zip(variants, (MAML, STOCK_TRAINER)):
        run_step(f"train {variant}", [console_script("nnUNetv2_train"), str(args.dataset_id), "2d", "all", "-tr",
                                      variant, "-p", plans, "-device", args.device, *(["--c"] if args.c else [])], env)
        output = os.path.join(work, "missing", trainer)
        run_step(f"evaluate_missing {variant}", nnunet_ext_command(
            "evaluate_missing", "-d", str(args.dataset_id), "-c", "2d", "-f", "all", "-tr", variant, "-p", plans,
            "-i", os.path.join(raw, "imagesTs"), "-ref", os.path.join(raw, "labelsTs"), "-o", output, "--protocol",
            "joint", "branches", "-device", args.device, *(["--disable_tta"] if args.disable_tta else [])), env)
        with open(os.path.join(output, "missing_modalities.json")) as f:
            tables[trainer] = json.load(f)
    with open(os.path.join(raw, "dataset.json")) as f:
        split = json.load(f).get("myops_split", {})
    rows = tables[STOCK_TRAINER]["rows"] + tables[MAML]["rows"]
    markdown = "\n".join([
        f"MyoPS C0 + LGE + T2 (co-registered), {len(split.get('train', []))} training and "
        f"{len(split.get('test', []))} test patients (seed {args.seed}), 2d, patch "
        f"{args.patch_size or 'of the plans'}, {epochs} × {per_epoch} iterations, plans {plans}, device "
        f"{args.device}, TTA {'off' if args.disable_tta else 'on'}.", "",
        "Dice % per class and subset of present sequences (● present, ○ absent):", "",
        format_markdown(dict(tables[MAML], rows=rows)), "",
        "Mean Dice % over the classes per test patient, mean ± s.e. over patients, and paired differences:", "",
        *paired_lines(tables, work)])
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(markdown + "\n")
    print("\n" + markdown)


if __name__ == "__main__":
    main()

"""Partially labeled real data: ACDC cardiac MR whose training patients each annotate one structure (RV, MYO or
LV), trained with LTUDA, the marginal loss and stock nnU-Net, against full supervision of the same images.

convert (``nnunet_ext convert acdc``, seeded patient split; fully labeled test patients) → the training patients
dealt round-robin into one group per structure, each group a raw dataset of its own →
``nnunet_ext make_partial_union -s GROUP_RV:RV GROUP_MYO:MYO GROUP_LV:LV`` → ``nnunet_ext plan_and_preprocess -c
2d`` of the union and of the fully labeled dataset → ``nnUNetv2_train -f all`` for the same iterations: stock
nnU-Net, nnUNetTrainerMarginal and nnUNetTrainerLTUDA on the union, stock nnU-Net on the full labels (the upper
bound) → stock ``nnUNetv2_predict`` on the test patients (LTUDA also with ``nnunet_ext predict --classifier
linear``) → ``nnunet_ext evaluate`` → ``results.md``: Dice per structure (mean ± s.e. over test patients, the
patient's frames averaged) and paired differences between the methods.

    python scripts/partial_acdc.py --acdc-dir ../shared/data/ACDC_h5 --work-dir partial_acdc_run \
        --iterations 2000 -device cuda
"""
import argparse
import json
import os
from collections import defaultdict
from typing import Dict, List, Tuple

from nnunet_ext.dataset_conversion.acdc import LABELS
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
from nnunet_ext.evaluation.paired import mean_and_standard_error, per_case_dice
from nnunet_ext.pipeline import (STOCK_TRAINER, add_budget_arguments, budgeted_run, console_script,
                                 nnunet_ext_command, plans_with_batch_size, run_step)

STRUCTURES = [name for name in LABELS if name != "background"]
UNION_TRAINERS = ["nnUNetTrainerLTUDA", "nnUNetTrainerMarginal", STOCK_TRAINER]
RUNS = {  # run name → (trainer, dataset role, nnunet_ext predict extra arguments or None for nnUNetv2_predict)
    "LTUDA": ("nnUNetTrainerLTUDA", "union", None),
    "LTUDA (linear head)": ("nnUNetTrainerLTUDA", "union", ["--classifier", "linear"]),
    "Marginal": ("nnUNetTrainerMarginal", "union", None),
    "stock on the union": (STOCK_TRAINER, "union", None),
    "full supervision": (STOCK_TRAINER, "full", None),
}
DIFFERENCES = [("LTUDA", "Marginal"), ("LTUDA", "stock on the union"), ("Marginal", "stock on the union"),
               ("full supervision", "LTUDA"), ("full supervision", "Marginal")]


def parse_args() -> argparse.Namespace:
    """The experiment's options; ``--iterations`` is the budget knob."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--acdc-dir", required=True, help="ACDC h5 folder (patientNNN_frameFF.h5, any depth)")
    add_budget_arguments(parser, "partial_acdc_run", iterations=1000)
    parser.add_argument("--test-fraction", type=float, default=0.4, help="held-out, fully labeled patients")
    parser.add_argument("--seed", type=int, default=0, help="seed of the patient split")
    parser.add_argument("--plans-batch-size", type=int, default=0, help="override the plans' 2d batch size")
    parser.add_argument("--patch-size", type=int, nargs=2, default=None, help="override the plans' 2d patch size")
    parser.add_argument("--disable-tta", action="store_true", help="predict without mirroring (faster on a CPU)")
    parser.add_argument("-d", "--dataset-id", type=int, default=960,
                        help="the fully labeled dataset; the groups take the next ids, the union the one after")
    return parser.parse_args()


def write_structure_groups(full_folder: str, first_id: int, raw_root: str) -> List[Tuple[int, str]]:
    """Deal the training patients of the full dataset round-robin (sorted) into one group per structure and write
    each group as a raw dataset (files copied byte for byte); ``[(dataset id, structure)]``."""
    with open(os.path.join(full_folder, "dataset.json")) as f:
        dataset_json = json.load(f)
    cases_of: Dict[str, List[str]] = dataset_json["patients"]
    groups = []
    for index, structure in enumerate(STRUCTURES):
        patients = sorted(cases_of)[index::len(STRUCTURES)]
        if not patients:
            raise ValueError(f"{full_folder}: {len(cases_of)} training patients cannot give each of "
                             f"{STRUCTURES} a group; lower --test-fraction")
        dataset_id = first_id + index
        writer = RawDatasetWriter(dataset_id, f"ACDC{structure}Only", dataset_json["channel_names"], LABELS,
                                  raw_root=raw_root, num_processes=0,
                                  extra_json={"description": f"ACDC patients {', '.join(patients)}: the training "
                                                             f"group whose {structure} annotation the union keeps"})
        with writer:
            for patient in patients:
                for case in sorted(cases_of[patient]):
                    writer.add_training_case_from_files(
                        case, [os.path.join(full_folder, "imagesTr", f"{case}_0000.nii.gz")],
                        os.path.join(full_folder, "labelsTr", f"{case}.nii.gz"), patient=patient)
        groups.append((dataset_id, structure))
    return groups


def patient_dice(summary_file: str) -> Dict[str, Dict[str, float]]:
    """``{patient: {structure: Dice}}`` (fractions): each structure's Dice averaged over the patient's frames."""
    frames: Dict[str, Dict[str, List[float]]] = defaultdict(lambda: defaultdict(list))
    for case, scores in per_case_dice(summary_file).items():
        for label, dice in scores.items():
            frames[case.split("_frame")[0]][STRUCTURES[int(label) - 1]].append(dice)
    return {patient: {s: sum(v) / len(v) for s, v in per.items()} for patient, per in sorted(frames.items())}


def result_lines(dice: Dict[str, Dict[str, Dict[str, float]]]) -> List[str]:
    """The Dice table (mean ± s.e. over patients) and the paired differences of the patients' mean Dice."""
    patients = sorted(next(iter(dice.values())))

    def column(run: str, structure: str) -> List[float]:
        if structure == "mean":
            return [sum(dice[run][p].values()) / len(STRUCTURES) for p in patients]
        return [dice[run][p][structure] for p in patients]

    lines = ["| run | " + " | ".join(STRUCTURES) + " | mean |", "|---|" + "---|" * (len(STRUCTURES) + 1)]
    for run in dice:
        lines.append(f"| {run} | " + " | ".join(mean_and_standard_error(column(run, s))
                                                for s in STRUCTURES + ["mean"]) + " |")
    lines += ["", "Paired differences (Dice points, mean ± s.e. over the test patients):", "",
              "| difference | " + " | ".join(STRUCTURES) + " | mean |", "|---|" + "---|" * (len(STRUCTURES) + 1)]
    for a, b in DIFFERENCES:
        lines.append(f"| {a} − {b} | " + " | ".join(
            mean_and_standard_error([x - y for x, y in zip(column(a, s), column(b, s))])
            for s in STRUCTURES + ["mean"]) + " |")
    return lines


def main() -> None:
    """Convert, split and unite (once) → plan → train the four runs → predict and evaluate → ``results.md``."""
    args = parse_args()
    work = os.path.abspath(args.work_dir)
    epochs, per_epoch, variants, env = budgeted_run(work, UNION_TRAINERS, args.iterations,
                                                    args.iterations_per_epoch, save_every=args.save_every)
    variant_of = dict(zip(UNION_TRAINERS, variants))
    raw_root = env["nnUNet_raw"]
    ids = {"full": args.dataset_id, "union": args.dataset_id + len(STRUCTURES) + 1}
    names = {"full": f"Dataset{ids['full']:03d}_ACDC", "union": f"Dataset{ids['union']:03d}_ACDCPartial"}
    full_folder = os.path.join(raw_root, names["full"])
    if not os.path.isdir(os.path.join(raw_root, names["union"])):
        if not os.path.isdir(full_folder):
            run_step("convert", nnunet_ext_command("convert", "acdc", "-i", args.acdc_dir, "-d", str(ids["full"]),
                                                   "--test-fraction", str(args.test_fraction), "--seed",
                                                   str(args.seed)), env)
        groups = write_structure_groups(full_folder, ids["full"] + 1, raw_root)
        run_step("make_partial_union", nnunet_ext_command(
            "make_partial_union", "-s", *[f"{i}:{s}" for i, s in groups], "-d", names["union"]), env)
    plans = {}
    for role in ("full", "union"):
        preprocessed = os.path.join(env["nnUNet_preprocessed"], names[role])
        if not os.path.isfile(os.path.join(preprocessed, "nnUNetPlans.json")):
            run_step(f"plan and preprocess ({role})", nnunet_ext_command(
                "plan_and_preprocess", "-d", str(ids[role]), "-c", "2d", "-np", "2", "-npfp", "2"), env)
        plans[role] = plans_with_batch_size(preprocessed, args.plans_batch_size, "2d", args.patch_size) \
            if args.plans_batch_size or args.patch_size else "nnUNetPlans"
    continuing = ["--c"] if args.c else []
    for trainer, role in dict.fromkeys((t, r) for t, r, _ in RUNS.values()):
        run_step(f"train {trainer} ({role})", [
            console_script("nnUNetv2_train"), str(ids[role]), "2d", "all", "-tr", variant_of[trainer], "-p",
            plans[role], "-device", args.device, *continuing], env)
    test_images = os.path.join(full_folder, "imagesTs")
    dice = {}
    for run, (trainer, role, classifier) in RUNS.items():
        output = os.path.join(work, "predictions", run.replace(" ", "_").replace("(", "").replace(")", ""))
        common = ["-i", test_images, "-o", output, "-d", str(ids[role]), "-c", "2d", "-f", "all", "-tr",
                  variant_of[trainer], "-p", plans[role], "-device", args.device, "-npp", "0", "-nps", "0",
                  *(["--disable_tta"] if args.disable_tta else [])]
        command = [console_script("nnUNetv2_predict"), *common] if classifier is None else \
            nnunet_ext_command("predict", *common, *classifier)
        run_step(f"predict {run}", command, env)
        run_step(f"evaluate {run}", nnunet_ext_command("evaluate", "-ref", os.path.join(full_folder, "labelsTs"),
                                                       "-pred", output, "-l", "1", "2", "3"), env)
        dice[run] = patient_dice(os.path.join(output, "summary.json"))
    with open(os.path.join(full_folder, "dataset.json")) as f:
        split = json.load(f)["acdc_split"]
    markdown = "\n".join([
        f"ACDC (h5 release), {len(split['train'])} training patients dealt into {len(STRUCTURES)} groups that "
        f"each annotate one structure ({', '.join(STRUCTURES)}), {len(split['test'])} fully labeled test patients "
        f"(seed {args.seed}), 2d, patch {args.patch_size or 'of the plans'}, batch "
        f"{args.plans_batch_size or 'of the plans'}, {epochs} × {per_epoch} iterations for every run, device "
        f"{args.device}, TTA {'off' if args.disable_tta else 'on'}.", "",
        "Dice % per structure (mean ± s.e. over the test patients, each patient's ED and ES frames averaged):", "",
        *result_lines(dice)])
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(markdown + "\n")
    print("\n" + markdown)


if __name__ == "__main__":
    main()

"""Kvasir-SEG polyps from gaze (GazeSup) against full supervision, end to end with a budget knob.

convert (``nnunet_ext convert kvasir``: true masks → Dataset810_Kvasir, GazeMedSeg gaze pseudo-masks →
Dataset811_KvasirGaze, the same seeded split) → ``nnunet_ext plan_and_preprocess -c 2d`` →
``nnUNetv2_train -f all`` for the stock nnUNetTrainer on the true masks and nnUNetTrainerGazeSup (optionally
its _pure, _flipsOnly and _paper variants) on the gaze levels → stock ``nnUNetv2_predict`` on imagesTs →
``nnunet_ext evaluate --voxel-units`` against the true test masks → per-image Dice and IoU, mean ± std over the
test images (as the paper reports them), the quality of the gaze pseudo-masks against the true masks of the
training images, and one table beside the paper's numbers (``results.md``, ``results.json`` in the work dir),
with ``predictions.png`` showing the first test images' true and predicted contours.

Fold ``all``: the paper trains on every training image and has no validation split (it even picks its best
checkpoint on the test set); here every method trains on all training images and the final checkpoint is
evaluated, with no model selection. The training budget is a number of iterations (the paper: 15,000 at
batch 8 on images resized to 224 × 224); the learning rate decays over the whole budget (nnU-Net's poly; the
_paper variant's half-cosine), the patch size and the batch size are the plans' (``--plans-batch-size``
overrides the latter).

``--subset N`` converts only the first N image ids (sorted), linked into a temporary folder of symlinks in the
work dir and split like the full release — for smoke runs; without it all 1000 images are used. Datasets
already converted in the work dir are reused when they hold the same images and split.

    python scripts/kvasir_gazesup.py --kvasir-dir ../shared/data/Kvasir-SEG \
        --gaze-csv ../shared/data/GazeMedSeg/kvasir_fixation.csv --work-dir kvasir_run --iterations 15000
"""
import argparse
import glob
import json
import os
import subprocess
import sys
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

from nnunet_ext import gaze
from nnunet_ext.dataset_conversion.kvasir import FILE_ENDING, list_cases
from nnunet_ext.pipeline import (STOCK_TRAINER, budgeted_run, console_script, nnunet_ext_command,
                                 plans_with_batch_size, run_step)

CONFIGURATION = "2d"
TRAINER_SUPERVISION = {STOCK_TRAINER: "full", "nnUNetTrainerGazeSup": "gaze", "nnUNetTrainerGazeSup_pure": "gaze",
                       "nnUNetTrainerGazeSup_flipsOnly": "gaze", "nnUNetTrainerGazeSup_paper": "gaze"}
"""Which dataset each trainer learns from: the true masks (``full``) or the gaze pseudo-masks (``gaze``)."""
PAPER = {  # spec §2.10: Kvasir-SEG Dice %, paper and the authors' released checkpoints (2 levels); no IoU given
    STOCK_TRAINER: ("full supervision (not in the spec)", None, None),
    "nnUNetTrainerGazeSup": ("GazeSup, 2 levels, prop consistency", 77.80, 78.86),
    "nnUNetTrainerGazeSup_pure": ("GazeSup, pure consistency (not in the spec)", None, None),
    "nnUNetTrainerGazeSup_flipsOnly": ("GazeSup, 2 levels, prop consistency, flips only", 77.80, 78.86),
    "nnUNetTrainerGazeSup_paper": ("GazeSup, 2 levels, prop consistency, the paper's training", 77.80, 78.86),
}
PSEUDO_MASK_REFERENCE = {  # spec §2.4 / §2.4.5: mean per-image Dice % of the CRF map ≥ threshold, all 1000 images
    0.5: "75.1 (authors' notebook) / 76.1 (independent rerun)",
    0.3: "71.6 (independent rerun)",
}


def parse_args() -> argparse.Namespace:
    """The experiment's options; ``--iterations`` is the budget knob."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kvasir-dir", required=True, help="Kvasir-SEG release (images/<id>.jpg, masks/<id>.jpg)")
    parser.add_argument("--gaze-csv", required=True, help="GazeMedSeg kvasir_fixation.csv")
    parser.add_argument("--work-dir", default="kvasir_gazesup_run")
    parser.add_argument("--iterations", type=int, default=15000, help="training budget in iterations")
    parser.add_argument("--iterations-per-epoch", type=int, default=250)
    parser.add_argument("--subset", type=int, default=0,
                        help="use only the first N image ids (sorted), e.g. 60 for a smoke run (default: all)")
    parser.add_argument("--test-fraction", type=float, default=0.2, help="share of the images drawn for testing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the test split")
    parser.add_argument("--resize", type=int, nargs=2, metavar=("H", "W"),
                        help="convert at H x W as the paper (224 224), test Dice at that size; default: native")
    parser.add_argument("--levels", type=int, default=2, help="gaze pseudo-mask levels (the paper's default: 2)")
    parser.add_argument("--plans-batch-size", type=int, default=0,
                        help="override the plans' batch size (a plans copy nnUNetPlansBudget), e.g. 2 on a CPU")
    parser.add_argument("--trainers", nargs="+", default=[STOCK_TRAINER, "nnUNetTrainerGazeSup"],
                        choices=list(TRAINER_SUPERVISION))
    parser.add_argument("-device", default="cuda", choices=("cpu", "cuda"))
    parser.add_argument("--c", action="store_true",
                        help="continue each training from its last checkpoint (nnUNetv2_train --c), e.g. after an "
                             "interruption; a finished training is not repeated")
    parser.add_argument("--disable-tta", action="store_true", help="predict without mirroring (faster on a CPU)")
    parser.add_argument("-np", "--num-processes", type=int, default=2,
                        help="worker processes of conversion, preprocessing, prediction and evaluation")
    parser.add_argument("-d", "--dataset-id", type=int, default=810, help="dataset id of the true-mask dataset")
    parser.add_argument("--gaze-dataset-id", type=int, default=811, help="dataset id of the gaze dataset")
    args = parser.parse_args()
    if args.subset < 0 or args.iterations < 1 or args.iterations_per_epoch < 1:
        parser.error("--subset must be ≥ 0, --iterations and --iterations-per-epoch ≥ 1")
    return args


def selected_cases(kvasir_dir: str, gaze_csv: str, subset: int) -> Dict[str, Tuple[str, str]]:
    """``{id: (image, mask)}`` to convert, sorted (all, or the first ``subset``); stops clearly on bad inputs."""
    if not os.path.isfile(gaze_csv):
        raise SystemExit(f"error: gaze CSV {gaze_csv} does not exist (GazeMedSeg kvasir_fixation.csv)")
    try:
        cases = list_cases(kvasir_dir)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if subset > len(cases):
        raise SystemExit(f"error: --subset {subset} but {kvasir_dir} holds only {len(cases)} images")
    ids = sorted(cases)[:subset] if subset else sorted(cases)
    return {case: cases[case] for case in ids}


def link_subset(cases: Dict[str, Tuple[str, str]], folder: str) -> None:
    """Symlink the images and masks of ``cases`` into ``folder`` in the Kvasir-SEG layout."""
    for sub, index in (("images", 0), ("masks", 1)):
        os.makedirs(os.path.join(folder, sub))
        for paths in cases.values():
            source = os.path.abspath(paths[index])
            os.symlink(source, os.path.join(folder, sub, os.path.basename(source)))


def find_dataset(raw_root: str, dataset_id: int) -> Optional[str]:
    """The raw folder ``Dataset{id}_*`` in ``raw_root``, or None when it was not converted yet."""
    found = sorted(glob.glob(os.path.join(raw_root, f"Dataset{dataset_id:03d}_*")))
    return found[0] if found else None


def case_ids(folder: str, sub: str) -> List[str]:
    """Case ids of the label files in ``folder/sub``."""
    return sorted(f[:-len(FILE_ENDING)] for f in os.listdir(os.path.join(folder, sub)) if f.endswith(FILE_ENDING))


def check_reused_dataset(folder: str, ids: Sequence[str], args: argparse.Namespace, gaze_levels: int) -> None:
    """Stop unless an existing raw dataset holds exactly ``ids`` with the requested split (and gaze levels)."""
    with open(os.path.join(folder, "dataset.json")) as f:
        dataset = json.load(f)
    split = dataset.get("kvasir_split", {})
    problems = []
    if (split.get("test_fraction"), split.get("seed")) != (args.test_fraction, args.seed):
        problems.append(f"split test fraction {split.get('test_fraction')}, seed {split.get('seed')}")
    if sorted(case_ids(folder, "labelsTr") + case_ids(folder, "labelsTs")) != sorted(ids):
        problems.append("other images")
    if dataset.get("resized_to") != args.resize:
        problems.append(f"size {dataset.get('resized_to') or 'native'}")
    if gaze_levels and len(dataset.get("gaze", {}).get("thresholds", [])) != gaze_levels:
        problems.append(f"gaze levels {dataset.get('gaze', {}).get('thresholds')}")
    if problems:
        raise SystemExit(f"error: {folder} exists with {', '.join(problems)}, not what was asked for; remove "
                         f"it (and its nnUNet_preprocessed folder) or choose another --work-dir")
    print(f"reusing {folder}")


def run_conversions(source: str, missing: Sequence[Tuple[int, int]], args: argparse.Namespace,
                    env: Dict[str, str]) -> None:
    """``nnunet_ext convert kvasir`` from ``source`` for each (dataset id, gaze levels; 0 = true masks)."""
    for dataset_id, levels in missing:
        options = ["--gaze-csv", os.path.abspath(args.gaze_csv), "--levels", str(levels)] if levels else []
        if args.resize:
            options += ["--resize", *(str(v) for v in args.resize)]
        run_step(f"convert Kvasir-SEG → dataset {dataset_id}" + (" (gaze pseudo-masks)" if levels else ""),
                 nnunet_ext_command("convert", "kvasir", "-i", source, "-d", str(dataset_id), "--test-fraction",
                                    str(args.test_fraction), "--seed", str(args.seed), *options,
                                    "-np", str(args.num_processes)), env)


def convert_datasets(args: argparse.Namespace, cases: Dict[str, Tuple[str, str]], work: str,
                     env: Dict[str, str]) -> bool:
    """Convert the true-mask and the gaze dataset where missing (same split); True if anything was converted."""
    missing = []
    for dataset_id, levels in ((args.dataset_id, 0), (args.gaze_dataset_id, args.levels)):
        folder = find_dataset(env["nnUNet_raw"], dataset_id)
        if folder is None:
            missing.append((dataset_id, levels))
        else:
            check_reused_dataset(folder, list(cases), args, levels)
    if not missing:
        return False
    if not args.subset:
        run_conversions(os.path.abspath(args.kvasir_dir), missing, args, env)
        return True
    with tempfile.TemporaryDirectory(prefix="kvasir_subset_", dir=work) as subset_folder:
        link_subset(cases, subset_folder)
        print(f"--subset {args.subset}: the first {len(cases)} image ids (sorted) linked into {subset_folder}")
        run_conversions(subset_folder, missing, args, env)
    return True


def plans_settings(preprocessed_folder: str, plans: str) -> Tuple[int, List[int]]:
    """Batch size and patch size of the 2d configuration of a plans file."""
    with open(os.path.join(preprocessed_folder, f"{plans}.json")) as f:
        configuration = json.load(f)["configurations"][CONFIGURATION]
    return configuration["batch_size"], configuration["patch_size"]


def mean_std(values: Sequence[float]) -> Dict[str, float]:
    """Mean and (population) standard deviation, in %."""
    return {"mean": 100 * float(np.mean(values)), "std": 100 * float(np.std(values))}


def pseudo_mask_quality(gaze_folder: str) -> List[dict]:
    """Per level k: Dice and IoU (mean ± std over training images) of "ordinal ≥ k" against labelsTrReference."""
    with open(os.path.join(gaze_folder, "dataset.json")) as f:
        thresholds = json.load(f)["gaze"]["thresholds"]
    scores: List[List[Dict[str, float]]] = [[] for _ in thresholds]
    for case in case_ids(gaze_folder, "labelsTr"):
        with Image.open(os.path.join(gaze_folder, "labelsTr", case + FILE_ENDING)) as image:
            ordinal = np.asarray(image)
        with Image.open(os.path.join(gaze_folder, "labelsTrReference", case + FILE_ENDING)) as image:
            truth = np.asarray(image) == 1
        for k in range(1, len(thresholds) + 1):
            scores[k - 1].append(gaze.overlap(gaze.decode_levels(ordinal, k), truth))
    return [{"level": k, "threshold": t, "n": len(s), "Dice": mean_std([c["Dice"] for c in s]),
             "IoU": mean_std([c["IoU"] for c in s])} for k, (t, s) in enumerate(zip(thresholds, scores), start=1)]


def evaluate_predictions(summary_file: str) -> dict:
    """Per-image Dice and IoU (label 1) of an ``nnunet_ext evaluate`` summary, as mean ± std in %."""
    with open(summary_file) as f:
        cases = [case["metrics"]["1"] for case in json.load(f)["metric_per_case"]]
    return {"n": len(cases), "Dice": mean_std([c["Dice"] for c in cases]),
            "IoU": mean_std([c["Jaccard"] for c in cases])}


def write_prediction_figure(raw_folder: str, methods: Dict[str, dict], path: str, count: int = 8) -> None:
    """A picture to look at: the first ``count`` test images (sorted ids, not picked) with the true mask's contour
    (white, dashed) and each method's predicted contour, titled with each method's Dice on that image."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    cases = case_ids(raw_folder, "labelsTs")[:count]
    colours = [plt.get_cmap("tab10")(i) for i in range(len(methods))]
    columns = min(4, len(cases))
    rows = -(-len(cases) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.6 * rows + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.set_axis_off()
    for ax, case in zip(axes.flat, cases):
        with Image.open(os.path.join(raw_folder, "imagesTs", f"{case}_0000{FILE_ENDING}")) as image:
            ax.imshow(np.asarray(image.convert("RGB")))
        with Image.open(os.path.join(raw_folder, "labelsTs", case + FILE_ENDING)) as label:
            truth = np.asarray(label) == 1
        if truth.any() and not truth.all():
            ax.contour(truth, levels=[0.5], colors="white", linewidths=1.5, linestyles="dashed")
        dice = []
        for colour, row in zip(colours, methods.values()):
            with Image.open(os.path.join(row["predictions"], case + FILE_ENDING)) as prediction:
                predicted = np.asarray(prediction) == 1
            if predicted.any() and not predicted.all():
                ax.contour(predicted, levels=[0.5], colors=[colour], linewidths=1.5)
            dice.append(f"{gaze.overlap(predicted, truth)['Dice']:.2f}")
        ax.set_title(f"{case[:14]}\nDice {' / '.join(dice)}", fontsize=8)
    handles = [Line2D([], [], color="white", linestyle="dashed", label="true mask")] + [
        Line2D([], [], color=colour, label=trainer) for colour, trainer in zip(colours, methods)]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, facecolor="lightgrey")
    fig.tight_layout(rect=(0, 0.6 / (3.6 * rows + 0.6), 1, 1))
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cell(score: Dict[str, float]) -> str:
    """A table cell "mean ± std"."""
    return f"{score['mean']:.2f} ± {score['std']:.2f}"


def optional(value: Optional[float]) -> str:
    """A number of the paper, or an empty cell where it reports none."""
    return "" if value is None else f"{value:.2f}"


def markdown(report: dict) -> str:
    """The report as Markdown: settings, the method table beside the paper, and the pseudo-mask table."""
    split, budget = report["split"], report["budget"]
    images = (f"the first {split['num_images']} image ids (sorted; --subset smoke run)" if report["subset"]
              else f"all {split['num_images']} images")
    lines = [
        f"Kvasir-SEG, {images}. Split (ours, seeded; the paper's split is unpublished): test fraction {split['test_fraction']}, seed {split['seed']}, "
        f"{split['rule']}: {split['num_train']} training / {split['num_test']} test images, the same test images "
        f"in {' and '.join(split['datasets'])}.",
        f"Budget: {budget['epochs']} × {budget['iterations_per_epoch']} = {budget['iterations']} iterations per "
        f"method, {CONFIGURATION}, plans {budget['plans']}, fold all, final checkpoint (the paper: 15,000 "
        f"iterations at batch 8 on 224 × 224 images). Device {report['device']}, TTA "
        f"{'off' if report['disable_tta'] else 'on'}.",
        "Metrics: per-image Dice and IoU (%) of the binary prediction against the true test mask "
        "(`nnunet_ext evaluate --voxel-units`), mean ± std over the test images"
        + (f", both at {' × '.join(str(v) for v in report['resized_to'])} (converted with --resize; the paper "
           "scores at the native size)." if report["resized_to"] else ", at the native image size."),
        "",
        "| trainer | trained on | batch, patch | n | Dice % | IoU % | paper: method | Dice % (paper) | "
        "Dice % (released checkpoints) |",
        "|" + "---|" * 9,
    ]
    for trainer, row in report["methods"].items():
        name, paper, released = PAPER[trainer]
        patch = " × ".join(str(p) for p in row["patch_size"])
        lines.append(f"| {trainer} | {row['trained_on']} | {row['batch_size']}, {patch} | {row['n']} | "
                     f"{cell(row['Dice'])} | {cell(row['IoU'])} | {name} | "
                     f"{optional(paper)} | {optional(released)} |")
    lines += ["", "Gaze pseudo-masks of the training images (labelsTr; level k = ordinal ≥ k = CRF map ≥ its "
              "threshold) against their true masks (labelsTrReference):", "",
              "| level | CRF threshold | n | Dice % | IoU % | reference Dice %, all 1000 images (spec §2.4) |",
              "|" + "---|" * 6]
    for level in report["pseudo_masks"]:
        lines.append(f"| {level['level']} | ≥ {level['threshold']:g} | {level['n']} | {cell(level['Dice'])} | "
                     f"{cell(level['IoU'])} | {PSEUDO_MASK_REFERENCE.get(level['threshold'], '')} |")
    return "\n".join(lines)


def main() -> None:
    """Convert (or reuse) both datasets → plan → per trainer: train, stock predict, evaluate against the
    true test masks → results.json, results.md and predictions.png in the work dir."""
    args = parse_args()
    cases = selected_cases(args.kvasir_dir, args.gaze_csv, args.subset)
    work = os.path.abspath(args.work_dir)
    epochs, iterations, variants, env = budgeted_run(work, args.trainers, args.iterations, args.iterations_per_epoch)
    converted = convert_datasets(args, cases, work, env)
    dataset_ids = {"full": args.dataset_id, "gaze": args.gaze_dataset_id}
    raw = {kind: find_dataset(env["nnUNet_raw"], dataset_id) for kind, dataset_id in dataset_ids.items()}
    if case_ids(raw["full"], "labelsTs") != case_ids(raw["gaze"], "labelsTs"):
        raise SystemExit(f"error: {raw['full']} and {raw['gaze']} have different test images")
    preprocessed = {kind: os.path.join(env["nnUNet_preprocessed"], os.path.basename(folder))
                    for kind, folder in raw.items()}
    if converted or not all(os.path.isfile(os.path.join(p, "nnUNetPlans.json")) for p in preprocessed.values()):
        run_step("plan and preprocess", nnunet_ext_command(
            "plan_and_preprocess", "-d", str(args.dataset_id), str(args.gaze_dataset_id), "-c", CONFIGURATION,
            "-np", str(args.num_processes), "-npfp", str(args.num_processes)), env)
    plans = "nnUNetPlans"
    if args.plans_batch_size:
        for folder in preprocessed.values():
            plans = plans_with_batch_size(folder, args.plans_batch_size, CONFIGURATION)
    methods = {}
    for trainer, variant in zip(args.trainers, variants):
        kind = TRAINER_SUPERVISION[trainer]
        dataset = str(dataset_ids[kind])
        run_step(f"train {variant} on {os.path.basename(raw[kind])}", [
            console_script("nnUNetv2_train"), dataset, CONFIGURATION, "all", "-tr", variant, "-p", plans,
            "-device", args.device, *(["--c"] if args.c else [])], env)
        predictions = os.path.join(work, "predictions", variant)
        run_step(f"predict {variant}", [
            console_script("nnUNetv2_predict"), "-i", os.path.join(raw[kind], "imagesTs"), "-o", predictions,
            "-d", dataset, "-c", CONFIGURATION, "-f", "all", "-tr", variant, "-p", plans, "-device", args.device,
            "-npp", str(args.num_processes), "-nps", str(args.num_processes),
            *(["--disable_tta"] if args.disable_tta else [])], env)
        summary = os.path.join(work, "predictions", f"{variant}_summary.json")
        run_step(f"evaluate {variant}", nnunet_ext_command(
            "evaluate", "-ref", os.path.join(raw[kind], "labelsTs"), "-pred", predictions, "-o", summary,
            "--voxel-units", "-np", str(args.num_processes)), env)
        batch_size, patch_size = plans_settings(preprocessed[kind], plans)
        methods[trainer] = {"variant": variant, "trained_on": f"{os.path.basename(raw[kind])} ({kind} supervision)",
                            "batch_size": batch_size, "patch_size": patch_size, "predictions": predictions,
                            "summary": summary,
                            **evaluate_predictions(summary), "paper": dict(zip(("method", "Dice", "Dice_released"),
                                                                                PAPER[trainer]))}
    with open(os.path.join(raw["gaze"], "dataset.json")) as f:
        split = json.load(f)["kvasir_split"]
    split.update(num_images=len(cases), datasets=[os.path.basename(folder) for folder in raw.values()])
    report = {"subset": args.subset, "split": split, "resized_to": args.resize, "device": args.device,
              "disable_tta": args.disable_tta,
              "budget": {"epochs": epochs, "iterations_per_epoch": iterations, "iterations": epochs * iterations,
                         "plans": plans, "configuration": CONFIGURATION, "fold": "all"},
              "methods": methods, "pseudo_masks": pseudo_mask_quality(raw["gaze"])}
    with open(os.path.join(work, "results.json"), "w") as f:
        json.dump(report, f, indent=1)
    write_prediction_figure(raw["full"], methods, os.path.join(work, "predictions.png"))
    text = markdown(report)
    with open(os.path.join(work, "results.md"), "w") as f:
        f.write(text + "\n")
    print("\n" + text)


if __name__ == "__main__":
    try:
        main()
    except subprocess.CalledProcessError as error:
        sys.exit(f"\nerror: step failed with exit status {error.returncode}: {' '.join(error.cmd)}")

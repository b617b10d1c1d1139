"""``nnunet_ext evaluate_missing``: Dice per class or region for every non-empty subset of the modalities, one table
and a heat-map (the missing-modality tables of HeMIS, U-HVED and KD-Net; DESIGN.md §8.2).

For each protocol and each subset of present modalities (15 for BraTS's four, 7 for MyoPS's three; all present
first, then by decreasing size), the test images are predicted with the other channels absent
(:func:`nnunet_ext.inference.missing_modalities.predict_with_missing`) into ``OUT/<protocol>/<present>/`` and
scored with :func:`nnunet_ext.evaluation.folders.evaluate_folders` (its ``summary.json`` beside the predictions).
A stock nnU-Net model is predicted with zero-filled absent channels; its rows say ``zero-filled``.

Written to ``OUT``: ``missing_modalities.json`` (every row), ``missing_modalities.csv`` and
``missing_modalities.png`` (one panel per protocol: subsets × classes, mean Dice in each cell).
"""
import csv
import itertools
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

from nnunet_ext.evaluation.folders import evaluate_folders
from nnunet_ext.evaluation.label_sets import class_key, regions_of
from nnunet_ext.inference.missing_modalities import channel_names, predict_with_missing

ZERO_FILLED = "zero-filled"
"""Protocol name of the rows of a network that does not know about absent modalities (stock nnU-Net)."""


def present_subsets(num_channels: int) -> List[Tuple[int, ...]]:
    """Every non-empty subset of ``range(num_channels)``: all channels first, then by decreasing size."""
    return [subset for size in range(num_channels, 0, -1)
            for subset in itertools.combinations(range(num_channels), size)]


def subset_name(subset: Sequence[int], names: Sequence[str]) -> str:
    """``T1+T2``: the present modalities of a row."""
    return "+".join(names[c] for c in subset)


def scored_classes(dataset_json: dict, source: str) -> Dict[str, Any]:
    """``{name: label value or region}`` the rows score: the regions of a region-based dataset, else its labels
    (``source``: where the dataset.json came from, for errors)."""
    labels = dataset_json["labels"]
    if any(isinstance(value, (list, tuple)) for value in labels.values()):
        return regions_of(dataset_json, source)
    return {name: int(value) for name, value in labels.items() if name not in ("background", "ignore")}


def evaluate_missing(predictor: nnUNetPredictor, images: str, references: str,
                     output_folder: str, protocols: Sequence[str] = ("joint",), num_processes_preprocessing: int = 3,
                     num_processes_segmentation_export: int = 3, num_processes_evaluation: int = 2
                     ) -> Dict[str, Any]:
    """Predict and score every subset for every protocol; returns (and writes) ``{"classes": [names], "rows":
    [{"protocol", "present": [names], "dice": {name: mean Dice}, "mean_dice"}]}``."""
    dataset_json = predictor.dataset_json
    names = channel_names(dataset_json)
    classes = scored_classes(dataset_json, "the model's dataset.json")
    network = getattr(predictor.network, "_orig_mod", predictor.network)
    knows_absent = hasattr(network, "set_absent_channels")
    regions = classes if any(isinstance(value, tuple) for value in classes.values()) else None
    labels = None if regions is not None else list(classes.values())
    rows = []
    for protocol in (protocols if knows_absent else (protocols[0],)):
        shown = protocol if knows_absent else ZERO_FILLED
        for subset in present_subsets(len(names)):
            folder = os.path.join(output_folder, shown, re.sub(r"\W+", "_", subset_name(subset, names)))
            missing = [c for c in range(len(names)) if c not in subset]
            predict_with_missing(predictor, images, folder, missing, protocol,
                                 num_processes_preprocessing=num_processes_preprocessing,
                                 num_processes_segmentation_export=num_processes_segmentation_export)
            summary = evaluate_folders(references, folder, labels=labels, regions=regions,
                                       num_processes=num_processes_evaluation)
            dice = {name: summary["mean"][class_key(value)]["Dice"] for name, value in classes.items()}
            rows.append({"protocol": shown, "present": [names[c] for c in subset], "dice": dice,
                         "mean_dice": float(np.mean(list(dice.values())))})
    table = {"channels": names, "classes": list(classes), "rows": rows}
    write_table(table, output_folder)
    return table


def write_table(table: Dict[str, Any], output_folder: str) -> None:
    """``missing_modalities.json``, ``.csv`` and the heat-map ``.png`` in ``output_folder``."""
    os.makedirs(output_folder, exist_ok=True)
    with open(os.path.join(output_folder, "missing_modalities.json"), "w") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(output_folder, "missing_modalities.csv"), "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["protocol", *table["channels"], *table["classes"], "mean"])
        for row in table["rows"]:
            writer.writerow([row["protocol"], *("1" if c in row["present"] else "0" for c in table["channels"]),
                             *(f"{row['dice'][name]:.4f}" for name in table["classes"]), f"{row['mean_dice']:.4f}"])
    draw_heat_map(table, os.path.join(output_folder, "missing_modalities.png"))


def draw_heat_map(table: Dict[str, Any], output_file: str) -> None:
    """One panel per protocol: a row per subset of present modalities, a column per class and the mean."""
    import matplotlib
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    protocols = list(dict.fromkeys(row["protocol"] for row in table["rows"]))
    columns = [*table["classes"], "mean"]
    first = [row for row in table["rows"] if row["protocol"] == protocols[0]]
    figure, axes = plt.subplots(1, len(protocols), squeeze=False,
                                figsize=(1.2 * len(columns) * len(protocols) + 2.5, 0.45 * len(first) + 1.5))
    for axis, protocol in zip(axes[0], protocols):
        rows = [row for row in table["rows"] if row["protocol"] == protocol]
        values = np.array([[row["dice"][c] for c in table["classes"]] + [row["mean_dice"]] for row in rows])
        axis.imshow(values, vmin=0, vmax=1, cmap="viridis", aspect="auto")
        for (i, j), value in np.ndenumerate(values):
            axis.text(j, i, f"{value:.2f}", ha="center", va="center", color="white" if value < 0.6 else "black",
                      fontsize=8)
        axis.set_xticks(range(len(columns)), columns, rotation=30, ha="right")
        axis.set_yticks(range(len(rows)), ["+".join(row["present"]) for row in rows])
        axis.set_title(f"Dice, {protocol}")
    figure.tight_layout()
    figure.savefig(output_file, dpi=100)
    plt.close(figure)


def format_markdown(table: Dict[str, Any], protocols: Optional[Sequence[str]] = None) -> str:
    """The table as Markdown: ● present / ○ absent per modality, Dice per class and the mean."""
    header = ["protocol", *table["channels"], *table["classes"], "mean"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table["rows"]:
        if protocols is not None and row["protocol"] not in protocols:
            continue
        cells = [row["protocol"], *("●" if c in row["present"] else "○" for c in table["channels"]),
                 *(f"{100 * row['dice'][c]:.1f}" for c in table["classes"]), f"{100 * row['mean_dice']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

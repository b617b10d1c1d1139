"""``nnunet_ext gaze``: the gaze pipeline on a GazeMedSeg CSV and a folder of images, in parallel (see the
package docstring for what it writes)."""
import argparse
import itertools
import json
import os
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable, Deque, Dict, Iterator, Optional, Sequence, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from nnunet_ext.gaze.crf import CrfParameters, require_densecrf
from nnunet_ext.gaze.fixations import image_key, read_gaze_csv
from nnunet_ext.gaze.images import read_mask, read_rgb
from nnunet_ext.gaze.levels import decode_levels
from nnunet_ext.gaze.pseudo_labels import SOFT_MAP_BINARISATION, PseudoLabel, map_names, pseudo_label, quality
from nnunet_ext.gaze.settings import PRESETS, resolve_settings
from nnunet_ext.worker_pool import result_of, spawned_pool


IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".dcm")
"""Image files the command reads: Pillow formats, and single DICOM slices (read with SimpleITK)."""


SOFT_MAP_PNG_SCALE = 65535
"""Soft maps are written as 16-bit PNG: stored value = round(map · 65535)."""


@dataclass(frozen=True)
class _Task:
    key: str
    image_path: str
    mask_path: Optional[str]
    fixations: np.ndarray
    expected_size: Optional[Tuple[int, int]]
    sigma: float
    thresholds: Tuple[float, ...]
    crf: CrfParameters
    output_dir: str
    preview: bool


def _write_soft_map(soft_map: np.ndarray, path: str) -> None:
    Image.fromarray(np.round(soft_map * SOFT_MAP_PNG_SCALE).astype(np.uint16)).save(path)


def render_preview(image_rgb: np.ndarray, label: PseudoLabel, thresholds: Sequence[float], path: str,
                   mask: Optional[np.ndarray] = None, fixations: Optional[np.ndarray] = None,
                   title: str = "") -> None:
    """Save an overlay for a person to look at: the image, the heatmap in colour (opacity growing with the
    heatmap), the fixations (circles, area ∝ duration), one contour per level and, if given, the true mask's
    contour (white, dashed)."""
    import matplotlib
    matplotlib.use("agg")
    import matplotlib.pyplot as plt

    height, width = label.heatmap.shape
    dpi = 100
    fig = plt.figure(figsize=(max(width, 300) / dpi, max(height, 300) / dpi), dpi=dpi)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.imshow(image_rgb)
    overlay = plt.get_cmap("jet")(label.heatmap)
    overlay[..., 3] = 0.55 * label.heatmap
    ax.imshow(overlay)
    if fixations is not None and len(fixations):
        ax.scatter(fixations[:, 0] * width, fixations[:, 1] * height, s=fixations[:, 2] / 10, facecolors="none",
                   edgecolors="cyan", linewidths=1, label="fixations")
    colours = plt.get_cmap("autumn")(np.linspace(0, 1, max(len(thresholds), 2)))
    for k, threshold in enumerate(thresholds, start=1):
        level = decode_levels(label.levels, k)
        if level.any() and not level.all():
            ax.contour(level, levels=[0.5], colors=[colours[k - 1]], linewidths=2)
        ax.plot([], [], color=colours[k - 1], label=f"level {k} (CRF ≥ {threshold:g})")
    if mask is not None and mask.any() and not mask.all():
        ax.contour(mask, levels=[0.5], colors="white", linewidths=2, linestyles="dashed")
        ax.plot([], [], color="white", linestyle="dashed", label="true mask")
    ax.legend(loc="lower right", fontsize=8, framealpha=0.6)
    ax.text(4, 4, title, color="white", fontsize=8, va="top", backgroundcolor=(0, 0, 0, 0.5))
    ax.set_xlim(-0.5, width - 0.5)
    ax.set_ylim(height - 0.5, -0.5)
    ax.set_axis_off()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _process(task: _Task) -> Tuple[str, Dict[str, dict]]:
    """One image of the command (runs in a pool worker): compute, write the maps, score."""
    image = read_rgb(task.image_path)
    label = pseudo_label(image, task.fixations, task.sigma, task.thresholds, task.crf, task.expected_size,
                         name=task.image_path)
    mask = None
    if task.mask_path is not None:
        mask = read_mask(task.mask_path)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{task.mask_path}: mask size {mask.shape} differs from the image's {image.shape[:2]} "
                             f"({task.image_path})")
    _write_soft_map(label.heatmap, os.path.join(task.output_dir, "heatmaps", f"{task.key}.png"))
    _write_soft_map(label.crf_map, os.path.join(task.output_dir, "crf", f"{task.key}.png"))
    Image.fromarray(label.levels).save(os.path.join(task.output_dir, "levels", f"{task.key}.png"))
    scores = quality(label, task.thresholds, mask)
    if task.preview:
        title = task.key
        if mask is not None:
            entries = [f"{name} {s['Dice']:.3f}" for name, s in scores.items()]
            title += "\nDice: " + "\n".join(", ".join(entries[i:i + 2]) for i in range(0, len(entries), 2))
        render_preview(image, label, task.thresholds, os.path.join(task.output_dir, "previews", f"{task.key}.png"),
                       mask, task.fixations, title)
    return task.key, scores


def list_images(folder: str) -> Dict[str, str]:
    """``{image key: path}`` of the image files in ``folder`` (see :data:`IMAGE_EXTENSIONS`); keys must be unique."""
    if not os.path.isdir(folder):
        raise ValueError(f"image folder {folder} does not exist")
    found: Dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        if name.lower().endswith(IMAGE_EXTENSIONS) and not name.startswith("."):
            key = image_key(name)
            if key in found:
                raise ValueError(f"{folder}: two files for image {key!r}: {os.path.basename(found[key])} and {name}")
            found[key] = os.path.join(folder, name)
    if not found:
        raise ValueError(f"{folder} holds no image file ({', '.join(IMAGE_EXTENSIONS)})")
    return found


def map_in_pool(function: Callable, tasks: Sequence, num_processes: int, description: str = "",
                progress: bool = True) -> Iterator:
    """Yield ``function(task)`` for every task, in task order, with a tqdm bar if ``progress``.

    With ``num_processes`` > 0 the calls run in a pool of spawned workers, at most ``2 * num_processes`` ahead of
    the caller, so results wait in memory only briefly while the caller consumes them (e.g. hands them to a
    writer); ``num_processes`` = 0 runs them in the calling process. A worker's exception is re-raised here.
    """
    bar = tqdm(total=len(tasks), desc=description, unit="image", disable=not progress)
    try:
        if num_processes <= 0 or len(tasks) <= 1:
            for task in tasks:
                yield function(task)
                bar.update(1)
            return
        with spawned_pool(min(num_processes, len(tasks))) as pool:
            remaining = iter(tasks)
            pending: Deque = deque(pool.submit(function, task)
                                   for task in itertools.islice(remaining, 2 * num_processes))
            while pending:
                result = result_of(pending.popleft())
                pending.extend(pool.submit(function, task) for task in itertools.islice(remaining, 1))
                yield result
                bar.update(1)
    finally:
        bar.close()


def _preview_keys(keys: Sequence[str], count: int) -> set:
    """``count`` keys spread evenly over the sorted list (deterministic)."""
    if count <= 0:
        return set()
    if count >= len(keys):
        return set(keys)
    return {keys[i] for i in np.linspace(0, len(keys) - 1, count).round().astype(int)}


def run_pipeline(csv_path: str, images_dir: str, output_dir: str, preset: str = "kvasir",
                 sigma: Optional[float] = None, thresholds: Optional[Sequence[float]] = None,
                 levels: Optional[int] = None, masks_dir: Optional[str] = None, num_processes: int = 2,
                 previews: int = 20, crf: CrfParameters = CrfParameters()) -> dict:
    """Run the gaze pipeline on every image of ``images_dir``; write the maps, previews and report (module doc).

    Every image needs fixations in the CSV (``ValueError`` naming the images otherwise); CSV images without an
    image file are skipped and counted. With ``masks_dir`` every image needs a mask of the same key. Returns
    the report that is also written to ``output_dir/quality_report.json``.
    """
    require_densecrf()
    sigma, ordered = resolve_settings(preset, sigma, thresholds, levels)
    fixations, sizes = read_gaze_csv(csv_path)
    images = list_images(images_dir)
    without_gaze = sorted(k for k in images if k not in fixations)
    if without_gaze:
        raise ValueError(f"{csv_path} has no fixations for {len(without_gaze)} image(s) of {images_dir}: "
                         f"{', '.join(os.path.basename(images[k]) for k in without_gaze[:10])}")
    masks: Dict[str, str] = {}
    if masks_dir is not None:
        masks = list_images(masks_dir)
        without_mask = sorted(k for k in images if k not in masks)
        if without_mask:
            raise ValueError(f"{masks_dir} has no mask for {len(without_mask)} image(s): "
                             f"{', '.join(os.path.basename(images[k]) for k in without_mask[:10])}")
    for sub in ("heatmaps", "crf", "levels", "previews"):
        os.makedirs(os.path.join(output_dir, sub), exist_ok=True)
    keys = sorted(images)
    shown = _preview_keys(keys, previews)
    tasks = [_Task(k, images[k], masks.get(k), fixations[k], sizes.get(k), sigma, ordered, crf, output_dir,
                   k in shown) for k in keys]
    start = time.perf_counter()
    per_image = dict(map_in_pool(_process, tasks, num_processes, "gaze pseudo-labels"))
    seconds = time.perf_counter() - start
    names = map_names(ordered)
    mean = {name: {metric: float(np.mean([per_image[k][name][metric] for k in keys]))
                   for metric in per_image[keys[0]][name]} for name in names}
    report = {
        "csv": os.path.abspath(csv_path), "images": os.path.abspath(images_dir),
        "masks": os.path.abspath(masks_dir) if masks_dir else None,
        "settings": {"preset": preset, "sigma": sigma, "thresholds": list(ordered),
                     "levels": {f"level_{k}": t for k, t in enumerate(ordered, start=1)}, "crf": asdict(crf)},
        "binarisation": (f"heatmap and crf: soft map >= {SOFT_MAP_BINARISATION}; level_k: CRF map >= the k-th "
                         "smallest threshold (ordinal level map >= k). 'fraction' = share of the image area in the "
                         "mask. Dice = 2|P and G| / (|P| + |G|), IoU = |P and G| / |P or G|; both masks empty "
                         "counts as 1."),
        "files": {"heatmaps": "heatmaps/<id>.png, 16-bit, value / 65535", "crf": "crf/<id>.png, 16-bit, value / 65535",
                  "levels": "levels/<id>.png, uint8 ordinal level map", "previews": "previews/<id>.png"},
        "num_images": len(keys), "csv_images_without_file": len(set(fixations) - set(images)),
        "seconds": seconds, "images_per_second": len(keys) / seconds if seconds > 0 else float("inf"),
        "num_processes": num_processes, "per_image": per_image, "mean": mean,
    }
    with open(os.path.join(output_dir, "quality_report.json"), "w") as f:
        json.dump(report, f, indent=2)
    return report


def format_report(report: dict) -> str:
    """The quality report as a text table: one row per image, then the mean (Dice / IoU where masks were given)."""
    names = list(report["mean"])
    scored = "Dice" in report["mean"][names[0]]
    metrics = ("Dice", "IoU") if scored else ("fraction",)
    header = ["image"] + [f"{name} {m}" for name in names for m in metrics]
    rows = [[key] + [f"{scores[name][m]:.4f}" for name in names for m in metrics]
            for key, scores in report["per_image"].items()]
    rows.append(["mean"] + [f"{report['mean'][name][m]:.4f}" for name in names for m in metrics])
    widths = [max(len(row[i]) for row in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)) for row in [header] + rows]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    settings = report["settings"]
    levels = ", ".join(f"{k} >= {t:g}" for k, t in settings["levels"].items())
    lines.append(f"sigma {settings['sigma']:g} px; levels: {levels}; CRF {settings['crf']}")
    lines.append(f"binarisation: {report['binarisation']}")
    lines.append(f"{report['num_images']} images in {report['seconds']:.1f} s "
                 f"({report['images_per_second']:.2f} images/s, -np {report['num_processes']})")
    return "\n".join(lines)


def add_gaze_setting_arguments(parser: argparse.ArgumentParser, preset: Optional[str] = None) -> None:
    """``--sigma``, ``--thresholds`` and ``--levels``, overriding a preset (shared by the gaze command and the
    converters that write gaze pseudo-masks); the help states the values of ``preset``, or of every preset."""
    names = [preset] if preset else sorted(PRESETS)
    tag = (lambda name: "") if preset else (lambda name: f" ({name})")
    sigma = ", ".join(f"{PRESETS[n].sigma:g}{tag(n)}" for n in names)
    thresholds = "; ".join(f"{PRESETS[n].thresholds[PRESETS[n].default_levels]} for {PRESETS[n].default_levels} "
                           f"levels{tag(n)}" for n in names)
    levels = ", ".join(f"{PRESETS[n].default_levels}{tag(n)}" for n in names)
    parser.add_argument("--sigma", type=float, help=f"Gaussian sigma in pixels (default: {sigma})")
    parser.add_argument("--thresholds", type=float, nargs="+",
                        help=f"level thresholds on the CRF map, any order (default: {thresholds})")
    parser.add_argument("--levels", type=int, help=f"number of levels (default: {levels})")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext gaze``."""
    parser.description = ("GazeSup pseudo-labels from a GazeMedSeg gaze CSV: heatmaps, dense-CRF soft maps and "
                          "level masks, overlay previews and a quality report.")
    parser.add_argument("--csv", required=True, help="GazeMedSeg fixation CSV (current or older format)")
    parser.add_argument("--images", required=True, help="folder of the images named in the CSV")
    parser.add_argument("-o", "--output", required=True, help="output folder")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="kvasir",
                        help="dataset constants: sigma 70 / thresholds 0.5, 0.3 (kvasir), 50 / 0.2, 0.4 (nci_isbi)")
    add_gaze_setting_arguments(parser)
    parser.add_argument("--masks", help="folder of true masks (same names) for the quality report")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--previews", type=int, default=20,
                        help="number of overlay previews, spread over the images (default: 20)")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext gaze``."""
    report = run_pipeline(args.csv, args.images, args.output, preset=args.preset, sigma=args.sigma,
                          thresholds=args.thresholds, levels=args.levels, masks_dir=args.masks,
                          num_processes=args.num_processes, previews=args.previews)
    print(format_report(report))
    print(f"written to {os.path.abspath(args.output)} (quality_report.json, heatmaps/, crf/, levels/, previews/)")

"""Small synthetic datasets generated on the fly for the demo and the tests.

:func:`write_synthetic_dataset`: 3-D, with unlabeled cases. Each image holds one or two ellipsoids ("organ" =
label 1) brighter than a smooth noisy background, so a few training iterations already learn something.
Labeled cases go to imagesTr/labelsTr, unlabeled ones to imagesTrUnlabeled (their labels to
labelsTrReference), test cases to imagesTs/labelsTs.

:func:`write_synthetic_gaze_dataset`: 2-D RGB PNG images (Kvasir's layout) of a bright disc-like "lesion",
with gaze-style weak labels: the ordinal map of L nested levels (level 1 = the lesion grown by a few pixels
and shifted, as loose gaze masks are; level L = its shrunken core), declared as nested regions like
``nnunet_ext convert kvasir --gaze-csv``; the true masks go to labelsTrReference and labelsTs.
"""
from typing import List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import binary_dilation, binary_erosion, gaussian_filter

from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
from nnunet_ext.gaze.levels import gaze_labels
from nnunet_ext.partners import PARTNER_KEY


def synthetic_case(rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float],
                   num_classes: int = 1) -> Tuple[sitk.Image, sitk.Image]:
    """One (image, label) pair; arrays in (z, y, x) order, spacing given as (x, y, z). With ``num_classes`` 2 each
    ellipsoid has a core (the inner half of its radii) labeled 2, brighter still."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    for _ in range(rng.integers(1, 3)):
        center = rng.uniform(0.3, 0.7, 3) * np.array(shape)
        radii = rng.uniform(0.12, 0.25, 3) * np.array(shape)
        distance = (((grid - center) / radii) ** 2).sum(-1)
        label[distance <= 1] = 1
        if num_classes > 1:
            label[distance <= 0.25] = 2
    background = gaussian_filter(rng.normal(0, 1, shape), 2) * 3
    image = (background + 2.0 * (label > 0) + 1.5 * (label == 2) + rng.normal(0, 0.4, shape)).astype(np.float32)
    images = []
    for array, dtype in ((image, np.float32), (label, np.uint8)):
        itk = sitk.GetImageFromArray(array.astype(dtype))
        itk.SetSpacing(tuple(float(s) for s in spacing))
        images.append(itk)
    return images[0], images[1]


def with_unannotated_slab(label: sitk.Image, ignore_value: int) -> sitk.Image:
    """The label with its last quarter of slices (first array axis) set to ``ignore_value``: a case annotated
    on three quarters of its slices, for datasets with nnU-Net's ``ignore`` label."""
    array = sitk.GetArrayFromImage(label)
    array[-max(1, array.shape[0] // 4):] = ignore_value
    ignored = sitk.GetImageFromArray(array)
    ignored.CopyInformation(label)
    return ignored


SYNTHETIC_LABEL_SETS = {
    "binary": ({"background": 0, "organ": 1}, None),
    "multiclass": ({"background": 0, "organ": 1, "core": 2}, None),
    "regions": ({"background": 0, "whole": [1, 2], "core": [2]}, [1, 2]),
}
"""Label sets of :func:`write_synthetic_dataset`: ``labels`` and ``regions_class_order`` per kind."""


def write_synthetic_dataset(dataset_id: int, name: str = "SyntheticSSL", num_labeled: int = 6,
                            num_unlabeled: int = 8, num_test: int = 3, shape: Sequence[int] = (32, 32, 32),
                            spacing: Sequence[float] = (1.0, 1.0, 1.0), seed: int = 0,
                            raw_root: Optional[str] = None, overwrite: bool = False, label_set: str = "binary",
                            ignore_label: bool = False) -> str:
    """Write the dataset under ``raw_root`` (default ``$nnUNet_raw``) and return its folder.

    ``label_set`` is one of :data:`SYNTHETIC_LABEL_SETS`: one organ, organ and core as two classes, or whole and
    core as nested regions (as BraTS). With ``ignore_label`` the dataset declares nnU-Net's ``ignore`` label and
    the last quarter of every training label's slices is unannotated.
    """
    rng = np.random.default_rng(seed)
    labels, regions_class_order = SYNTHETIC_LABEL_SETS[label_set]
    labels = dict(labels)
    ignore_value = 3 if label_set != "binary" else 2
    if ignore_label:
        labels["ignore"] = ignore_value
    extra = {} if regions_class_order is None else {"regions_class_order": regions_class_order}
    writer = RawDatasetWriter(dataset_id, name, {"0": "MRI"}, labels, raw_root=raw_root, overwrite=overwrite,
                              extra_json=extra)
    with writer:
        for i in range(num_labeled + num_unlabeled + num_test):
            image, label = synthetic_case(rng, shape, spacing, 1 if label_set == "binary" else 2)
            if i < num_labeled:
                if ignore_label:
                    label = with_unannotated_slab(label, ignore_value)
                writer.add_training_case(f"synth_{i:03d}", [image], label, source="synthetic")
            elif i < num_labeled + num_unlabeled:
                writer.add_unlabeled_case(f"synth_{i:03d}", [image], label, source="synthetic")
            else:
                writer.add_test_case(f"synth_{i:03d}", [image], label, source="synthetic")
    return writer.final_folder


def synthetic_gaze_case(rng: np.random.Generator, size: int, num_levels: int
                        ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One (RGB image ``(H, W, 3)`` uint8, true mask, ordinal level map) triple of a ``size`` × ``size`` image."""
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    center = rng.uniform(0.3, 0.7, 2) * size
    radii = rng.uniform(0.12, 0.22, 2) * size
    mask = (((yy - center[0]) / radii[0]) ** 2 + ((xx - center[1]) / radii[1]) ** 2) <= 1
    background = gaussian_filter(rng.normal(0, 1, (size, size)), 2) * 25 + 90
    grey = background + 80 * mask + rng.normal(0, 8, (size, size))
    image = np.clip(np.stack([grey, 0.8 * grey, 0.6 * grey], -1), 0, 255).astype(np.uint8)
    shifted = np.roll(mask, tuple(rng.integers(-2, 3, 2)), axis=(0, 1))
    levels = np.zeros((size, size), dtype=np.uint8)
    for k in range(1, num_levels + 1):
        grown = 3 - 2 * (k - 1)
        level = binary_dilation(shifted, iterations=grown) if grown > 0 else \
            binary_erosion(shifted, iterations=-grown) if grown < 0 else shifted
        levels[level] = k
    return image, mask.astype(np.uint8), levels


def write_synthetic_gaze_dataset(dataset_id: int, name: str = "SyntheticGaze", num_training: int = 8,
                                 num_test: int = 3, size: int = 64, num_levels: int = 2, seed: int = 0,
                                 raw_root: Optional[str] = None, overwrite: bool = False) -> str:
    """Write the 2-D gaze dataset under ``raw_root`` (default ``$nnUNet_raw``) and return its folder."""
    rng = np.random.default_rng(seed)
    labels, order = gaze_labels(num_levels)
    extra = {"gaze": {"target": "lesion", "levels": num_levels}}
    if order is not None:
        extra["regions_class_order"] = order
    writer = RawDatasetWriter(dataset_id, name, {"0": "R", "1": "G", "2": "B"}, labels, file_ending=".png",
                              raw_root=raw_root, overwrite=overwrite, extra_json=extra)

    def itk(array: np.ndarray) -> sitk.Image:
        return sitk.GetImageFromArray(array, isVector=array.ndim == 3)

    with writer:
        for i in range(num_training + num_test):
            image, mask, levels = synthetic_gaze_case(rng, size, num_levels)
            if i < num_training:
                writer.add_training_case(f"gaze_{i:03d}", [itk(image)], itk(levels), source="synthetic",
                                         reference_label=itk(mask))
            else:
                writer.add_test_case(f"gaze_{i:03d}", [itk(image)], itk(mask), source="synthetic")
    return writer.final_folder


PARTNER_MODALITIES = {"CT": {"spacing": (0.8, 0.8, 2.0), "shape": (20, 40, 40), "scale": 60.0, "offset": -40.0,
                             "direction": (1, 0, 0, 0, 1, 0, 0, 0, 1)},
                      "MRI": {"spacing": (1.2, 1.2, 1.2), "shape": (32, 28, 30), "scale": 150.0, "offset": 400.0,
                              "direction": (-1, 0, 0, 0, 1, 0, 0, 0, -1)}}
"""The two modalities of :func:`write_synthetic_partner_datasets`: their geometry (spacing (x, y, z), array shape
(z, y, x), direction) and intensity scale and offset (CT-like values in HU, MR-like arbitrary units)."""


def write_synthetic_partner_datasets(dataset_id: int, partner_id: int, num_labeled: int = 6,
                                     num_unlabeled: int = 4, num_test: int = 2, seed: int = 0,
                                     raw_root: Optional[str] = None, overwrite: bool = False) -> Tuple[str, str]:
    """Write a synthetic "CT" dataset (``dataset_id``) and an unpaired "MRI" partner (``partner_id``) with the same
    label set and different patients, spacing, size, orientation and intensity scale, each with labeled,
    unlabeled and test cases, naming each other (``nnunet_ext_partner``); returns both folders."""
    rng = np.random.default_rng(seed)
    names = {"CT": f"Dataset{dataset_id:03d}_SynthCT", "MRI": f"Dataset{partner_id:03d}_SynthMR"}
    folders = []
    for (modality, settings), dataset, other in zip(PARTNER_MODALITIES.items(), (dataset_id, partner_id),
                                                    ("MRI", "CT")):
        writer = RawDatasetWriter(dataset, names[modality][len("DatasetXXX_"):], {"0": modality},
                                  SYNTHETIC_LABEL_SETS["binary"][0], raw_root=raw_root, overwrite=overwrite,
                                  extra_json={PARTNER_KEY: names[other]})
        with writer:
            for i in range(num_labeled + num_unlabeled + num_test):
                image, label = synthetic_case(rng, settings["shape"], settings["spacing"])
                image = sitk.Cast(image * settings["scale"] + settings["offset"], sitk.sitkFloat32)
                for itk in (image, label):
                    itk.SetDirection(settings["direction"])
                case = f"{modality.lower()}_{i:03d}"
                if i < num_labeled:
                    writer.add_training_case(case, [image], label, source="synthetic")
                elif i < num_labeled + num_unlabeled:
                    writer.add_unlabeled_case(case, [image], label, source="synthetic")
                else:
                    writer.add_test_case(case, [image], label, source="synthetic")
        folders.append(writer.final_folder)
    return folders[0], folders[1]


MULTIMODAL_CONTRASTS = ((2.0, 0.0), (0.0, 3.0), (-2.0, -1.0), (1.0, 1.0))
"""(whole-structure, core) intensity offsets of the channels of :func:`write_synthetic_multimodal_dataset`: each
channel shows the structures differently (the first the whole structure, the second only its core, the third
both darker, the fourth both faintly), as MR sequences do."""


def write_synthetic_multimodal_dataset(dataset_id: int, name: str = "SyntheticMultimodal", num_channels: int = 3,
                                       num_training: int = 6, num_test: int = 2, shape: Sequence[int] = (32, 32, 32),
                                       label_set: str = "multiclass", seed: int = 0, raw_root: Optional[str] = None,
                                       overwrite: bool = False) -> str:
    """Write a co-registered ``num_channels``-channel dataset (2 to 4 channels; MAML's data) under ``raw_root``
    (default ``$nnUNet_raw``) and return its folder: each case is an ellipsoid structure with a core
    (:func:`synthetic_case`), each channel shows it with its own contrast (:data:`MULTIMODAL_CONTRASTS`) and
    noise, labels as ``label_set`` (``multiclass`` or ``regions``, see :data:`SYNTHETIC_LABEL_SETS`)."""
    if not 2 <= num_channels <= len(MULTIMODAL_CONTRASTS):
        raise ValueError(f"num_channels must be 2 to {len(MULTIMODAL_CONTRASTS)}, got {num_channels}")
    rng = np.random.default_rng(seed)
    labels, regions_class_order = SYNTHETIC_LABEL_SETS[label_set]
    extra = {} if regions_class_order is None else {"regions_class_order": regions_class_order}
    channel_names = {str(c): f"MR{c + 1}" for c in range(num_channels)}
    writer = RawDatasetWriter(dataset_id, name, channel_names, dict(labels), raw_root=raw_root, overwrite=overwrite,
                              extra_json=extra)
    with writer:
        for i in range(num_training + num_test):
            _, label = synthetic_case(rng, shape, (1.0, 1.0, 1.0), num_classes=2)
            array = sitk.GetArrayFromImage(label)
            images = []
            for whole, core in MULTIMODAL_CONTRASTS[:num_channels]:
                channel = gaussian_filter(rng.normal(0, 1, shape), 2) * 2 + whole * (array > 0) + \
                    core * (array == 2) + rng.normal(0, 0.4, shape)
                image = sitk.GetImageFromArray(channel.astype(np.float32))
                image.CopyInformation(label)
                images.append(image)
            if i < num_training:
                writer.add_training_case(f"mm_{i:03d}", images, label, source="synthetic")
            else:
                writer.add_test_case(f"mm_{i:03d}", images, label, source="synthetic")
    return writer.final_folder


def write_synthetic_single_structure_datasets(first_id: int, structures: Sequence[str] = ("liver", "spleen"),
                                              num_training: int = 4, num_test: int = 2,
                                              shape: Sequence[int] = (24, 32, 32), seed: int = 0,
                                              raw_root: Optional[str] = None, overwrite: bool = False) -> List[str]:
    """Write one dataset per structure (ids ``first_id``, ``first_id + 1``, …; the partial-label sources of
    ``nnunet_ext make_partial_union``) and return their folders. Every image shows every structure (structure k
    an ellipsoid of its own brightness, side by side along x), but dataset k labels only structure k (label 1,
    named after it), as single-organ datasets do; every second dataset is stored in another orientation (x
    flipped, direction −x), as sources often are."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float32)
    folders = []
    for k, structure in enumerate(structures):
        writer = RawDatasetWriter(first_id + k, f"Synth{structure.capitalize()}", {"0": "CT"},
                                  {"background": 0, structure: 1}, raw_root=raw_root, overwrite=overwrite)
        with writer:
            for i in range(num_training + num_test):
                image = gaussian_filter(rng.normal(0, 1, shape), 2) * 30
                label = np.zeros(shape, dtype=np.uint8)
                for j in range(len(structures)):
                    center = np.array(shape) * np.array([0.5, 0.5, 0.3 + 0.4 * j / max(1, len(structures) - 1)])
                    center = center + rng.uniform(-2, 2, 3)
                    inside = (((grid - center) / (np.array(shape) * rng.uniform(0.15, 0.2, 3))) ** 2).sum(-1) <= 1
                    image = image + (80 + 60 * j) * inside
                    if j == k:
                        label[inside] = 1
                items = [sitk.GetImageFromArray(a) for a in ((image + rng.normal(0, 8, shape)).astype(np.float32),
                                                               label)]
                if k % 2 == 1:
                    items = [sitk.Flip(item, [True, False, False]) for item in items]
                    for item in items:
                        item.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
                case = f"{structure}_{i:03d}"
                if i < num_training:
                    writer.add_training_case(case, [items[0]], items[1], source="synthetic")
                else:
                    writer.add_test_case(case, [items[0]], items[1], source="synthetic")
        folders.append(writer.final_folder)
    return folders

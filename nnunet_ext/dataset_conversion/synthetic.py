"""A small synthetic 3-D dataset with unlabeled cases, generated on the fly for the demo and the tests.

Each image holds one or two ellipsoids ("organ" = label 1) brighter than a smooth noisy background, so a
few training iterations already learn something. Labeled cases go to imagesTr/labelsTr, unlabeled ones to
imagesTrUnlabeled (their labels to labelsTrReference), test cases to imagesTs/labelsTs.
"""
from typing import Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter


def synthetic_case(rng: np.random.Generator, shape: Sequence[int],
                   spacing: Sequence[float]) -> Tuple[sitk.Image, sitk.Image]:
    """One (image, label) pair; arrays in (z, y, x) order, spacing given as (x, y, z)."""
    grid = np.stack(np.meshgrid(*[np.arange(s) for s in shape], indexing="ij"), -1).astype(np.float32)
    label = np.zeros(shape, dtype=np.uint8)
    for _ in range(rng.integers(1, 3)):
        center = rng.uniform(0.3, 0.7, 3) * np.array(shape)
        radii = rng.uniform(0.12, 0.25, 3) * np.array(shape)
        label[(((grid - center) / radii) ** 2).sum(-1) <= 1] = 1
    background = gaussian_filter(rng.normal(0, 1, shape), 2) * 3
    image = (background + 2.0 * label + rng.normal(0, 0.4, shape)).astype(np.float32)
    images = []
    for array, dtype in ((image, np.float32), (label, np.uint8)):
        itk = sitk.GetImageFromArray(array.astype(dtype))
        itk.SetSpacing(tuple(float(s) for s in spacing))
        images.append(itk)
    return images[0], images[1]


def write_synthetic_dataset(dataset_id: int, name: str = "SyntheticSSL", num_labeled: int = 6,
                            num_unlabeled: int = 8, num_test: int = 3, shape: Sequence[int] = (32, 32, 32),
                            spacing: Sequence[float] = (1.0, 1.0, 1.0), seed: int = 0,
                            raw_root: Optional[str] = None, overwrite: bool = False) -> str:
    """Write the dataset under ``raw_root`` (default ``$nnUNet_raw``) and return its folder."""
    rng = np.random.default_rng(seed)
    writer = RawDatasetWriter(dataset_id, name, {"0": "MRI"}, {"background": 0, "organ": 1},
                              raw_root=raw_root, overwrite=overwrite)
    with writer:
        for i in range(num_labeled + num_unlabeled + num_test):
            image, label = synthetic_case(rng, shape, spacing)
            if i < num_labeled:
                writer.add_training_case(f"synth_{i:03d}", [image], label, source="synthetic")
            elif i < num_labeled + num_unlabeled:
                writer.add_unlabeled_case(f"synth_{i:03d}", [image], label, source="synthetic")
            else:
                writer.add_test_case(f"synth_{i:03d}", [image], label, source="synthetic")
    return writer.final_folder

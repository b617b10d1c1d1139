"""Label images as ``nnunet_ext evaluate`` reads them: NIfTI / NRRD / MHA with SimpleITK, PNG / BMP with Pillow,
TIFF with nnU-Net's ``.json`` spacing side file."""
import json
import os
from typing import Optional, Tuple

import numpy as np
import SimpleITK as sitk
from PIL import Image

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".bmp", ".tif", ".tiff")
NATURAL_2D_ENDINGS = (".png", ".bmp")
TIFF_ENDINGS = (".tif", ".tiff")


def image_ending(file_name: str) -> Optional[str]:
    """The nnU-Net image ending of ``file_name`` (``.nii.gz``, ``.png``, ...), or None for other files."""
    lower = file_name.lower()
    return next((ending for ending in IMAGE_ENDINGS if lower.endswith(ending)), None)


def read_segmentation(path: str) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """A label image as an array (numpy axis order) and its spacing in the same axis order.

    PNG and BMP are 2-D natural images read with Pillow, spacing 1. TIFF files use nnU-Net's convention: the
    spacing comes from a ``.json`` file of the same name holding ``{"spacing": [...]}`` when there is one, else 1.
    Every other format is read with SimpleITK, whose spacing is reversed to match the array's axes.
    """
    ending = image_ending(path)
    if ending in NATURAL_2D_ENDINGS:
        with Image.open(path) as image:
            array = np.asarray(image)
        if array.ndim != 2:
            raise ValueError(f"{path}: a label image must have one channel, this one has shape {array.shape}.")
        spacing: Tuple[float, ...] = (1.0, 1.0)
    else:
        image = sitk.ReadImage(path)
        if image.GetNumberOfComponentsPerPixel() != 1:
            raise ValueError(f"{path}: a label image must have one channel, this one has "
                             f"{image.GetNumberOfComponentsPerPixel()}.")
        array = sitk.GetArrayFromImage(image)
        spacing = tuple(float(s) for s in reversed(image.GetSpacing()))
        if ending in TIFF_ENDINGS:
            spacing = _tiff_spacing(path, ending, array.ndim)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    return array, spacing


def _tiff_spacing(path: str, ending: str, ndim: int) -> Tuple[float, ...]:
    """Spacing of a TIFF label image from its nnU-Net ``.json`` side file, or 1 per axis without one."""
    side_file = path[:-len(ending)] + ".json"
    if not os.path.isfile(side_file):
        return (1.0,) * ndim
    with open(side_file) as f:
        spacing = tuple(float(s) for s in json.load(f)["spacing"])
    if len(spacing) != ndim:
        raise ValueError(f"{side_file} gives {len(spacing)} spacing values for a {ndim}-D image {path}.")
    return spacing

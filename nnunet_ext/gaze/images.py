"""Images and true masks as the gaze pipeline reads them (RGB for the CRF's colour kernel; masks ≥ 128)."""
import numpy as np
from PIL import Image


def read_rgb(path: str) -> np.ndarray:
    """An image as ``(H, W, 3)`` uint8 RGB, the input of the CRF's colour kernel (§2.4).

    Pillow formats are converted to RGB (grey images replicated). A DICOM slice (``.dcm``, read with
    SimpleITK) is min-max scaled to 0-255 and replicated to three channels, as GazeSup does for NCI-ISBI.
    """
    try:
        if path.lower().endswith(".dcm"):
            import SimpleITK as sitk
            array = np.squeeze(sitk.GetArrayFromImage(sitk.ReadImage(path)))
            if array.ndim != 2:
                raise ValueError(f"a 2-D slice is needed, this DICOM holds an array of shape {array.shape}")
            return grey_to_rgb(array)
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, RuntimeError, ValueError) as e:
        raise ValueError(f"{path}: cannot be read as an image ({e})") from None


def grey_to_rgb(array: np.ndarray) -> np.ndarray:
    """A grey image (e.g. an MR slice) as the ``(H, W, 3)`` uint8 image the CRF's colour kernel needs: min-max
    scaled to 0-255, truncated to uint8, replicated to three channels (GazeSup's rule for NCI-ISBI, §2.4; a
    constant image gives 0)."""
    array = np.asarray(array, dtype=np.float64)
    low, high = array.min(), array.max()
    scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
    return np.repeat(scaled.astype(np.uint8)[..., None], 3, axis=2)


LOSSY_FORMATS = ("JPEG", "MPO", "WEBP", "JPEG2000")
"""Pillow formats whose pixel values carry compression noise."""


def read_mask(path: str) -> np.ndarray:
    """A true mask as a boolean array: grey values ≥ 128 (0/255 masks, also lossy JPEG ones, §2.1, §2.12).

    A mask in a lossless format (PNG, BMP, TIFF, …) holding only the values 0 and 1 is taken as it is (value 1 =
    foreground). A lossy file is always thresholded at 128: the values 0 and 1 in an all-background JPEG are
    compression noise, not foreground.
    """
    try:
        with Image.open(path) as image:
            lossy = image.format in LOSSY_FORMATS
            grey = np.asarray(image.convert("L"))
    except OSError as e:
        raise ValueError(f"{path}: cannot be read as a mask image ({e})") from None
    if not lossy and grey.max(initial=0) <= 1:
        return grey == 1
    return grey >= 128

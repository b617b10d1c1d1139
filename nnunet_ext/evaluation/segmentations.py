"""Label images as ``nnunet_ext evaluate`` reads them: through nnU-Net's own reader/writer classes, so a label is
scored exactly as nnU-Net trains on it and exports it."""
from typing import Optional, Tuple

import numpy as np
from nnunetv2.imageio.reader_writer_registry import LIST_OF_IO_CLASSES

IMAGE_ENDINGS = (".nii.gz", ".nii", ".nrrd", ".mha", ".png", ".bmp", ".tif", ".tiff")
NATURAL_2D_ENDINGS = (".png", ".bmp")
NNUNET_2D_SPACING = 999  # nnU-Net's readers give a 2-D image a leading axis of size 1 with 999 × its spacing


def image_ending(file_name: str) -> Optional[str]:
    """The nnU-Net image ending of ``file_name`` (``.nii.gz``, ``.png``, ...), or None for other files."""
    lower = file_name.lower()
    return next((ending for ending in IMAGE_ENDINGS if lower.endswith(ending)), None)


def read_segmentation(path: str) -> Tuple[np.ndarray, Tuple[float, ...]]:
    """A label image as an array (numpy axis order) and its spacing in the same axis order.

    Read with the first of nnU-Net's reader/writer classes (``LIST_OF_IO_CLASSES``, in nnU-Net's order) that
    supports the ending and opens the file, as nnU-Net's registry chooses one: PNG / BMP / 2-D TIFF with
    ``NaturalImage2DIO`` (spacing 1), NIfTI / NRRD / MHA with ``SimpleITKIO``, 3-D TIFF with ``Tiff3DIO`` (spacing
    from its ``.json`` side file). The leading axis nnU-Net adds to 2-D images is removed again, so that 2-D
    distances are in-plane; integral values come back as integers. ``ValueError`` naming the file when no
    reader opens it or it has several channels.
    """
    ending = image_ending(path)
    readers = [reader for reader in LIST_OF_IO_CLASSES if ending in reader.supported_file_endings]
    if not readers:
        raise ValueError(f"{path}: not a label image nnU-Net reads (endings {', '.join(IMAGE_ENDINGS)}).")
    failures = []
    for reader in readers:
        try:
            segmentation, properties = reader().read_seg(path)
            break
        except Exception as error:  # the next reader may open it, as in nnU-Net's registry
            failures.append(f"{reader.__name__}: {error!r}")
    else:
        raise ValueError(f"{path}: none of nnU-Net's readers opens it ({'; '.join(failures)}).")
    spacing = tuple(float(s) for s in properties["spacing"])
    if segmentation.shape[0] != 1 or len(spacing) != segmentation.ndim - 1:
        raise ValueError(f"{path}: a label image must have one channel, this one reads as shape "
                         f"{segmentation.shape} with spacing {spacing}.")
    array = segmentation[0]
    if array.shape[0] == 1 and spacing[0] >= NNUNET_2D_SPACING * max(spacing[1:]):
        array, spacing = array[0], spacing[1:]
    return _as_integers(array), spacing


def _as_integers(array: np.ndarray) -> np.ndarray:
    """nnU-Net's readers return float32; integral label values as the smallest integer type that holds them
    (a quarter of the memory for the per-class masks), anything else unchanged for the caller to refuse."""
    if array.size == 0 or not np.array_equal(array, np.round(array)):
        return array
    low, high = float(array.min()), float(array.max())
    for dtype in (np.uint8, np.uint16, np.int32):
        if np.iinfo(dtype).min <= low and high <= np.iinfo(dtype).max:
            return array.astype(dtype)
    return array

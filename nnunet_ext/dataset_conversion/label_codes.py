"""Label images whose source codes (MyoPS 200 / 500 / 600, BraTS 1 / 2 / 4, …) are mapped to nnU-Net's
consecutive values, with every code outside the source's set an error naming the file."""
from typing import Dict

import numpy as np
import SimpleITK as sitk


def read_mapped_label(path: str, mapping: Dict[int, int], source_name: str) -> sitk.Image:
    """The label image at ``path`` with each code ``c`` of ``mapping`` written as ``mapping[c]`` and 0 kept
    (geometry unchanged, uint8); ``ValueError`` naming the file and the codes that are neither."""
    label = sitk.ReadImage(path)
    codes = sitk.GetArrayFromImage(label)
    unknown = sorted(set(np.unique(codes).tolist()) - set(mapping) - {0})
    if unknown:
        raise ValueError(f"{path}: label values {unknown} are not {source_name} labels "
                         f"(0, {', '.join(map(str, mapping))})")
    values = np.zeros(codes.shape, np.uint8)
    for code, value in mapping.items():
        values[codes == code] = value
    mapped = sitk.GetImageFromArray(values)
    mapped.CopyInformation(label)
    return mapped

"""Partial labels on real CT: SAM-Med2D's AMOS and TotalSegmentator slices (``../shared/data/SAM-Med2D_slices``,
windowed CT as 8-bit PNG, one binary mask per structure) made into single-organ sources as a user's partially
labeled datasets are (a liver dataset, a spleen dataset, an aorta dataset), united with ``make_partial_union``,
and the marginal loss checked on the real anatomy: slice amos_0006_90 of the spleen dataset really shows a liver,
which its dataset does not annotate."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from nnunetv2.training.loss.robust_ce_loss import RobustCrossEntropyLoss

from conftest import require_shared
from nnunet_ext.dataset_conversion.partial_union import make_partial_union
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
from nnunet_ext.losses.partial_labels import marginal_logits

SLICES_FOLDER = "SAM-Med2D_slices"
SOURCES = {  # structure → (dataset id, slice whose mask of that structure the dataset annotates)
    "liver": (946, "amos_0004_75"),
    "spleen": (947, "amos_0006_90"),
    "aorta": (948, "s0114_111"),
}
UNION_ID = 949


def slice_image(array: np.ndarray) -> sitk.Image:
    """A one-slice volume (z = 1) at 1 mm, as 2-D data are given to nnU-Net's 2d configuration."""
    return sitk.GetImageFromArray(array[None])


def png(name: str) -> np.ndarray:
    """The gray values of an image PNG (its three channels are equal) or the {0, 1} values of a mask PNG."""
    array = sitk.GetArrayFromImage(sitk.ReadImage(str(require_shared(SLICES_FOLDER) / SLICES_FOLDER / name)))
    return array[..., 0].astype(np.int16) if array.ndim == 3 else (array > 0).astype(np.uint8)


@pytest.fixture(scope="module")
def union(tmp_path_factory):
    raw = tmp_path_factory.mktemp("nnUNet_raw")
    for structure, (dataset_id, case) in SOURCES.items():
        with RawDatasetWriter(dataset_id, f"SAMMed2D{structure.capitalize()}", {"0": "CT"},
                              {"background": 0, structure: 1}, raw_root=str(raw), num_processes=0) as writer:
            writer.add_training_case(case, [slice_image(png(f"images/{case}.png"))],
                                     slice_image(png(f"masks/{case}_{structure}_000.png")), source=SLICES_FOLDER)
    folder = make_partial_union([f"{i}:{s}" for s, (i, _) in SOURCES.items()], str(UNION_ID), raw_root=str(raw),
                                num_processes=0)
    return Path(folder)


def read(path: Path) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))[0]


def test_the_union_of_real_single_organ_slices_keeps_each_annotation_and_image(union):
    dataset_json = json.loads((union / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "liver": 1, "spleen": 2, "aorta": 3}
    assert dataset_json["annotated_labels"] == {"amos_0004_75": [1], "amos_0006_90": [2], "s0114_111": [3]}
    for union_label, (structure, (_, case)) in enumerate(SOURCES.items(), start=1):
        np.testing.assert_array_equal(read(union / "labelsTr" / f"{case}.nii.gz"),
                                      union_label * png(f"masks/{case}_{structure}_000.png"))
        np.testing.assert_array_equal(read(union / "imagesTr" / f"{case}_0000.nii.gz"), png(f"images/{case}.png"))
    spleen_case = read(union / "labelsTr" / "amos_0006_90.nii.gz")
    assert not spleen_case[png("masks/amos_0006_90_liver_000.png") > 0].any(), \
        "the real liver of the spleen dataset's slice is background in its label (unannotated, not absent)"


def test_the_marginal_loss_does_not_punish_the_real_unannotated_liver(union):
    """A prediction that finds the true liver of amos_0006_90 costs the marginal loss no more than one that calls
    it background; stock cross-entropy on the partial label charges it, i.e. teaches the liver as background."""
    dataset_json = json.loads((union / "dataset.json").read_text())
    annotated = torch.zeros(1, 4, dtype=torch.bool)
    annotated[0, [0, *dataset_json["annotated_labels"]["amos_0006_90"]]] = True
    partial = torch.from_numpy(read(union / "labelsTr" / "amos_0006_90.nii.gz")).float()[None, None]
    liver = torch.from_numpy(png("masks/amos_0006_90_liver_000.png")).bool()
    truth = partial[0, 0].long().clone()
    truth[liver] = 1

    def confident(label_map: torch.Tensor) -> torch.Tensor:
        return 8 * torch.nn.functional.one_hot(label_map, 4).permute(2, 0, 1)[None].float()

    finds_liver, calls_it_background = confident(truth), confident(partial[0, 0].long())
    ce = RobustCrossEntropyLoss()
    marginal = [float(ce(marginal_logits(x, annotated), partial)) for x in (finds_liver, calls_it_background)]
    stock = [float(ce(x, partial)) for x in (finds_liver, calls_it_background)]
    assert marginal[0] == pytest.approx(marginal[1], abs=1e-6)
    assert stock[0] - stock[1] == pytest.approx(8 * float(liver.float().mean()), rel=1e-2), \
        "stock cross-entropy charges each real liver pixel (7.6 % of the slice) its logit margin of 8"

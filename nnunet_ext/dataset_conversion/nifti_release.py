"""NIfTI abdominal CT releases (BTCV, AbdomenCT-1K): how a release names its files and codes its organs, and its
conversion with the release's own codes or LTUDA's four organs (:data:`nnunet_ext.partial_labels.LTUDA_LABELS`).

The labeled cases go to imagesTr/labelsTr (nnU-Net needs training cases, and :class:`RawDatasetWriter` refuses a
dataset without; to use a release as an external test set, predict ``imagesTr`` and score against ``labelsTr``),
the images without a label to imagesTs; images are validated and copied byte for byte, labels re-coded to uint8
on the image's grid.
"""
import argparse
import os
from dataclasses import dataclass
from typing import Dict, Optional, Pattern, Tuple

from nnunet_ext.dataset_conversion.dicom_series import files_under
from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter, add_writer_arguments
from nnunet_ext.partial_labels import LTUDA_LABELS

CHANNEL_NAMES = {"0": "CT"}
LABEL_SETS = ("full", "ltuda")


@dataclass(frozen=True)
class NiftiRelease:
    """How a NIfTI abdominal CT release names its files and codes its organs, for :func:`convert_release`.

    ``image_pattern`` / ``label_pattern`` fullmatch a file name, group 1 being the case key, written as case id
    ``case_prefix + key``; ``organs`` maps the source's label codes to organ names, ``to_ltuda`` those organs to
    :data:`LTUDA_LABELS` names (organs not in it become background with ``--label-set ltuda``).
    """
    source_name: str
    key: str
    organs: Dict[int, str]
    to_ltuda: Dict[str, str]
    image_pattern: Pattern
    label_pattern: Pattern
    case_prefix: str
    layout: str
    reference: str
    default_name: str

    def label_set(self, label_set: str) -> Tuple[Dict[str, int], Dict[int, int]]:
        """(dataset.json labels, ``{source code: written value}``): ``full`` keeps the source's codes and names,
        ``ltuda`` maps them onto :data:`LTUDA_LABELS`."""
        if label_set not in LABEL_SETS:
            raise ValueError(f"--label-set must be one of {', '.join(LABEL_SETS)}, got {label_set!r}")
        if label_set == "full":
            return {"background": 0, **{name: code for code, name in self.organs.items()}}, \
                {code: code for code in self.organs}
        return dict(LTUDA_LABELS), {code: LTUDA_LABELS[self.to_ltuda[name]] if name in self.to_ltuda else 0
                                    for code, name in self.organs.items()}


def find_cases(release: NiftiRelease, input_folder: str) -> Tuple[Dict[str, Tuple[str, str]], Dict[str, str]]:
    """(``{case id: (image, label)}``, ``{case id: image}`` of the images without a label) of the release's files
    under ``input_folder``.

    ``ValueError`` for a missing folder, no image at all (naming the expected layout), a file name found twice, or
    a label without its image.
    """
    if not os.path.isdir(input_folder):
        raise ValueError(f"{release.source_name} folder {input_folder} does not exist")
    found: Dict[str, Dict[str, str]] = {"image": {}, "label": {}}
    for path in files_under(input_folder, ".nii.gz"):
        name = os.path.basename(path)
        for kind, pattern in (("image", release.image_pattern), ("label", release.label_pattern)):
            match = pattern.fullmatch(name)
            if match is None:
                continue
            case = release.case_prefix + match.group(1)
            if case in found[kind]:
                raise ValueError(f"{name} is there twice: {found[kind][case]} and {path}; keep one")
            found[kind][case] = path
    images, labels = found["image"], found["label"]
    if not images:
        raise ValueError(f"{input_folder} holds no {release.source_name} image; expected the layout "
                         f"{release.layout} (searched recursively)")
    orphans = sorted(set(labels) - set(images))
    if orphans:
        raise ValueError(f"labels without their image: {', '.join(labels[c] for c in orphans[:10])}; expected the "
                         f"{release.source_name} layout {release.layout}")
    labeled = {case: (images[case], labels[case]) for case in sorted(images) if case in labels}
    return labeled, {case: images[case] for case in sorted(images) if case not in labels}


def convert_release(release: NiftiRelease, input_folder: str, dataset_id: int, label_set: str = "full",
                    name: Optional[str] = None, num_processes: int = 2, overwrite: bool = False,
                    raw_root: Optional[str] = None) -> str:
    """Convert a NIfTI abdominal CT release: the labeled cases to imagesTr/labelsTr, their labels re-coded to the
    label set, the images without a label to imagesTs; images are copied byte for byte. Returns the dataset folder;
    nothing is left behind on an error."""
    input_folder = os.path.abspath(input_folder)
    labels, mapping = release.label_set(label_set)
    labeled, unlabeled = find_cases(release, input_folder)
    written = ", ".join(f"{organ} {value}" for organ, value in labels.items() if value)
    extra = {"name": release.source_name, "reference": release.reference, "source": input_folder,
             "label_set": label_set, "label_mapping": {str(code): value for code, value in sorted(mapping.items())},
             "description": f"{release.source_name} abdominal CT: the labeled cases in imagesTr/labelsTr (as an "
                            f"external test set: predict imagesTr, score against labelsTr), the images without a "
                            f"label in imagesTs; labels ({label_set} set): {written}",
             f"{release.key}_cases": {"labeled": sorted(labeled), "unlabeled_test": sorted(unlabeled)}}
    default_name = release.default_name + ("" if label_set == "full" else "LTUDA")
    writer = RawDatasetWriter(dataset_id, name or default_name, CHANNEL_NAMES, labels, raw_root=raw_root,
                              overwrite=overwrite, extra_json=extra, num_processes=num_processes,
                              expected_cases=len(labeled) + len(unlabeled))
    with writer:
        for case, (image, label) in labeled.items():
            writer.add_training_case(case, [image], read_mapped_label(label, mapping, release.source_name),
                                     source=f"{image} + {label}")
        for case, image in unlabeled.items():
            writer.add_test_case(case, [image], source=image)
    print(f"{writer.final_folder}: {writer.num_training} labeled cases (imagesTr, labelsTr), {writer.num_test} "
          f"images without a label (imagesTs)")
    return writer.final_folder


def add_release_arguments(parser: argparse.ArgumentParser, release: NiftiRelease, example_id: int) -> None:
    """``-i``, ``--label-set`` and the writer's options (``-d``, ``--name``, ``-np``, ``--overwrite``) of a NIfTI
    release's converter."""
    parser.add_argument("-i", "--input", required=True,
                        help=f"{release.source_name} release folder, searched recursively ({release.layout})")
    parser.add_argument("--label-set", choices=LABEL_SETS, default="full",
                        help=f"full: {release.source_name}'s own codes; ltuda: liver 1, spleen 2, kidney 3, "
                             f"pancreas 4, the rest background")
    add_writer_arguments(parser, example_id, f"{release.default_name}, or {release.default_name}LTUDA with "
                                             f"--label-set ltuda")


def run_release(release: NiftiRelease, args: argparse.Namespace) -> None:
    """Run :func:`convert_release` with the parsed arguments of :func:`add_release_arguments`."""
    convert_release(release, args.input, args.dataset_id, label_set=args.label_set, name=args.name,
                    num_processes=args.num_processes, overwrite=args.overwrite)

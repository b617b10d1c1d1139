"""``nnunet_ext make_partial_union``: one partially labeled dataset from several datasets that each annotate one
structure (DESIGN.md §3, §8.3; LTUDA's setting: LiTS liver, MSD spleen, KiTS kidney, NIH pancreas).

``-s 732:liver 733:spleen …``: each source is a raw dataset (id, name or folder) and the name of the label it
contributes (a key of its dataset.json's ``labels``). The union's labels are the structures in the order given
(a structure named by two sources is one label), or with ``--label-set ltuda`` LTUDA's fixed ids: liver 1,
spleen 2, kidney 3, pancreas 4. Every labeled case of a source (imagesTr/labelsTr, and imagesTs/labelsTs as test
cases) is written with its structure relabelled to the union's value and every other voxel 0; its
``annotated_labels`` entry (:mod:`nnunet_ext.partial_labels`) names that one label, test cases included.
Unlabeled images (imagesTrUnlabeled, imagesTs without label) are carried over without annotation.

Images and labels are **reoriented to one orientation** (LPS, identity direction: SimpleITK's ``DICOMOrient``),
because nnU-Net works on the voxel arrays and sources stored in different orientations would otherwise present
the anatomy differently. Case ids stay the sources'; two sources with the same case id are an error naming both.
The sources must have the same number of channels; the union takes the first source's channel names. A label
value that the source's dataset.json does not declare is an error naming the file. dataset.json records what came
from where (``partial_union``: per source its structure, source and union label values and case counts; per
case its source); nothing is written on error.
"""
import argparse
import json
import os
from collections import Counter
from typing import Dict, List, Optional, Sequence

import numpy as np
import SimpleITK as sitk

from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter
from nnunet_ext.dataset_conversion.semisupervised import _raw_root, destination_name, list_cases, resolve_source
from nnunet_ext.partial_labels import ANNOTATED_LABELS_KEY, LTUDA_LABELS
from nnunet_ext.paths import UNLABELED_IMAGES_DIR

LABEL_SETS = {"ltuda": {name: value for name, value in LTUDA_LABELS.items() if value}}
"""Fixed union label sets: ``--label-set NAME`` → {structure: union value}."""
ORIENTATION = "LPS"
UNION_KEY = "partial_union"


class Source:
    """One source dataset of the union and the structure it contributes."""

    def __init__(self, argument: str, raw_root: str) -> None:
        dataset, separator, structure = argument.partition(":")
        if not separator or not dataset or not structure:
            raise ValueError(f"-s {argument}: give DATASET:STRUCTURE, e.g. 732:liver")
        self.folder = resolve_source(dataset, raw_root)
        self.name = os.path.basename(self.folder)
        with open(os.path.join(self.folder, "dataset.json")) as f:
            self.dataset_json = json.load(f)
        labels = {name.lower(): value for name, value in self.dataset_json.get("labels", {}).items()}
        value = labels.get(structure.lower())
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{self.folder}/dataset.json has no label {structure!r} with one positive value "
                             f"(its labels: {self.dataset_json.get('labels')})")
        self.structure, self.label_value = structure.lower(), value
        self.declared_values = sorted({v for v in labels.values() if isinstance(v, int)})
        self.ending = self.dataset_json["file_ending"]

    def cases(self, images: str) -> Dict[str, List[str]]:
        return list_cases(os.path.join(self.folder, images), self.ending)

    def label_file(self, labels: str, case: str) -> Optional[str]:
        path = os.path.join(self.folder, labels, case + self.ending)
        return path if os.path.isfile(path) else None


def union_labels(sources: Sequence[Source], label_set: Optional[str]) -> Dict[str, int]:
    """``{structure: union value}``: ``label_set``'s, or the structures numbered in the order first named."""
    structures = list(dict.fromkeys(source.structure for source in sources))
    if label_set is None:
        return {structure: value for value, structure in enumerate(structures, start=1)}
    fixed = LABEL_SETS[label_set]
    unknown = [s for s in structures if s not in fixed]
    if unknown:
        raise ValueError(f"--label-set {label_set} has the structures {list(fixed)}; {unknown} is not one of them")
    return dict(fixed)


def oriented(image: sitk.Image) -> sitk.Image:
    """The image in the union's orientation (LPS, identity direction); 2-D images are left as they are."""
    return sitk.DICOMOrient(image, ORIENTATION) if image.GetDimension() == 3 else image


def relabelled(path: str, source: Source, union_value: int) -> sitk.Image:
    """The source label with its structure as ``union_value`` and every other voxel 0; ``ValueError`` naming the
    file for values the source does not declare."""
    label = sitk.ReadImage(path)
    array = sitk.GetArrayFromImage(label)
    undeclared = sorted(set(np.unique(array).tolist()) - set(source.declared_values))
    if undeclared:
        raise ValueError(f"{path}: label values {undeclared} are not declared in {source.folder}/dataset.json "
                         f"({source.dataset_json['labels']})")
    union = sitk.GetImageFromArray((array == source.label_value).astype(np.uint8) * union_value)
    union.CopyInformation(label)
    return oriented(union)


def make_partial_union(source_arguments: Sequence[str], destination: str, label_set: Optional[str] = None,
                       overwrite: bool = False, num_processes: int = 2, raw_root: Optional[str] = None) -> str:
    """Write the union (see the module docstring) and return its folder."""
    raw_root = _raw_root(raw_root)
    sources = [Source(argument, raw_root) for argument in source_arguments]
    names = [source.name for source in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"a source is given twice: {names}")
    channels = {source.name: len(source.dataset_json["channel_names"]) for source in sources}
    if len(set(channels.values())) != 1:
        raise ValueError(f"the sources have different channel counts: {channels}")
    labels = union_labels(sources, label_set)
    case_source: Dict[str, str] = {}
    for source in sources:
        for images in ("imagesTr", "imagesTs", UNLABELED_IMAGES_DIR):
            for case in source.cases(images):
                if case in case_source and case_source[case] != source.name:
                    raise ValueError(f"case id {case} is in two sources: {case_source[case]} and {source.name}; "
                                     f"rename one source's cases")
                case_source[case] = source.name
    dataset_id, name = (int(destination), "PartialUnion") if destination.isdigit() else \
        destination_name(destination, sources[0].folder, 0)
    annotated: Dict[str, List[int]] = {}
    report = {source.name: {"structure": source.structure, "source_label": source.label_value,
                            "union_label": labels[source.structure]} for source in sources}
    writer = RawDatasetWriter(dataset_id, name, sources[0].dataset_json["channel_names"],
                              {"background": 0, **labels}, raw_root=raw_root, overwrite=overwrite,
                              num_processes=num_processes, expected_cases=len(case_source))
    counts: Counter = Counter()
    with writer:
        for source in sources:
            value = labels[source.structure]
            for images, label_folder, kind in (("imagesTr", "labelsTr", "training"), ("imagesTs", "labelsTs", "test")):
                for case, files in source.cases(images).items():
                    label_file = source.label_file(label_folder, case)
                    scans = [oriented(sitk.ReadImage(f)) for f in files]
                    if label_file is None and kind == "training":
                        raise ValueError(f"{files[0]}: training case {case} has no label in {source.folder}/"
                                         f"{label_folder}")
                    if label_file is None:
                        writer.add_test_case(case, scans, source=files[0])
                        continue
                    label = relabelled(label_file, source, value)
                    add = writer.add_training_case if kind == "training" else writer.add_test_case
                    add(case, scans, label, source=files[0])
                    annotated[case] = [value]
                    counts[(source.name, kind)] += 1
            for case, files in source.cases(UNLABELED_IMAGES_DIR).items():
                writer.add_unlabeled_case(case, [oriented(sitk.ReadImage(f)) for f in files], source=files[0])
                counts[(source.name, "unlabeled")] += 1
            report[source.name].update({kind: counts[(source.name, kind)] for kind in ("training", "test",
                                                                                      "unlabeled")})
        writer.extra_json.update({ANNOTATED_LABELS_KEY: annotated, UNION_KEY: {
            "sources": report, "orientation": ORIENTATION, "case_sources": case_source}})
    print(f"{writer.final_folder}: labels {labels}")
    for source_name, entry in report.items():
        print(f"  {source_name}: {entry['structure']} ({entry['source_label']} → {entry['union_label']}), "
              f"{entry['training']} training, {entry['test']} test, {entry['unlabeled']} unlabeled cases")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext make_partial_union``."""
    parser.add_argument("-s", "--sources", nargs="+", required=True, metavar="DATASET:STRUCTURE",
                        help="source datasets (id, name or folder) and the label each contributes, e.g. 732:liver")
    parser.add_argument("-d", "--destination", required=True,
                        help="the union: an id (named PartialUnion) or DatasetXXX_Name")
    parser.add_argument("--label-set", choices=sorted(LABEL_SETS), default=None,
                        help="fixed union label values (ltuda: liver 1, spleen 2, kidney 3, pancreas 4); default: "
                             "the structures numbered in the order given")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="writer processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing destination folder")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext make_partial_union``."""
    make_partial_union(args.sources, args.destination, args.label_set, args.overwrite, args.num_processes)

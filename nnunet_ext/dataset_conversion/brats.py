"""BraTS (brain tumour MR, four co-registered sequences) to an nnU-Net raw dataset with tumour regions.

Input (``-i DIR [DIR …]``): BraTS release folders, searched recursively, all of one of two naming families:

* 2018–2021: ``<case>_t1.nii.gz``, ``_t1ce``, ``_t2``, ``_flair`` and ``_seg`` (labels 1 necrotic / non-enhancing
  core, 2 edema, 4 enhancing);
* 2023: ``<case>-t1n.nii.gz``, ``-t1c``, ``-t2w``, ``-t2f`` and ``-seg`` (labels 1, 2 and 3 enhancing).

The family is detected from the file names (``--release`` states it; a folder mixing both is an error) and
the release year recorded where the case names carry it (``Brats18_…``, ``BraTS19_…``, ``BraTS20_…``,
``BraTS2021_…``). Every case needs its four sequences. A folder without any segmentation (a validation
release, given after the training release: ``-i TRAINING VALIDATION``) goes to imagesTs without labels; in a
folder with segmentations, a case without one is an error.

Output ``Dataset{id}_{name}`` (default name ``BraTS``), ``.nii.gz``, case ids = the BraTS case names: channels in
the fixed order ``{"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}`` (2023: t1n, t1c, t2w, t2f); labels in
nnU-Net's BraTS convention, 1 edema, 2 non-enhancing tumour and necrosis, 3 enhancing tumour (2018–2021 values
2 → 1, 1 → 2, 4 → 3; 2023 values 2 → 1, 1 → 2, 3 → 3), declared by default as the three evaluated regions
(``--labels-as regions``: whole tumour [1, 2, 3], tumour core [2, 3], enhancing tumour [3], with
``regions_class_order`` [1, 2, 3], as nnU-Net's own BraTS dataset), or as the three labels
(``--labels-as labels``). Label values outside the release's set are an error naming the file.
"""
import argparse
import os
import re
from typing import Dict, List, Optional, Sequence, Tuple

import SimpleITK as sitk

from nnunet_ext.dataset_conversion.label_codes import read_mapped_label
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter

CHANNEL_NAMES = {"0": "T1", "1": "T1ce", "2": "T2", "3": "FLAIR"}
FAMILIES = {
    "2018-2021": {"pattern": re.compile(r"(?P<case>.+)_(?P<kind>t1|t1ce|t2|flair|seg)\.nii(\.gz)?"),
                  "sequences": ("t1", "t1ce", "t2", "flair"), "label_map": {1: 2, 2: 1, 4: 3}},
    "2023": {"pattern": re.compile(r"(?P<case>.+)-(?P<kind>t1n|t1c|t2w|t2f|seg)\.nii(\.gz)?"),
             "sequences": ("t1n", "t1c", "t2w", "t2f"), "label_map": {1: 2, 2: 1, 3: 3}},
}
"""Naming family → file pattern, the sequences in channel order and the release's label value → ours."""
RELEASES = {"2018": "2018-2021", "2019": "2018-2021", "2020": "2018-2021", "2021": "2018-2021", "2023": "2023"}
YEAR_PREFIXES = ((re.compile(r"brats18_", re.I), "2018"), (re.compile(r"brats19_", re.I), "2019"),
                 (re.compile(r"brats20_", re.I), "2020"), (re.compile(r"brats2021_", re.I), "2021"))
REGIONS = {"background": 0, "whole_tumor": [1, 2, 3], "tumor_core": [2, 3], "enhancing_tumor": [3]}
LABELS = {"background": 0, "edema": 1, "non_enhancing_and_necrosis": 2, "enhancing_tumor": 3}
REFERENCE = ("Menze et al., The Multimodal Brain Tumor Image Segmentation Benchmark (BRATS), IEEE TMI 2015; "
             "Bakas et al., arXiv:1811.02629")


def find_cases(input_folder: str, release: Optional[str] = None) -> Tuple[str, Dict[str, Dict[str, str]]]:
    """(naming family, ``{case: {kind: path}}``) of the BraTS files under ``input_folder``; ``ValueError`` for a
    missing folder, no BraTS file, a folder mixing the two families or one other than ``release``'s, a file
    found twice, or a case lacking a sequence."""
    if not os.path.isdir(input_folder):
        raise ValueError(f"BraTS folder {input_folder} does not exist")
    found: Dict[str, Dict[str, Dict[str, str]]] = {family: {} for family in FAMILIES}
    for folder, _, files in os.walk(input_folder, followlinks=True):
        for name in sorted(files):
            for family, spec in FAMILIES.items():
                match = spec["pattern"].fullmatch(name)
                if match is None:
                    continue
                case = found[family].setdefault(match["case"], {})
                if match["kind"] in case:
                    raise ValueError(f"{name} is there twice: {case[match['kind']]} and "
                                     f"{os.path.join(folder, name)}")
                case[match["kind"]] = os.path.join(folder, name)
                break
    families = [family for family, cases in found.items() if cases]
    if not families:
        raise ValueError(f"{input_folder} holds no BraTS file (<case>_t1.nii.gz … of 2018–2021 or "
                         f"<case>-t1n.nii.gz … of 2023)")
    if len(families) > 1:
        examples = {family: sorted(found[family])[0] for family in families}
        raise ValueError(f"{input_folder} mixes BraTS releases: 2018–2021 names (e.g. {examples['2018-2021']}) and "
                         f"2023 names (e.g. {examples['2023']}); convert one release per dataset")
    family = families[0]
    if release is not None and RELEASES[release] != family:
        raise ValueError(f"--release {release} expects the {RELEASES[release]} file names, but {input_folder} holds "
                         f"{family} names")
    cases = dict(sorted(found[family].items()))
    sequences = FAMILIES[family]["sequences"]
    incomplete = {case: [k for k in sequences if k not in files] for case, files in cases.items()}
    incomplete = {case: missing for case, missing in incomplete.items() if missing}
    if incomplete:
        separator = "_" if family == "2018-2021" else "-"
        raise ValueError(f"{input_folder}: case(s) without all four sequences: " + "; ".join(
            f"{case} lacks {', '.join(f'{case}{separator}{k}.nii.gz' for k in missing)}"
            for case, missing in incomplete.items()))
    return family, cases


def release_year(cases: List[str]) -> Optional[str]:
    """The release year the case names carry (``BraTS20_Training_001`` → 2020), if all agree on one."""
    years = {next((year for prefix, year in YEAR_PREFIXES if prefix.match(case)), None) for case in cases}
    return years.pop() if len(years) == 1 else None


def read_releases(input_folders: Sequence[str], release: Optional[str] = None) -> Tuple[str, Dict[str, Dict[str, str]]]:
    """(naming family, ``{case: {kind: path}}``) of several release folders (see :func:`find_cases`): one family,
    unique case names, and in a folder with segmentations every case has one."""
    families, cases = set(), {}
    for folder in input_folders:
        family, found = find_cases(os.path.abspath(folder), release)
        with_seg = [case for case, files in found.items() if "seg" in files]
        if with_seg and len(with_seg) < len(found):
            missing = [case for case in found if case not in with_seg]
            raise ValueError(f"{folder}: a training release, but {len(missing)} case(s) have no segmentation: "
                             f"{', '.join(missing[:10])}")
        twice = sorted(set(found) & set(cases))
        if twice:
            raise ValueError(f"case(s) {', '.join(twice[:5])} of {folder} are in another input folder too")
        families.add(family)
        cases.update(found)
    if len(families) > 1:
        raise ValueError("the input folders mix BraTS releases (2018–2021 and 2023 names); convert one release "
                         "per dataset")
    if not any("seg" in files for files in cases.values()):
        raise ValueError(f"no case of {', '.join(input_folders)} has a segmentation (a validation release?): give "
                         f"the training release first, -i TRAINING_DIR VALIDATION_DIR")
    return families.pop(), dict(sorted(cases.items()))


def convert_brats(input_folders: Sequence[str], dataset_id: int, release: Optional[str] = None,
                  labels_as: str = "regions", name: Optional[str] = None, num_processes: int = 2,
                  overwrite: bool = False, raw_root: Optional[str] = None) -> str:
    """Convert BraTS release folders (training, and optionally validation); return the dataset folder (see the
    module docstring)."""
    if labels_as not in ("regions", "labels"):
        raise ValueError(f"--labels-as is regions or labels, got {labels_as!r}")
    family, cases = read_releases(input_folders, release)
    year = release or release_year(list(cases))
    sequences = FAMILIES[family]["sequences"]
    extra = {"name": "BraTS", "reference": REFERENCE, "brats_release": year or family,
             "brats_sequences": dict(zip(CHANNEL_NAMES.values(), sequences)),
             "description": "BraTS brain tumour MR, channels T1, T1ce, T2, FLAIR; labels 1 edema, 2 non-enhancing "
                            "tumour and necrosis, 3 enhancing tumour" + (", declared as the regions whole tumour, "
                                                                          "tumour core, enhancing tumour"
                                                                          if labels_as == "regions" else "")}
    if labels_as == "regions":
        extra["regions_class_order"] = [1, 2, 3]
    writer = RawDatasetWriter(dataset_id, name or "BraTS", CHANNEL_NAMES, REGIONS if labels_as == "regions" else LABELS,
                              raw_root=raw_root, overwrite=overwrite, extra_json=extra, num_processes=num_processes,
                              expected_cases=len(cases))
    with writer:
        for case, files in cases.items():
            images = [sitk.ReadImage(files[k]) for k in sequences]
            source = ", ".join(files[k] for k in sequences + (("seg",) if "seg" in files else ()))
            if "seg" in files:
                label = read_mapped_label(files["seg"], FAMILIES[family]["label_map"], f"BraTS {family}")
                writer.add_training_case(case, images, label, source=source)
            else:
                writer.add_test_case(case, images, source=source)
    print(f"{writer.final_folder}: BraTS {year or family}, {writer.num_training} training cases, {writer.num_test} "
          f"cases without segmentation (imagesTs); labels as {labels_as}")
    return writer.final_folder


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``nnunet_ext convert brats``."""
    parser.description = __doc__.split("\n\n")[0]
    parser.add_argument("-i", "--input", nargs="+", required=True,
                        help="BraTS release folder(s), case folders at any depth: the training release, then "
                             "optionally a validation release (no segmentations, to imagesTs)")
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help="nnU-Net dataset id, e.g. 721")
    parser.add_argument("--release", choices=sorted(RELEASES),
                        help="the release (default: detected from the file names)")
    parser.add_argument("--labels-as", choices=("regions", "labels"), default="regions",
                        help="declare whole tumour / tumour core / enhancing tumour as regions, or the three labels")
    parser.add_argument("--name", help="dataset name (default: BraTS)")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")


def run(args: argparse.Namespace) -> None:
    """Entry point of ``nnunet_ext convert brats``."""
    convert_brats(args.input, args.dataset_id, release=args.release, labels_as=args.labels_as, name=args.name,
                  num_processes=args.num_processes, overwrite=args.overwrite)

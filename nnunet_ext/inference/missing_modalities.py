"""Predicting cases that lack some of the dataset's channels (modalities), through nnU-Net's predictor
(DESIGN.md §8.2; MAML spec §5.6).

nnU-Net's predictor reads every channel file of a case. Here each case's channels are read from the files
present (``CASE_XXXX<ending>``, as nnUNetv2_predict reads them), and a channel the case lacks — or one named in
``missing`` — is given as an image of zeros on the case's grid, written with the dataset's own reader/writer to a
temporary folder. The cases are predicted in groups with the same absent channels, each group by
``predict_from_files`` (or its sequential twin, as nnUNetv2_predict chooses; sliding window, mirroring, export and its parallel workers unchanged), after telling a
network that knows about absent modalities which ones are absent:

* ``joint`` (MAML): the fused head, the absent modalities left out of the fusion as in modality-dropout training;
* ``branches`` (MAML): the mean of the present branches' probabilities.

A network without that notion (a stock ``nnUNetTrainer`` model) sees the zero images, which z-score
normalisation keeps at zero: the zero-filled baseline of the missing-modality tables.
"""
import os
import re
import tempfile
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from tqdm import tqdm

from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

PROTOCOLS = ("joint", "branches")
Cases = Dict[str, Dict[int, str]]
"""``{case id: {channel index: file}}`` of an input folder."""


def channel_names(dataset_json: dict) -> List[str]:
    """The dataset's channel names in channel order."""
    channels = dataset_json["channel_names"]
    return [str(channels[key]) for key in sorted(channels, key=int)]


def channel_indices(dataset_json: dict, names: Sequence[str]) -> Tuple[int, ...]:
    """The indices of the channels ``names`` (channel names as in dataset.json, case-insensitive, or indices);
    ``ValueError`` naming the dataset's channels for an unknown name or when every channel is named."""
    known = channel_names(dataset_json)
    lowered = [name.lower() for name in known]
    indices = []
    for name in names:
        if name.lower() in lowered:
            indices.append(lowered.index(name.lower()))
        elif name.isdigit() and int(name) < len(known):
            indices.append(int(name))
        else:
            raise ValueError(f"--missing {name}: the dataset has no such channel; its channels are "
                             f"{', '.join(f'{i} {n}' for i, n in enumerate(known))}")
    if len(set(indices)) == len(known):
        raise ValueError(f"--missing {' '.join(names)} names every channel of the dataset; at least one modality "
                         f"must be present")
    return tuple(sorted(set(indices)))


def cases_in_folder(folder: str, dataset_json: dict) -> Cases:
    """The cases of an nnU-Net image folder and the channel files each has; ``ValueError`` naming the file for a
    channel number the dataset does not have, and for a folder without any case."""
    if not os.path.isdir(folder):
        raise ValueError(f"input folder {folder} does not exist")
    ending = dataset_json["file_ending"]
    pattern = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})" + re.escape(ending))
    num_channels = len(dataset_json["channel_names"])
    cases: Cases = {}
    for name in sorted(os.listdir(folder)):
        match = pattern.fullmatch(name)
        if match is None:
            continue
        channel = int(match["channel"])
        if channel >= num_channels:
            raise ValueError(f"{os.path.join(folder, name)}: channel {channel} does not exist, the dataset has "
                             f"{num_channels} channels ({', '.join(channel_names(dataset_json))})")
        cases.setdefault(match["case"], {})[channel] = os.path.join(folder, name)
    if not cases:
        raise ValueError(f"{folder} holds no image named CASE_XXXX{ending} (nnU-Net's naming, one file per channel)")
    return cases


def group_by_absent_channels(cases: Cases, num_channels: int, missing: Sequence[int] = ()
                             ) -> Dict[Tuple[int, ...], List[str]]:
    """``{absent channels: cases}``: a channel is absent when the case has no file for it or it is in
    ``missing``; ``ValueError`` when nothing would be left of a case."""
    groups: Dict[Tuple[int, ...], List[str]] = {}
    for case, files in sorted(cases.items()):
        absent = tuple(c for c in range(num_channels) if c not in files or c in missing)
        if len(absent) == num_channels:
            raise ValueError(f"case {case} would have no channel left (files for channels {sorted(files)}, "
                             f"--missing {sorted(missing)}); at least one modality must be present")
        groups.setdefault(absent, []).append(case)
    return groups


def tell_network(predictor: nnUNetPredictor, absent: Tuple[int, ...], protocol: str) -> None:
    """Set the absent channels and read-out on a network that has them (MAML's); refuse ``branches`` for one
    that has none."""
    network = getattr(predictor.network, "_orig_mod", predictor.network)
    if hasattr(network, "set_absent_channels"):
        network.set_absent_channels(absent, protocol, predictor.label_manager.has_regions)
    elif protocol != "joint":
        raise ValueError(f"--protocol {protocol} needs a network with one branch per modality (nnUNetTrainerMAML); "
                         f"{type(network).__name__} is predicted with zero-filled absent channels (--protocol joint)")


def zero_channel(reference_file: str, output_file: str, predictor: nnUNetPredictor) -> None:
    """An image of zeros on the grid of ``reference_file``, in the dataset's own file format."""
    reader_writer = predictor.plans_manager.image_reader_writer_class()
    image, properties = reader_writer.read_images([reference_file])
    reader_writer.write_seg(np.zeros(image.shape[1:], dtype=np.uint8), output_file, properties)


def predict_with_missing(predictor: nnUNetPredictor, input_folder: str, output_folder: str,
                         missing: Sequence[int] = (), protocol: str = "joint", save_probabilities: bool = False,
                         overwrite: bool = True, num_processes_preprocessing: int = 3,
                         num_processes_segmentation_export: int = 3,
                         folder_with_segs_from_prev_stage: Optional[str] = None,
                         num_parts: int = 1, part_id: int = 0) -> Dict[Tuple[int, ...], List[str]]:
    """Predict every case of ``input_folder`` (its part ``part_id`` of ``num_parts``) into ``output_folder`` with
    the channels in ``missing`` and those without a file absent; returns ``{absent channels: cases}``. Without
    worker processes (both counts 0) the cases are predicted sequentially, as nnUNetv2_predict does then."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose one of {PROTOCOLS}")
    dataset_json = predictor.dataset_json
    num_channels = len(dataset_json["channel_names"])
    cases = cases_in_folder(input_folder, dataset_json)
    chosen = sorted(cases)[part_id::num_parts]
    groups = group_by_absent_channels({case: cases[case] for case in chosen}, num_channels, missing)
    ending = dataset_json["file_ending"]
    os.makedirs(output_folder, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="nnunet_ext_missing_") as zeros_folder:
        for absent, group in groups.items():
            files = []
            for case in tqdm(group, desc=f"zero images for absent channels {list(absent)}", disable=not absent):
                present = cases[case]
                zeros = os.path.join(zeros_folder, f"{case}_{absent[0]:04d}{ending}") if absent else None
                if zeros is not None:
                    zero_channel(next(iter(present.values())), zeros, predictor)
                files.append([zeros if channel in absent else present[channel] for channel in range(num_channels)])
            tell_network(predictor, absent, protocol)
            outputs = [os.path.join(output_folder, case) for case in group]
            if num_processes_preprocessing == 0 and num_processes_segmentation_export == 0:
                predictor.predict_from_files_sequential(files, outputs, save_probabilities, overwrite,
                                                        folder_with_segs_from_prev_stage)
            else:
                predictor.predict_from_files(files, outputs, save_probabilities=save_probabilities, overwrite=overwrite,
                                             num_processes_preprocessing=num_processes_preprocessing,
                                             num_processes_segmentation_export=num_processes_segmentation_export,
                                             folder_with_segs_from_prev_stage=folder_with_segs_from_prev_stage)
        tell_network(predictor, (), "joint")
    return groups

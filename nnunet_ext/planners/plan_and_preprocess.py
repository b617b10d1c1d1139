"""``nnunet_ext plan_and_preprocess``: nnU-Net's plan and preprocess, plus our planners and unlabeled images.

The command does what ``nnUNetv2_plan_and_preprocess`` does, with the same flags and defaults, by calling nnU-Net's
public API with class objects (``extract_fingerprint_dataset``, ``plan_experiment_dataset``,
``preprocess_dataset``). Two things nnU-Net cannot do are added:

- ``-pl`` (and ``-fpe``) also find classes exported by :mod:`nnunet_ext.planners` and dotted paths
  ``package.module.Class``; nnU-Net itself only searches its own package.
- A raw dataset's ``imagesTrUnlabeled/`` (DESIGN.md §3) is preprocessed, for every configuration that was
  preprocessed, with that configuration's stock preprocessor and without any label, into
  ``<nnUNet_preprocessed>/<Dataset>/<data_identifier>_unlabeled``
  (:func:`nnunet_ext.paths.unlabeled_preprocessed_folder`), beside nnU-Net's own folder so that nnU-Net's splits
  never see these cases. ``labelsTrReference/`` is never read.
- A raw dataset's patient-grouped ``splits_final.json`` (written by converters whose cases share patients,
  :mod:`nnunet_ext.splits`) reaches ``<nnUNet_preprocessed>/<Dataset>/`` through nnU-Net's planner; a split
  already there with other folds is refused before any work, with a message instead of nnU-Net's bare assertion.
- ``--joint`` plans two partner datasets together (:mod:`nnunet_ext.planners.joint`, DESIGN.md §8.1).
"""
import argparse
import contextlib
import importlib
import multiprocessing
import os
import re
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Type, Union

import numpy as np
import SimpleITK as sitk
from batchgenerators.utilities.file_and_folder_operations import join, load_json
from tqdm import tqdm

import nnunetv2
from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.experiment_planning.plan_and_preprocess_api import (extract_fingerprint_dataset,
                                                                  plan_experiment_dataset, preprocess_dataset)
from nnunetv2.imageio.base_reader_writer import BaseReaderWriter
from nnunetv2.imageio.reader_writer_registry import determine_reader_writer_from_dataset_json
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.paths import nnUNet_preprocessed, nnUNet_raw
from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
from nnunetv2.training.dataloading.nnunet_dataset import comp_blosc2_params, nnUNetDatasetBlosc2
from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
from nnunetv2.utilities.label_handling.label_handling import get_labelmanager_class_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from nnunetv2.utilities.utils import create_paths_fn, get_identifiers_from_splitted_dataset_folder

from nnunet_ext.partners import check_partners
from nnunet_ext.paths import UNLABELED_IMAGES_DIR, dataset_name, unlabeled_preprocessed_folder
from nnunet_ext.planners.joint import plan_jointly
from nnunet_ext.splits import check_existing_split

DEFAULT_CONFIGURATIONS = ("2d", "3d_fullres", "3d_lowres")
DEFAULT_NUM_PROCESSES = {"2d": 8, "3d_fullres": 4, "3d_lowres": 8}
"""nnU-Net's default ``-np`` per configuration; other configurations get ``DEFAULT_NUM_PROCESSES_OTHER``."""
DEFAULT_NUM_PROCESSES_OTHER = 4
EXTENSION_PACKAGE = "nnunet_ext.planners"

_CHANNEL_FILE = re.compile(r"(?P<case>.+)_(?P<channel>\d{4})")
_SITK_HEADER_ENDINGS = tuple(SimpleITKIO.supported_file_endings) + (".nii",)


# ----------------------------------------------------------------------------------------------------------------
# class lookup
# ----------------------------------------------------------------------------------------------------------------

def _import_dotted(path: str) -> Optional[object]:
    """The object named by ``package.module.Name``, or None when that module or name does not exist.

    Import errors raised by the module's own dependencies propagate, so a broken planner is not reported as a
    missing one.
    """
    module_name, _, attribute = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name is not None and (module_name + ".").startswith(e.name + "."):
            return None
        raise
    return getattr(module, attribute, None)


def _subclass_names(base_class: type) -> List[str]:
    """Names of all currently imported subclasses of ``base_class`` (itself included)."""
    names, todo = set(), [base_class]
    while todo:
        cls = todo.pop()
        if cls.__name__ not in names:
            names.add(cls.__name__)
            todo.extend(cls.__subclasses__())
    return sorted(names)


def resolve_class(name: str, base_class: type, nnunet_subpackage: str = "experiment_planning") -> type:
    """The class that ``-pl``/``-fpe`` ``name`` means, a subclass of ``base_class``.

    A name with a dot is imported as ``package.module.Class``. A plain name is looked up the way nnU-Net's own
    ``nnUNetv2_plan_and_preprocess`` does (recursively in ``nnunetv2.<nnunet_subpackage>``), then among the names
    exported by :mod:`nnunet_ext.planners`; nnU-Net's names come first so that they always mean nnU-Net's classes.

    Raises:
        ValueError: nothing of that name was found (the message lists what was searched and the known classes), or
            what was found is not a subclass of ``base_class``.
    """
    kind = base_class.__name__
    if "." in name:
        found = _import_dotted(name)
        searched = f"the dotted path {name!r}"
    else:
        found = _find_in_nnunet(nnunet_subpackage, name)
        if found is None:
            found = getattr(importlib.import_module(EXTENSION_PACKAGE), name, None)
        searched = f"nnU-Net's package nnunetv2.{nnunet_subpackage} and the exports of {EXTENSION_PACKAGE}"
    if found is None:
        raise ValueError(
            f"Unknown {kind} {name!r}. Searched {searched}; a class elsewhere can be given as a dotted path "
            f"'package.module.Class'. Known {kind} classes: {', '.join(_subclass_names(base_class))}.")
    if not (isinstance(found, type) and issubclass(found, base_class)):
        raise ValueError(f"{name!r} resolves to {found!r}, which is not a subclass of nnU-Net's {kind}.")
    return found


def _find_in_nnunet(subpackage: str, name: str) -> Optional[object]:
    """What stock nnU-Net finds under ``name`` in ``nnunetv2.<subpackage>`` (None if nothing)."""
    return recursive_find_python_class(join(nnunetv2.__path__[0], *subpackage.split(".")), name,
                                       current_module=f"nnunetv2.{subpackage}")


def check_stock_preprocessor(preprocessor_name: str) -> None:
    """Raise ValueError unless stock nnU-Net finds ``preprocessor_name`` (it looks only in nnunetv2.preprocessing).

    The name is written into the plans and looked up again by ``nnUNetv2_predict``, so a class of ours would make
    the plans unusable there.
    """
    if _find_in_nnunet("preprocessing", preprocessor_name) is None:
        raise ValueError(f"Preprocessor {preprocessor_name!r} is not a class in nnunetv2.preprocessing. The plans "
                         f"store this name and stock nnU-Net (nnUNetv2_predict) only searches there.")


def check_plans_usable_by_stock_nnunet(plans_file: str) -> None:
    """Raise ValueError if stock nnU-Net could not resolve a class or function named in ``plans_file``.

    Checks the reader/writer, the label manager, and per configuration the preprocessor, normalisation schemes and
    resampling functions: all are looked up by name inside nnunetv2 at training and inference time (DESIGN.md §1.4).
    """
    plans_manager = PlansManager(plans_file)
    problems = []
    try:
        plans_manager.image_reader_writer_class
    except RuntimeError as e:
        problems.append(str(e))
    if get_labelmanager_class_from_plans(plans_manager.plans) is None:
        problems.append(f"label manager {plans_manager.plans['label_manager']!r} is not in nnunetv2")
    for configuration in plans_manager.available_configurations:
        configuration_manager = plans_manager.get_configuration(configuration)
        if configuration_manager.preprocessor_class is None:
            problems.append(f"{configuration}: preprocessor {configuration_manager.preprocessor_name!r} is not in "
                            f"nnunetv2.preprocessing")
        for scheme in configuration_manager.normalization_schemes:
            if _find_in_nnunet("preprocessing.normalization", scheme) is None:
                problems.append(f"{configuration}: normalization {scheme!r} is not in "
                                f"nnunetv2.preprocessing.normalization")
        for fn in ("resampling_fn_data", "resampling_fn_seg", "resampling_fn_probabilities"):
            try:
                getattr(configuration_manager, fn)
            except RuntimeError as e:
                problems.append(f"{configuration}: {e}")
    if problems:
        raise ValueError(f"The plans {plans_file} name components that stock nnU-Net cannot find, so "
                         f"nnUNetv2_train/nnUNetv2_predict could not use them:\n  " + "\n  ".join(problems))


# ----------------------------------------------------------------------------------------------------------------
# unlabeled images: discovery and validation
# ----------------------------------------------------------------------------------------------------------------

def _num_channels(dataset_json: dict) -> int:
    """Number of input channels declared in dataset.json (``channel_names``, or the legacy ``modality``)."""
    return len(dataset_json["channel_names"] if "channel_names" in dataset_json else dataset_json["modality"])


def _channels_and_geometry(image_file: str, reader_class: Optional[Type[BaseReaderWriter]]) -> Tuple[int, tuple]:
    """(number of channels, (size, spacing[, origin, direction])) of one image file.

    Formats SimpleITK reads are checked from the header only (channels = components per pixel); others are read
    with nnU-Net's reader for the dataset, which gives the channels (an RGB PNG holds three), shape and spacing.
    """
    try:
        if image_file.lower().endswith(_SITK_HEADER_ENDINGS):
            reader = sitk.ImageFileReader()
            reader.SetFileName(image_file)
            reader.ReadImageInformation()
            return reader.GetNumberOfComponents(), (reader.GetSize(), reader.GetSpacing(), reader.GetOrigin(),
                                                    reader.GetDirection())
        image, properties = reader_class().read_images([image_file])
        return image.shape[0], (image.shape[1:], tuple(properties["spacing"]))
    except Exception as e:
        raise ValueError(f"Cannot read the image {image_file}: {e}") from e


def _same_geometry(a: tuple, b: tuple) -> bool:
    """Same size, and spacing/origin/direction equal up to float rounding."""
    return tuple(a[0]) == tuple(b[0]) and all(np.allclose(x, y, rtol=1e-5, atol=1e-5) for x, y in zip(a[1:], b[1:]))


def _channel_index(path: str, file_ending: str) -> int:
    return int(path[-len(file_ending) - 4:-len(file_ending)])


def find_unlabeled_cases(raw_dataset_folder: str, dataset_json: dict) -> Dict[str, List[str]]:
    """The validated cases of ``<raw_dataset_folder>/imagesTrUnlabeled``: ``{case: [channel files, in order]}``.

    Returns an empty dict when the folder does not exist. Files are named like imagesTr's,
    ``{case}_{channel:04d}{file_ending}``, and listed with nnU-Net's own helpers (``nnunetv2.utilities.utils``);
    files with other endings are ignored, as nnU-Net does in imagesTr. As in nnU-Net's integrity check, a case's
    channels are counted after reading its files with the dataset's reader, so one RGB PNG is three channels.

    Raises:
        ValueError: the folder holds no image; a file is misnamed or has a channel index beyond dataset.json's
            channel_names; a case lacks a channel file or its files hold another number of channels; a file
            cannot be read; or a case's channels differ in size, spacing, origin or direction. The message names
            the files or cases.
    """
    folder = join(raw_dataset_folder, UNLABELED_IMAGES_DIR)
    if not os.path.isdir(folder):
        return {}
    file_ending = dataset_json["file_ending"]
    num_channels = _num_channels(dataset_json)
    files = sorted(f for f in os.listdir(folder) if f.endswith(file_ending) and os.path.isfile(join(folder, f)))
    if not files:
        raise ValueError(f"{folder} exists but holds no image ending in {file_ending!r}. Add the unlabeled images "
                         f"(named like imagesTr's) or remove the folder.")
    misnamed = [f for f in files if _CHANNEL_FILE.fullmatch(f[:-len(file_ending)]) is None]
    out_of_range = [f for f in files if f not in misnamed and _channel_index(f, file_ending) >= num_channels]
    problems = []
    if misnamed:
        problems.append(f"not named {{case}}_{{channel:04d}}{file_ending}: {', '.join(misnamed)}")
    if out_of_range:
        problems.append(f"channel index out of range (dataset.json declares {num_channels} channel(s), "
                        f"0000 to {num_channels - 1:04d}): {', '.join(out_of_range)}")
    if problems:
        raise ValueError(f"Invalid unlabeled images in {folder}:\n  " + "\n  ".join(problems))

    cases = {str(case): create_paths_fn(folder, files, file_ending, str(case))
             for case in get_identifiers_from_splitted_dataset_folder(folder, file_ending)}
    _check_channels(cases, dataset_json, folder)
    return cases


def _check_channels(cases: Dict[str, List[str]], dataset_json: dict, folder: str) -> None:
    """Raise ValueError naming every case that lacks a channel or whose channels differ in geometry.

    Every file is read (headers only where SimpleITK can), which also catches unreadable files early.
    """
    file_ending, num_channels = dataset_json["file_ending"], _num_channels(dataset_json)
    reader_class = None
    if not all(f.lower().endswith(_SITK_HEADER_ENDINGS) for files in cases.values() for f in files):
        first = next(f for files in cases.values() for f in files if not f.lower().endswith(_SITK_HEADER_ENDINGS))
        reader_class = determine_reader_writer_from_dataset_json(dataset_json, first, verbose=False)
    missing, mismatched = [], []
    for case, files in cases.items():
        read = [_channels_and_geometry(f, reader_class) for f in files]
        indices = [_channel_index(f, file_ending) for f in files]
        if indices != list(range(len(files))) or sum(c for c, _ in read) != num_channels:
            absent = [f"{case}_{c:04d}{file_ending}" for c in range(num_channels) if c not in indices]
            count = (f"its files {', '.join(os.path.basename(f) for f in files)} hold {sum(c for c, _ in read)} "
                     f"channel(s), dataset.json declares {num_channels}")
            missing.append(f"{case} lacks {', '.join(absent)} ({count})" if all(c == 1 for c, _ in read) and absent
                           else f"{case}: {count}")
        elif not all(_same_geometry(read[0][1], g) for _, g in read[1:]):
            details = "; ".join(f"{os.path.basename(f)}: {g}" for f, (_, g) in zip(files, read))
            mismatched.append(f"{case} ({details})")
    if missing:
        raise ValueError(f"Invalid unlabeled images in {folder}:\n  cases missing channels: " + "; ".join(missing))
    if mismatched:
        raise ValueError(f"Unlabeled cases in {folder} whose channels differ in size, spacing, origin or "
                         f"direction:\n  " + "\n  ".join(mismatched))


# ----------------------------------------------------------------------------------------------------------------
# unlabeled images: preprocessing
# ----------------------------------------------------------------------------------------------------------------

def _preprocess_unlabeled_case(preprocessor: DefaultPreprocessor, image_files: List[str],
                               output_filename_truncated: str, plans_manager: PlansManager,
                               configuration_manager: ConfigurationManager, dataset_json: dict) -> None:
    """Preprocess one unlabeled case without a label and save it as nnU-Net saves a training case.

    Runs in a worker process. The saved seg is the nonzero mask ``run_case`` makes (0 inside, -1 outside), with
    nnU-Net's dtypes and blosc2 chunk/block choice for this configuration. ``class_locations`` is empty because
    nnU-Net's data loader reads that key unconditionally and there is no foreground to sample.
    """
    data, seg, properties = preprocessor.run_case(image_files, None, plans_manager, configuration_manager,
                                                  dataset_json)
    data = data.astype(np.float32, copy=False)
    seg = seg.astype(np.int16, copy=False)
    properties["class_locations"] = {}
    patch_size = tuple(configuration_manager.patch_size)
    blocks, chunks = comp_blosc2_params(data.shape, patch_size, data.itemsize)
    blocks_seg, chunks_seg = comp_blosc2_params(seg.shape, patch_size, seg.itemsize)
    nnUNetDatasetBlosc2.save_case(data, seg, properties, output_filename_truncated, chunks=chunks, blocks=blocks,
                                  chunks_seg=chunks_seg, blocks_seg=blocks_seg)


def _move_into_place(staging_folder: str, output_folder: str) -> None:
    """Replace ``output_folder`` by ``staging_folder`` (same parent), so that it is never seen half-written."""
    if not os.path.exists(output_folder):
        os.rename(staging_folder, output_folder)
        return
    trash = tempfile.mkdtemp(prefix=os.path.basename(output_folder) + ".old_", dir=os.path.dirname(output_folder))
    os.rename(output_folder, join(trash, "previous"))
    os.rename(staging_folder, output_folder)
    shutil.rmtree(trash)


def _write_unlabeled_folder(cases: Dict[str, List[str]], output_folder: str, plans_manager: PlansManager,
                            configuration_manager: ConfigurationManager, dataset_json: dict, num_processes: int,
                            verbose: bool, show_progress_bar: bool) -> None:
    """Preprocess ``cases`` in ``num_processes`` spawned workers into a staging folder, then move it into place."""
    preprocessor_class = configuration_manager.preprocessor_class
    if preprocessor_class is None:
        raise ValueError(f"Preprocessor {configuration_manager.preprocessor_name!r} of the plans is not in "
                         f"nnunetv2.preprocessing.")
    preprocessor = preprocessor_class(verbose=verbose)
    staging = tempfile.mkdtemp(prefix=os.path.basename(output_folder) + ".partial_",
                               dir=os.path.dirname(output_folder))
    try:
        pool = ProcessPoolExecutor(max_workers=num_processes, mp_context=multiprocessing.get_context("spawn"))
        try:
            futures = [pool.submit(_preprocess_unlabeled_case, preprocessor, files, join(staging, case),
                                   plans_manager, configuration_manager, dataset_json)
                       for case, files in cases.items()]
            for future in tqdm(as_completed(futures), total=len(futures), desc="Preprocessing unlabeled cases",
                               disable=not show_progress_bar):
                future.result()
        except BrokenProcessPool as e:
            raise RuntimeError("A worker preprocessing unlabeled cases died without an error message, most likely "
                               "killed by the OS for lack of memory; lower -np.") from e
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        _move_into_place(staging, output_folder)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)


def _per_configuration(num_processes: Union[int, Sequence[int]], configurations: Sequence[str]) -> List[int]:
    """``num_processes`` as one number per configuration, with nnU-Net's rule (one number, or one per config)."""
    counts = [num_processes] if isinstance(num_processes, int) else list(num_processes)
    if len(counts) == 1:
        counts = counts * len(configurations)
    if len(counts) != len(configurations):
        raise ValueError(f"num_processes must have one element or one per configuration ({len(configurations)}), "
                         f"got {len(counts)}.")
    return counts


def preprocess_unlabeled(dataset_name_or_id: Union[int, str], plans_identifier: str, configurations: Sequence[str],
                         num_processes: Union[int, Sequence[int]], verbose: bool = False,
                         show_progress_bar: bool = True) -> None:
    """Preprocess the dataset's ``imagesTrUnlabeled/`` for each configuration, as nnU-Net preprocesses imagesTr.

    Needs the plans (``plans_identifier``) to exist. For each configuration of ``configurations`` in the plans
    (others are skipped, as nnU-Net does), the images are preprocessed with the configuration's stock preprocessor
    and no label, and saved with nnU-Net's dataset class into
    ``unlabeled_preprocessed_folder(<nnUNet_preprocessed>/<Dataset>/<data_identifier>)``, outside the folder
    nnU-Net's splits read; each case's ``class_locations`` is ``{}``. The folder is written in full or not at all.
    Configurations sharing a data_identifier are written once. Without ``imagesTrUnlabeled/`` nothing is written,
    and a folder left from an earlier run is removed, as nnU-Net replaces its own folder on every run.

    Args:
        dataset_name_or_id: dataset id or ``DatasetXXX_Name``.
        plans_identifier: plans file name without ``.json`` (e.g. ``nnUNetPlans``).
        configurations: configuration names, e.g. ``["3d_fullres"]``.
        num_processes: worker processes, one number or one per configuration.
        verbose: passed to the preprocessor.
        show_progress_bar: show a tqdm bar per configuration.

    Raises:
        ValueError: invalid unlabeled images (see :func:`find_unlabeled_cases`) or bad ``num_processes``.
    """
    name = dataset_name(dataset_name_or_id)
    preprocessed_dataset_folder = join(nnUNet_preprocessed, name)
    dataset_json = load_json(join(preprocessed_dataset_folder, "dataset.json"))
    cases = find_unlabeled_cases(join(nnUNet_raw, name), dataset_json)
    counts = _per_configuration(num_processes, configurations)
    plans_manager = PlansManager(join(preprocessed_dataset_folder, plans_identifier + ".json"))
    written = set()
    for configuration, n in zip(configurations, counts):
        if configuration not in plans_manager.available_configurations:
            if cases:
                print(f"INFO: configuration {configuration} is not in the plans {plans_identifier} of "
                      f"{name}; no unlabeled cases preprocessed for it.")
            continue
        configuration_manager = plans_manager.get_configuration(configuration)
        output_folder = unlabeled_preprocessed_folder(join(preprocessed_dataset_folder,
                                                           configuration_manager.data_identifier))
        if output_folder in written:
            continue
        written.add(output_folder)
        if not cases:
            if os.path.isdir(output_folder):
                shutil.rmtree(output_folder)
                print(f"Removed {output_folder}: {name} has no {UNLABELED_IMAGES_DIR}/ any more.")
            continue
        print(f"Preprocessing {len(cases)} unlabeled cases of {name}, configuration {configuration}...")
        _write_unlabeled_folder(cases, output_folder, plans_manager, configuration_manager, dataset_json, n,
                                verbose, show_progress_bar)
        print(f"Unlabeled cases of {name} ({configuration}) written to {output_folder}")


@contextlib.contextmanager
def _planner_safe_n_proc_da() -> Iterator[None]:
    """Let nnU-Net's planner run when ``nnUNet_n_proc_DA`` is 0.

    ``nnUNet_n_proc_DA=0`` (no background augmentation workers, common on CPU) is valid for training, but nnU-Net
    2.8.1's planner passes the same number to ``torch.set_num_threads`` while estimating VRAM and fails on 0.
    Planning therefore sees 1; the variable is restored afterwards.
    """
    value = os.environ.get("nnUNet_n_proc_DA")
    if value is None or int(value) >= 1:
        yield
        return
    os.environ["nnUNet_n_proc_DA"] = "1"
    try:
        yield
    finally:
        os.environ["nnUNet_n_proc_DA"] = value


# ----------------------------------------------------------------------------------------------------------------
# command line
# ----------------------------------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    """nnUNetv2_plan_and_preprocess's arguments, with the same names and defaults."""
    parser.add_argument("-d", nargs="+", type=int, required=True,
                        help="Dataset IDs, e.g. 801 802: fingerprint extraction, planning and preprocessing for each.")
    parser.add_argument("-fpe", default="DatasetFingerprintExtractor",
                        help="Fingerprint extractor class: a name in nnunetv2.experiment_planning or exported by "
                             f"{EXTENSION_PACKAGE}, or a dotted path package.module.Class. "
                             "Default: DatasetFingerprintExtractor.")
    parser.add_argument("-npfp", type=int, default=8,
                        help="Number of processes for fingerprint extraction. Default: 8.")
    parser.add_argument("--verify_dataset_integrity", action="store_true",
                        help="Check the dataset's integrity first (recommended once per dataset).")
    parser.add_argument("--no_pp", action="store_true",
                        help="Only extract the fingerprint and plan; no preprocessing.")
    parser.add_argument("--clean", action="store_true",
                        help="Overwrite an existing fingerprint. Required after changing the dataset or the "
                             "fingerprint extractor.")
    parser.add_argument("-pl", default="ExperimentPlanner",
                        help="Experiment planner class: a name in nnunetv2.experiment_planning (e.g. "
                             f"nnUNetPlannerResEncM, nnUNetPlannerResEncL), one of {EXTENSION_PACKAGE} "
                             "(nnUNetPlannerCTWindow: a fixed CT window, LTUDA's [-325, 325] HU, plans "
                             "nnUNetPlansCTWindow) or a dotted path package.module.Class of your own")
    parser.add_argument("-gpu_memory_target", type=float, default=None,
                        help="Custom GPU memory target in GB (changes patch and batch size). Default: the planner's.")
    parser.add_argument("-preprocessor_name", default="DefaultPreprocessor",
                        help="Preprocessor class; must be in nnunetv2.preprocessing so stock nnU-Net finds it. "
                             "Default: DefaultPreprocessor.")
    parser.add_argument("-overwrite_target_spacing", type=float, nargs="+", default=None,
                        help="Custom target spacing (three numbers) for 3d_fullres and 3d_cascade_fullres.")
    parser.add_argument("-overwrite_plans_name", default=None,
                        help="Custom plans identifier; then pass it with -p to the other nnU-Net commands.")
    parser.add_argument("-c", nargs="+", default=list(DEFAULT_CONFIGURATIONS),
                        help="Configurations to preprocess. Default: 2d 3d_fullres 3d_lowres. Configurations missing "
                             "from the plans are skipped.")
    parser.add_argument("-np", type=int, nargs="+", default=None,
                        help="Processes for preprocessing: one number, or one per configuration. Default: 8 for 2d, "
                             "4 for 3d_fullres, 8 for 3d_lowres and 4 for others. Lower it if RAM fills up.")
    parser.add_argument("--joint", action="store_true",
                        help="Plan two partner datasets (-d PRIMARY PARTNER, e.g. CT and MRI for nnUNetTrainerCMC) "
                             "together: one spacing, patch size, network and batch size for both, each with its own "
                             "intensities and normalisation. Train on the primary.")
    parser.add_argument("--verbose", action="store_true", help="Print a lot, for debugging.")
    parser.add_argument("--no_pbar", action="store_true", help="Disable progress bars.")


def run(args: argparse.Namespace) -> None:
    """Fingerprint, plan and preprocess each dataset as nnU-Net does, then preprocess its unlabeled images.

    Every class name and every ``imagesTrUnlabeled/`` is checked before any work starts, so a mistake fails fast
    and leaves nothing behind.
    """
    if args.joint and len(args.d) != 2:
        raise ValueError(f"--joint plans two partner datasets (-d PRIMARY PARTNER), got {len(args.d)}: "
                         f"{' '.join(map(str, args.d))}")
    planner_class = resolve_class(args.pl, ExperimentPlanner)
    fingerprint_extractor_class = resolve_class(args.fpe, DatasetFingerprintExtractor)
    check_stock_preprocessor(args.preprocessor_name)
    dataset_names = {d: dataset_name(d) for d in args.d}
    for name in dataset_names.values():
        raw_folder = join(nnUNet_raw, name)
        find_unlabeled_cases(raw_folder, load_json(join(raw_folder, "dataset.json")))
        check_existing_split(raw_folder, join(nnUNet_preprocessed, name))
    if args.joint:
        names = tuple(dataset_names[d] for d in args.d)
        check_partners(names, tuple(load_json(join(nnUNet_raw, n, "dataset.json")) for n in names))

    print("Fingerprint extraction...")
    for d in args.d:
        extract_fingerprint_dataset(d, fingerprint_extractor_class, args.npfp, args.verify_dataset_integrity,
                                    args.clean, args.verbose, show_progress_bar=not args.no_pbar)

    print("Experiment planning...")
    if planner_class is ExperimentPlanner:
        print("INFO: you are using nnU-Net's old default planner; nnU-Net recommends the residual encoder presets "
              "(-pl nnUNetPlannerResEncM/L/XL), see nnU-Net's documentation/resenc_presets.md.")
    plans_identifiers = {}
    with _planner_safe_n_proc_da():
        if args.joint:
            plans = plan_jointly(dataset_names[args.d[0]], dataset_names[args.d[1]], planner_class,
                                 args.gpu_memory_target, args.preprocessor_name, args.overwrite_target_spacing,
                                 args.overwrite_plans_name)
            plans_identifiers = {d: p["plans_name"] for d, p in zip(args.d, plans)}
        else:
            for d in args.d:
                _, plans_identifiers[d] = plan_experiment_dataset(d, planner_class, args.gpu_memory_target,
                                                                  args.preprocessor_name, args.overwrite_target_spacing,
                                                                  args.overwrite_plans_name)
    for d in args.d:
        plans_file = join(nnUNet_preprocessed, dataset_names[d], plans_identifiers[d] + ".json")
        check_plans_usable_by_stock_nnunet(plans_file)

    if args.no_pp:
        return
    num_processes = args.np if args.np is not None else \
        [DEFAULT_NUM_PROCESSES.get(c, DEFAULT_NUM_PROCESSES_OTHER) for c in args.c]
    print("Preprocessing...")
    for d in args.d:
        preprocess_dataset(d, plans_identifiers[d], args.c, num_processes, args.verbose,
                           show_progress_bar=not args.no_pbar)
        preprocess_unlabeled(d, plans_identifiers[d], args.c, num_processes, args.verbose,
                             show_progress_bar=not args.no_pbar)

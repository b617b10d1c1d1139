"""The one writer of nnU-Net raw datasets that every converter goes through (DESIGN.md §3).

It owns the folder layout, the validation of every case, dataset.json and the atomic appearance of the
finished dataset, so a converter only reads its source format and hands SimpleITK images (or existing files)
to the writer.
"""
import argparse
import json
import os
import re
import shutil
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Deque, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

from nnunetv2.dataset_conversion.generate_dataset_json import generate_dataset_json

from nnunet_ext.paths import REFERENCE_LABELS_DIR, UNLABELED_IMAGES_DIR
from nnunet_ext.splits import PATIENTS_KEY, SPLITS_FILE, grouped_splits, write_splits
from nnunet_ext.worker_pool import result_of, spawned_pool

GEOMETRY_TOLERANCE = 1e-4
"""Tolerance for spacing, origin and direction: ``|a - b| <= tol * max(1, |a|, |b|)``, i.e. relative, with an
absolute floor so that values near 0 (origins, direction cosines) are not held to a vanishing tolerance."""

RESERVED_JSON_KEYS = ("channel_names", "labels", "numTraining", "file_ending", "numUnlabeled", PATIENTS_KEY,
                      "converted_by")
"""dataset.json keys the writer computes itself; ``extra_json`` must not set them."""
SOURCE_LICENCE = "the source dataset's licence (nnunet_ext README, Data)"
"""dataset.json's ``licence`` unless the converter knows it (``extra_json['licence']``, e.g. an MSD task's)."""
CONVERTED_BY = "nnunet_ext"

TRAINING, UNLABELED, TEST = "training", "unlabeled", "test"
_FOLDERS = {TRAINING: ("imagesTr", "labelsTr"), UNLABELED: (UNLABELED_IMAGES_DIR, REFERENCE_LABELS_DIR),
            TEST: ("imagesTs", "labelsTs")}

ImageSource = Union[sitk.Image, str]
"""A case's image or label: a SimpleITK image to encode, or the path of an existing file to copy as is."""


@dataclass(frozen=True)
class _ImageInfo:
    """Geometry and layout of one image, read from a SimpleITK image or from a file header."""
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]
    components: int
    pixel_id: int

    @property
    def dimension(self) -> int:
        return len(self.size)

    @classmethod
    def of(cls, item: ImageSource) -> "_ImageInfo":
        if isinstance(item, sitk.Image):
            source, components = item, item.GetNumberOfComponentsPerPixel()
        else:
            source = sitk.ImageFileReader()
            source.SetFileName(item)
            source.ReadImageInformation()
            components = source.GetNumberOfComponents()
        return cls(tuple(source.GetSize()), tuple(source.GetSpacing()), tuple(source.GetOrigin()),
                   tuple(source.GetDirection()), components, source.GetPixelID())

    def same_geometry(self, other: "_ImageInfo") -> bool:
        return self.size == other.size and all(
            _close(a, b) for a, b in zip(self.spacing + self.origin + self.direction,
                                         other.spacing + other.origin + other.direction))

    def describe(self) -> str:
        return (f"size {self.size}, spacing {_fmt(self.spacing)}, origin {_fmt(self.origin)}, "
                f"direction {_fmt(self.direction)}")


def _close(a: float, b: float) -> bool:
    return abs(a - b) <= GEOMETRY_TOLERANCE * max(1.0, abs(a), abs(b))


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def _unique_values(array: np.ndarray) -> np.ndarray:
    """Sorted distinct values; linear-time counting for the small non-negative integers labels usually are."""
    if array.size and np.issubdtype(array.dtype, np.integer) and array.min() >= 0 and array.max() < 2 ** 16:
        return np.flatnonzero(np.bincount(array.ravel()))
    return np.unique(array)


def _declared_label_values(labels: Dict[str, Union[int, Sequence[int]]]) -> List[int]:
    values = set()
    for name, value in labels.items():
        members = value if isinstance(value, (list, tuple)) else [value]
        for v in members:
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
                raise ValueError(f"label {name!r}: {value!r} is not a non-negative integer or a list of them")
            values.add(int(v))
    return sorted(values)


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _write_case(jobs: List[Tuple[ImageSource, str]]) -> Optional[str]:
    """Write one case's files (runs in a pool worker): encode images, copy paths. Returns an error or None."""
    try:
        for item, destination in jobs:
            if isinstance(item, sitk.Image):
                sitk.WriteImage(item, destination, useCompression=True)
            else:
                shutil.copyfile(item, destination)
    except Exception as e:  # reported, with the case named, in the parent process
        return f"{type(e).__name__}: {e}".strip()
    return None


class RawDatasetWriter:
    """Write an nnU-Net raw dataset (plus nnunet_ext's unlabeled / reference folders) atomically.

    Use it as a context manager::

        with RawDatasetWriter(801, "LA", {"0": "MRI"}, {"background": 0, "left_atrium": 1}) as writer:
            writer.add_training_case("case1", [image], label, source="/in/case1.h5")
            writer.add_unlabeled_case("case2", [image2], reference_label=label2, source="/in/case2.h5")
        print(writer.final_folder)

    Files: ``imagesTr/{case}_{i:04d}{ending}`` + ``labelsTr/{case}{ending}``, ``imagesTrUnlabeled`` +
    ``labelsTrReference`` (true labels of unlabeled cases, reporting only), ``imagesTs`` + ``labelsTs``.

    How work is split: every ``add_*`` call validates its case at once, in the calling process (number of
    channels, size / spacing / origin / direction of all channels and the label within
    ``GEOMETRY_TOLERANCE``, label values among the declared ones, one dimensionality for the whole dataset,
    unique case ids) and raises a ``ValueError`` naming the case, its ``source`` and the problem. The
    validated case is then handed to a pool of ``num_processes`` spawned workers that encode and compress
    the files (the slow part), while the converter goes on reading the next case; at most
    ``2 * num_processes`` cases wait in memory. A tqdm bar counts written cases (``expected_cases`` gives
    it a total). ``num_processes=0`` writes in the calling process. A converter whose reading is itself
    slow can read in its own pool and call ``add_*`` from the parent with the results.

    Several cases per patient: a training case added with ``patient=`` belongs to that patient (cases added
    without one are their own patient). When patients were given, dataset.json records them (``patients``) and
    ``splits_final.json`` holds nnU-Net's five folds drawn over patients (:mod:`nnunet_ext.splits`; with a
    single patient no split can be drawn and none is written).

    Atomicity: ``__enter__`` creates a hidden temporary folder inside ``raw_root``; ``__exit__`` without an
    exception waits for the workers, checks the files, writes dataset.json (nnU-Net's ``generate_dataset_json``, with
    ``extra_json`` as its extra keys) and renames the folder to
    ``raw_root/Dataset{id:03d}_{name}``; with an exception (including a failed check) it deletes the
    temporary folder, so a half-written dataset never appears.

    Pixel types: images keep theirs (64-bit floats become float32); labels are written as uint8, or uint16
    when a declared label value exceeds 255. An image with several components per pixel (RGB PNG) counts as that many
    channels and is written as one file, as nnU-Net's natural-image reader expects. The ``*_from_files``
    variants validate existing files the same way and copy them byte for byte (no re-encoding).
    """

    def __init__(self, dataset_id: int, dataset_name: str, channel_names: Dict[str, str], labels: Dict[str, int],
                 file_ending: str = ".nii.gz", raw_root: Optional[str] = None, overwrite: bool = False,
                 extra_json: Optional[dict] = None, num_processes: int = 2, expected_cases: Optional[int] = None):
        if isinstance(dataset_id, bool) or not isinstance(dataset_id, (int, np.integer)) \
                or not 0 <= dataset_id <= 999:
            raise ValueError(f"dataset id must be an integer from 0 to 999, got {dataset_id!r}")
        if not dataset_name or not re.fullmatch(r"[A-Za-z0-9_\-.]+", dataset_name):
            raise ValueError(f"dataset name {dataset_name!r} must be non-empty and use only letters, digits, _ - .")
        channel_names = {str(k): str(v) for k, v in channel_names.items()}
        if not channel_names or sorted(channel_names) != sorted(str(i) for i in range(len(channel_names))):
            raise ValueError(f"channel_names keys must be '0', '1', ... without gaps, got {list(channel_names)}")
        if labels.get("background") != 0:
            raise ValueError(f"labels must declare 'background': 0 (nnU-Net requires it), got {labels}")
        if max(_declared_label_values(labels)) > 65535:
            raise ValueError(f"label values above 65535 cannot be stored as uint16 label maps: {labels}")
        if not file_ending.startswith(".") or len(file_ending) < 2:
            raise ValueError(f"file_ending must start with '.', got {file_ending!r}")
        clashes = sorted(set(extra_json or {}) & set(RESERVED_JSON_KEYS))
        if clashes:
            raise ValueError(f"extra_json must not set {clashes}: the writer computes them")
        if num_processes < 0:
            raise ValueError(f"num_processes must be >= 0, got {num_processes}")
        raw_root = raw_root if raw_root is not None else os.environ.get("nnUNet_raw")
        if not raw_root:
            raise ValueError("no raw_root given and the environment variable nnUNet_raw is not set; "
                             "export nnUNet_raw=/path/to/nnUNet_raw (see nnU-Net's set-up instructions)")
        self.dataset_id = int(dataset_id)
        self.dataset_name = dataset_name
        self.channel_names = channel_names
        self.labels = dict(labels)
        self.label_values = _declared_label_values(labels)
        self.file_ending = file_ending
        self.raw_root = os.path.abspath(raw_root)
        self.overwrite = overwrite
        self.extra_json = dict(extra_json or {})
        self.num_processes = int(num_processes)
        self.expected_cases = expected_cases
        self._case_kinds: Dict[str, str] = {}
        self._patients: Dict[str, str] = {}
        self._expected_files: List[str] = []
        self._dimension: Optional[int] = None
        self._temp_folder: Optional[str] = None
        self._pool = None
        self._pending: Deque[Tuple[str, str, object]] = deque()
        self._progress: Optional[tqdm] = None

    @property
    def folder_name(self) -> str:
        """``Dataset{id:03d}_{name}``."""
        return f"Dataset{self.dataset_id:03d}_{self.dataset_name}"

    @property
    def final_folder(self) -> str:
        """Where the dataset appears once the ``with`` block has finished without an error."""
        return os.path.join(self.raw_root, self.folder_name)

    @property
    def num_training(self) -> int:
        return self._count(TRAINING)

    @property
    def num_unlabeled(self) -> int:
        return self._count(UNLABELED)

    @property
    def num_test(self) -> int:
        return self._count(TEST)

    def training_cases_per_patient(self) -> Dict[str, List[str]]:
        """``{patient: [training case ids]}`` when any training case was added with a patient, else ``{}``."""
        if not self._patients:
            return {}
        groups: Dict[str, List[str]] = {}
        for case_id, kind in sorted(self._case_kinds.items()):
            if kind == TRAINING:
                groups.setdefault(self._patients.get(case_id, case_id), []).append(case_id)
        return groups

    def _count(self, kind: str) -> int:
        return sum(k == kind for k in self._case_kinds.values())

    # ------------------------------------------------------------------ context manager

    def __enter__(self) -> "RawDatasetWriter":
        if self._temp_folder is not None or self._case_kinds:
            raise RuntimeError("a RawDatasetWriter writes one dataset; create a new one for the next")
        os.makedirs(self.raw_root, exist_ok=True)
        self._check_destination()
        self._temp_folder = self._new_hidden_folder("tmp")
        self._progress = tqdm(total=self.expected_cases, desc=f"writing {self.folder_name}", unit="case")
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is None:
                self._finish()
        except BaseException:
            self._abort()
            raise
        if exc_type is not None:
            self._abort()
        return False

    def _finish(self) -> None:
        self._wait_for_writes(0)
        self._close_pool(terminate=False)
        self._progress.close()
        if not self.num_training:
            raise ValueError(f"{self.folder_name}: no training case was added; nnU-Net needs at least one")
        self._check_files()
        extra = json.loads(json.dumps({"numUnlabeled": self.num_unlabeled, **self.extra_json}, default=_json_default))
        patients = self.training_cases_per_patient()
        if patients:
            extra[PATIENTS_KEY] = patients
            if len(patients) > 1:
                write_splits(grouped_splits(patients), os.path.join(self._temp_folder, SPLITS_FILE))
        generate_dataset_json(self._temp_folder, dict(self.channel_names), dict(self.labels), self.num_training,
                              self.file_ending, license=extra.pop("licence", SOURCE_LICENCE),
                              converted_by=CONVERTED_BY, **extra)
        self._check_destination()
        self._move_into_place()

    def _abort(self) -> None:
        self._close_pool(terminate=True)
        if self._progress is not None:
            self._progress.close()
        if self._temp_folder is not None:
            shutil.rmtree(self._temp_folder, ignore_errors=True)

    def _check_destination(self) -> None:
        """Refuse a second dataset with our id, and an existing final folder unless ``overwrite``."""
        prefix = f"Dataset{self.dataset_id:03d}_"
        others = sorted(d for d in os.listdir(self.raw_root) if d.startswith(prefix) and d != self.folder_name
                        and os.path.isdir(os.path.join(self.raw_root, d)))
        if others:
            raise ValueError(f"{self.raw_root} already holds {others[0]} with dataset id {self.dataset_id}; "
                             f"nnU-Net needs unique ids: choose another id or remove that folder")
        if os.path.exists(self.final_folder) and not self.overwrite:
            raise ValueError(f"{self.final_folder} already exists; pass --overwrite to replace it")

    def _new_hidden_folder(self, tag: str) -> str:
        """A fresh ``.{tag}_Dataset..._<random>`` folder in ``raw_root``, hidden from nnU-Net's id look-up and
        created with the user's umask (unlike ``tempfile.mkdtemp``'s 0700), since it becomes the dataset."""
        path = os.path.join(self.raw_root, f".{tag}_{self.folder_name}_{uuid.uuid4().hex[:12]}")
        os.mkdir(path)
        return path

    def _move_into_place(self) -> None:
        old = None
        if os.path.exists(self.final_folder):
            old = self._new_hidden_folder("old")
            os.rename(self.final_folder, os.path.join(old, self.folder_name))
        try:
            os.rename(self._temp_folder, self.final_folder)
        except BaseException:
            if old is not None:
                os.rename(os.path.join(old, self.folder_name), self.final_folder)
                os.rmdir(old)
            raise
        self._temp_folder = None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def _check_files(self) -> None:
        on_disk = {os.path.relpath(os.path.join(root, f), self._temp_folder)
                   for root, _, files in os.walk(self._temp_folder) for f in files}
        expected = set(self._expected_files)
        if on_disk != expected:
            raise ValueError(f"{self.folder_name}: files on disk differ from the cases added: missing "
                             f"{sorted(expected - on_disk)[:5]}, unexpected {sorted(on_disk - expected)[:5]}")

    # ------------------------------------------------------------------ adding cases

    def add_training_case(self, case_id: str, images: List[sitk.Image], label: sitk.Image, source: str = "",
                          reference_label: Optional[sitk.Image] = None, patient: Optional[str] = None) -> None:
        """A labeled training case: ``imagesTr`` + ``labelsTr``. For weakly labeled data (``label`` a pseudo-label)
        the true label, if known, goes to ``labelsTrReference`` (reporting only, DESIGN.md §3). ``patient``: the
        patient the case belongs to, where one patient gives several cases (see the class docstring)."""
        if label is None:
            raise ValueError(self._message(case_id, source, "a training case needs a label"))
        self._add(TRAINING, case_id, images, label, source, reference_label)
        self._set_patient(case_id, patient)

    def add_unlabeled_case(self, case_id: str, images: List[sitk.Image], reference_label: Optional[sitk.Image] = None,
                           source: str = "") -> None:
        """An unlabeled training case: ``imagesTrUnlabeled``; its true label, if known, to ``labelsTrReference``."""
        self._add(UNLABELED, case_id, images, reference_label, source)

    def add_test_case(self, case_id: str, images: List[sitk.Image], label: Optional[sitk.Image] = None,
                      source: str = "") -> None:
        """A test case: ``imagesTs``, and ``labelsTs`` when a label is given."""
        self._add(TEST, case_id, images, label, source)

    def add_training_case_from_files(self, case_id: str, image_files: List[str], label_file: str,
                                     source: str = "", patient: Optional[str] = None) -> None:
        """Like :meth:`add_training_case`, for existing files that are validated and then copied byte for byte."""
        if label_file is None:
            raise ValueError(self._message(case_id, source, "a training case needs a label"))
        self._add(TRAINING, case_id, list(image_files), label_file, source)
        self._set_patient(case_id, patient)

    def _set_patient(self, case_id: str, patient: Optional[str]) -> None:
        if patient is not None:
            self._patients[case_id] = str(patient)

    def add_unlabeled_case_from_files(self, case_id: str, image_files: List[str],
                                      reference_label_file: Optional[str] = None, source: str = "") -> None:
        """Like :meth:`add_unlabeled_case`, for existing files copied byte for byte."""
        self._add(UNLABELED, case_id, list(image_files), reference_label_file, source)

    def add_test_case_from_files(self, case_id: str, image_files: List[str], label_file: Optional[str] = None,
                                 source: str = "") -> None:
        """Like :meth:`add_test_case`, for existing files copied byte for byte."""
        self._add(TEST, case_id, list(image_files), label_file, source)

    def _message(self, case_id: str, source: str, problem: str) -> str:
        return f"case {case_id!r} (source: {source or 'not given'}): {problem}"

    def _add(self, kind: str, case_id: str, images: Sequence[ImageSource], label: Optional[ImageSource],
             source: str, reference_label: Optional[sitk.Image] = None) -> None:
        if self._temp_folder is None:
            raise RuntimeError("add cases inside `with RawDatasetWriter(...) as writer:`")
        jobs = self._validate(kind, case_id, images, label, source)
        if reference_label is not None:
            jobs.append(self._reference_label_job(case_id, reference_label, jobs[0][0], source))
        self._case_kinds[case_id] = kind
        self._expected_files.extend(os.path.relpath(dest, self._temp_folder) for _, dest in jobs)
        if self.num_processes == 0:
            self._report(case_id, source, _write_case(jobs))
            return
        if self._pool is None:
            self._pool = spawned_pool(self.num_processes)
        self._pending.append((case_id, source, self._pool.submit(_write_case, jobs)))
        self._wait_for_writes(2 * self.num_processes)

    def _wait_for_writes(self, max_pending: int) -> None:
        """Collect finished writes; block on the oldest until at most ``max_pending`` remain."""
        while self._pending and (len(self._pending) > max_pending or self._pending[0][2].done()):
            case_id, source, result = self._pending.popleft()
            self._report(case_id, source, result_of(result))

    def _report(self, case_id: str, source: str, error: Optional[str]) -> None:
        if error is not None:
            raise ValueError(self._message(case_id, source, f"writing failed: {error}"))
        self._progress.update(1)

    def _close_pool(self, terminate: bool) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=terminate)
            self._pool = None
        self._pending.clear()

    # ------------------------------------------------------------------ validation

    def _validate(self, kind: str, case_id: str, images: Sequence[ImageSource], label: Optional[ImageSource],
                  source: str) -> List[Tuple[ImageSource, str]]:
        """Check one case; return the (image or file, destination) pairs to write."""
        def fail(problem: str) -> ValueError:
            return ValueError(self._message(case_id, source, problem))

        if not isinstance(case_id, str) or not case_id.strip() or case_id != case_id.strip() \
                or any(sep in case_id for sep in ("/", "\\")):
            raise fail("case ids must be non-empty strings without path separators or surrounding blanks")
        if case_id in self._case_kinds:
            raise fail(f"duplicate case id (already added as a {self._case_kinds[case_id]} case)")
        if isinstance(images, (sitk.Image, str)) or not images:
            raise fail("images must be a non-empty list, one entry per file")
        for item in [*images, label]:
            if isinstance(item, str) and not item.endswith(self.file_ending):
                raise fail(f"{item} does not end with the dataset's file ending {self.file_ending}")
            if isinstance(item, str) and not os.path.isfile(item):
                raise fail(f"{item} does not exist")
        try:
            infos = [_ImageInfo.of(im) for im in images]
            label_info = _ImageInfo.of(label) if label is not None else None
        except RuntimeError as e:
            raise fail(f"cannot read an image header: {e}") from None
        channels = sum(info.components for info in infos)
        if channels != len(self.channel_names):
            raise fail(f"{channels} channel(s) given ({len(images)} image(s)), but the dataset declares "
                       f"{len(self.channel_names)}: {self.channel_names}")
        reference = infos[0]
        dimension = reference.dimension
        if self._dimension is not None and dimension != self._dimension:
            raise fail(f"{dimension}-D images, but the dataset's earlier cases are {self._dimension}-D")
        for i, info in enumerate(infos[1:], start=1):
            if not info.same_geometry(reference):
                raise fail(f"channel {i} geometry differs from channel 0: {info.describe()} vs {reference.describe()}")
        for i, info in enumerate(infos):
            if info.pixel_id in (sitk.sitkComplexFloat32, sitk.sitkComplexFloat64):
                raise fail(f"channel {i} has complex pixels, which nnU-Net cannot read")
        if label_info is not None:
            if label_info.components != 1:
                raise fail(f"the label has {label_info.components} components per pixel; it must be scalar")
            if not label_info.same_geometry(reference):
                raise fail(f"label geometry differs from the image: {label_info.describe()} vs {reference.describe()}")
        label_image = None
        if label is not None:
            try:
                label_image = label if isinstance(label, sitk.Image) else sitk.ReadImage(label)
            except RuntimeError as e:
                raise fail(f"cannot read the label {label}: {e}") from None
            self._check_label_values(label_image, fail)
        self._dimension = dimension

        image_folder, label_folder = (os.path.join(self._temp_folder, f) for f in _FOLDERS[kind])
        jobs = [(self._prepared_image(im, infos[0]), os.path.join(image_folder, f"{case_id}_{i:04d}{self.file_ending}"))
                for i, im in enumerate(images)]
        if label is not None:
            prepared = label if isinstance(label, str) else self._prepared_label(label_image, infos[0])
            jobs.append((prepared, os.path.join(label_folder, f"{case_id}{self.file_ending}")))
        for _, destination in jobs:
            os.makedirs(os.path.dirname(destination), exist_ok=True)
        return jobs

    def _reference_label_job(self, case_id: str, reference_label: sitk.Image, image: ImageSource,
                             source: str) -> Tuple[ImageSource, str]:
        """The write job of a training case's true label in ``labelsTrReference``, checked like any label."""
        def fail(problem: str) -> ValueError:
            return ValueError(self._message(case_id, source, f"reference label: {problem}"))

        reference = _ImageInfo.of(image)
        info = _ImageInfo.of(reference_label)
        if info.components != 1 or not info.same_geometry(reference):
            raise fail(f"it must be scalar with the image's geometry: {info.describe()} vs {reference.describe()}")
        self._check_label_values(reference_label, fail)
        destination = os.path.join(self._temp_folder, REFERENCE_LABELS_DIR, f"{case_id}{self.file_ending}")
        os.makedirs(os.path.dirname(destination), exist_ok=True)
        return self._prepared_label(reference_label, reference), destination

    def _check_label_values(self, label: sitk.Image, fail) -> None:
        array = sitk.GetArrayViewFromImage(label)
        values = _unique_values(array)
        if np.issubdtype(values.dtype, np.floating) and not np.all(values == np.round(values)):
            raise fail(f"the label holds non-integer values, e.g. {values[values != np.round(values)][:5].tolist()}")
        unknown = sorted(set(values.astype(np.int64).tolist()) - set(self.label_values))
        if unknown:
            raise fail(f"label values {unknown[:10]} are not among the declared label values {self.label_values} "
                       f"({self.labels})")

    @staticmethod
    def _with_geometry(image: sitk.Image, reference: _ImageInfo) -> sitk.Image:
        """The image carrying exactly the reference geometry (differences are within tolerance already)."""
        if (image.GetSpacing(), image.GetOrigin(), image.GetDirection()) != (reference.spacing, reference.origin,
                                                                             reference.direction):
            image = sitk.Image(image)
            image.SetSpacing(reference.spacing)
            image.SetOrigin(reference.origin)
            image.SetDirection(reference.direction)
        return image

    def _prepared_image(self, item: ImageSource, reference: _ImageInfo) -> ImageSource:
        if isinstance(item, str):
            return item
        if item.GetPixelID() == sitk.sitkFloat64:
            item = sitk.Cast(item, sitk.sitkFloat32)
        elif item.GetPixelID() == sitk.sitkVectorFloat64:
            item = sitk.Cast(item, sitk.sitkVectorFloat32)
        return self._with_geometry(item, reference)

    def _prepared_label(self, label: sitk.Image, reference: _ImageInfo) -> sitk.Image:
        pixel_type = sitk.sitkUInt8 if max(self.label_values) <= 255 else sitk.sitkUInt16
        if label.GetPixelID() != pixel_type:
            label = sitk.Cast(label, pixel_type)
        return self._with_geometry(label, reference)


def add_writer_arguments(parser: argparse.ArgumentParser, example_id: int, default_name: str) -> None:
    """A converter's options that go straight to :class:`RawDatasetWriter`: ``-d`` / ``--dataset-id`` (required),
    ``--name`` (the dataset name, by default ``default_name``), ``-np`` / ``--num-processes`` and ``--overwrite``."""
    parser.add_argument("-d", "--dataset-id", type=int, required=True, help=f"nnU-Net dataset id, e.g. {example_id}")
    parser.add_argument("--name", help=f"dataset name (default: {default_name})")
    parser.add_argument("-np", "--num-processes", type=int, default=2, help="worker processes (default: 2)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing dataset folder")

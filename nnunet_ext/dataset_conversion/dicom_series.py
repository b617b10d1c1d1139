"""Reading DICOM series and pairing a label image with one, shared by the converters of DICOM sources
(NCI-ISBI 2013, NIH Pancreas-CT).

Slice order: the slices of a series are sorted by ImagePositionPatient projected on the slice normal (row x
column direction of ImageOrientationPatient), ascending, never by file name or instance number. The volume takes
its geometry from these headers: origin = position of the first sorted slice, spacing = PixelSpacing and the mean
slice step, direction = (row, column, normal). Two slices at one position (a duplicate) and a slice step that
differs from the mean step (a gap: missing slices) are errors naming the series, as are slices of one series with
different orientations, sizes or pixel spacings and a stack that is not along its normal (gantry tilt, shear).

Label pairing by physical position: a label belongs to a series when its voxel grid coincides with the volume's
(every label voxel centre within ``GRID_TOLERANCE`` voxels of an image voxel centre, one to one; axes may be
reordered or flipped, e.g. a label stored head-to-feet, :func:`grid_match`); it is then moved onto the image grid
by nearest-neighbour resampling, which is exact on coinciding grids. :func:`grid_problem` says why a label cannot
be paired (slice count, size or geometry), naming both files.
"""
import itertools
import os
import re
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import SimpleITK as sitk
from tqdm import tqdm

GRID_TOLERANCE = 0.1
"""Largest distance, in voxels, between points that should coincide: a label voxel centre and the image voxel
centre it is paired with; a slice's position and the line its series is stacked along."""

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference of direction cosines (and of pixel spacings, in mm) between the slices of one series."""

SLICE_STEP_TOLERANCE = 0.01
"""Largest relative deviation of a slice step from the mean step (larger: a gap, i.e. missing slices)."""


def files_under(root: str, suffix: str) -> List[str]:
    """Sorted non-hidden files under ``root`` whose name ends in ``suffix`` (any case); symbolic links are followed,
    every real folder is visited once."""
    found, seen = [], set()
    for folder, subfolders, files in os.walk(root, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            subfolders[:] = []
            continue
        seen.add(real)
        found += [os.path.join(folder, f) for f in files if f.lower().endswith(suffix) and not f.startswith(".")]
    return sorted(found)


@dataclass(frozen=True)
class Series:
    """One DICOM series, its slices sorted along the slice normal, and the geometry of the volume they form.

    ``size`` is (columns, rows, slices) and ``spacing`` / ``origin`` / ``direction`` are SimpleITK's (x, y, z),
    direction row-major with the columns (row direction, column direction, normal). ``positions`` are the
    ImagePositionPatient values projected on the normal (mm, ascending); ``instance_numbers`` are in the same order.
    """
    case_id: str
    folder: str
    files: Tuple[str, ...]
    instance_numbers: Tuple[Optional[int], ...]
    positions: Tuple[float, ...]
    size: Tuple[int, int, int]
    spacing: Tuple[float, float, float]
    origin: Tuple[float, float, float]
    direction: Tuple[float, ...]

    @property
    def instance_order(self) -> str:
        """How the instance numbers run along the normal: ``increasing``, ``decreasing``, ``not monotonic`` or
        ``incomplete`` (some missing or repeated)."""
        numbers = self.instance_numbers
        if None in numbers or len(set(numbers)) != len(numbers):
            return "incomplete"
        steps = np.diff(numbers)
        return "increasing" if (steps > 0).all() else "decreasing" if (steps < 0).all() else "not monotonic"


@dataclass(frozen=True)
class SliceHeader:
    """The header fields of one DICOM file that grouping, sorting and geometry need."""
    path: str
    series_uid: str
    patient_id: str
    instance_number: Optional[int]
    position: Tuple[float, ...]
    orientation: Tuple[float, ...]
    size: Tuple[int, int]
    pixel_spacing: Tuple[float, float]


def _numbers(reader: sitk.ImageFileReader, tag: str, count: int, path: str) -> Tuple[float, ...]:
    text = reader.GetMetaData(tag).strip() if reader.HasMetaDataKey(tag) else ""
    try:
        values = tuple(float(v) for v in text.split("\\"))
    except ValueError:
        values = ()
    if len(values) != count:
        raise ValueError(f"{path}: DICOM tag {tag} holds {text!r}, expected {count} numbers")
    return values


def read_slice_header(path: str) -> SliceHeader:
    """The header fields of one DICOM file that sorting and geometry need; ``ValueError`` naming the file if the
    file is not DICOM or lacks SeriesInstanceUID, ImagePositionPatient or ImageOrientationPatient."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    reader.SetImageIO("GDCMImageIO")
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        problem = [line for line in str(e).splitlines() if line.strip()][-1:]
        raise ValueError(f"{path}: cannot be read as a DICOM file ({' '.join(problem).strip()})") from None
    if not reader.HasMetaDataKey("0020|000e"):
        raise ValueError(f"{path}: the DICOM file has no SeriesInstanceUID (0020|000e)")
    instance = reader.GetMetaData("0020|0013").strip() if reader.HasMetaDataKey("0020|0013") else ""
    return SliceHeader(
        path=path, series_uid=reader.GetMetaData("0020|000e").strip(),
        patient_id=reader.GetMetaData("0010|0020").strip() if reader.HasMetaDataKey("0010|0020") else "",
        instance_number=int(float(instance)) if re.fullmatch(r"[+-]?\d+(\.0*)?", instance) else None,
        position=_numbers(reader, "0020|0032", 3, path), orientation=_numbers(reader, "0020|0037", 6, path),
        size=tuple(reader.GetSize()[:2]), pixel_spacing=tuple(reader.GetSpacing()[:2]))


def build_series(case_id: str, headers: Sequence[SliceHeader]) -> Series:
    """Sort one series' slices along the normal and derive the volume geometry; ``ValueError`` naming the series
    for mixed orientations, sizes or pixel spacings, fewer than two slices, two slices at one position, a gap
    (non-uniform steps) or slices that are not stacked along their normal (a sheared stack)."""
    folder = os.path.commonpath([os.path.dirname(h.path) for h in headers])
    first = headers[0]
    for h in headers[1:]:
        differs = [name for name, a, b in (("orientation", h.orientation, first.orientation),
                                           ("size", h.size, first.size),
                                           ("pixel spacing", h.pixel_spacing, first.pixel_spacing))
                   if not np.allclose(a, b, rtol=0, atol=ORIENTATION_TOLERANCE)]
        if differs:
            raise ValueError(f"DICOM series {folder} (case {case_id}): {' and '.join(differs)} of "
                             f"{os.path.basename(h.path)} differ from {os.path.basename(first.path)}")
    if len(headers) < 2:
        raise ValueError(f"DICOM series {folder} (case {case_id}) has a single slice; a volume needs two or more")
    row, column = np.array(first.orientation[:3]), np.array(first.orientation[3:])
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    ordered = sorted(headers, key=lambda h: float(np.dot(h.position, normal)))
    positions = np.array([np.dot(h.position, normal) for h in ordered])
    steps = np.diff(positions)
    dx, dy = first.pixel_spacing
    if steps.min() <= GRID_TOLERANCE * min(dx, dy):
        i = int(np.argmin(steps))
        raise ValueError(f"DICOM series {folder} (case {case_id}): {os.path.basename(ordered[i].path)} and "
                         f"{os.path.basename(ordered[i + 1].path)} lie at the same position along the slice normal")
    mean_step = (positions[-1] - positions[0]) / (len(positions) - 1)
    if np.abs(steps - mean_step).max() > SLICE_STEP_TOLERANCE * mean_step:
        i = int(np.argmax(np.abs(steps - mean_step)))
        raise ValueError(f"DICOM series {folder} (case {case_id}): slice steps are not uniform (mean "
                         f"{mean_step:.4g} mm, {steps[i]:.4g} mm between {os.path.basename(ordered[i].path)} and "
                         f"{os.path.basename(ordered[i + 1].path)}); slices are missing")
    offsets = np.array([h.position for h in ordered]) - np.array(ordered[0].position)
    in_plane = offsets - np.outer(offsets @ normal, normal)
    if np.abs(in_plane @ row).max() > GRID_TOLERANCE * dx or \
            np.abs(in_plane @ column).max() > GRID_TOLERANCE * dy:
        raise ValueError(f"DICOM series {folder} (case {case_id}): the slices are not stacked along their normal "
                         f"(gantry tilt or shear); this converter needs a regular volume")
    return Series(
        case_id=case_id, folder=folder, files=tuple(h.path for h in ordered),
        instance_numbers=tuple(h.instance_number for h in ordered), positions=tuple(positions.tolist()),
        size=(first.size[0], first.size[1], len(ordered)), spacing=(dx, dy, float(mean_step)),
        origin=tuple(float(v) for v in ordered[0].position),
        direction=tuple(np.column_stack([row, column, normal]).ravel().tolist()))


def case_from_path(header: SliceHeader, root: str, case_of: Callable[[str], Optional[str]]) -> Optional[str]:
    """The case a slice belongs to: ``case_of`` of the nearest folder above it (up to and including ``root``) for
    which it gives one, else ``case_of`` of the slice's PatientID; None if neither names a case."""
    folder = os.path.dirname(header.path)
    parts = [os.path.basename(os.path.normpath(root))] + os.path.relpath(folder, root).split(os.sep)
    for part in reversed(parts):
        case = case_of(part)
        if case is not None:
            return case
    return case_of(header.patient_id)


def scan_series(root: str, case_of: Callable[[str], Optional[str]], source_name: str, case_example: str,
                series_kind: str, progress: bool = True) -> Dict[str, Series]:
    """``{case: Series}`` of the ``*.dcm`` files under ``root``, one series per case.

    Slices are grouped by SeriesInstanceUID and a series is given to a case by :func:`case_from_path`. Reads
    headers only. ``ValueError`` for a series whose case cannot be told, a case with several series (the message
    names the source, e.g. ``NCI-ISBI``, an example case name and the one series each case has), or a broken
    series (:func:`build_series`).
    """
    groups: Dict[str, List[SliceHeader]] = {}
    for path in tqdm(files_under(root, ".dcm"), desc="reading DICOM headers", unit="file", disable=not progress):
        header = read_slice_header(path)
        groups.setdefault(header.series_uid, []).append(header)
    per_case: Dict[str, List[List[SliceHeader]]] = {}
    for uid, headers in groups.items():
        case = case_from_path(headers[0], root, case_of)
        if case is None:
            raise ValueError(f"DICOM series {os.path.dirname(headers[0].path)} (SeriesInstanceUID {uid}): no folder "
                             f"above it is named like an {source_name} case (e.g. {case_example}) and its PatientID "
                             f"{headers[0].patient_id!r} is not one either")
        per_case.setdefault(case, []).append(headers)
    series = {}
    for case, groups_of_case in sorted(per_case.items()):
        if len(groups_of_case) > 1:
            folders = sorted({os.path.dirname(h.path) for headers in groups_of_case for h in headers})
            raise ValueError(f"case {case} has {len(groups_of_case)} DICOM series ({', '.join(folders)}); "
                             f"{source_name} has {series_kind} per case: keep only that one under the input folder")
        series[case] = build_series(case, groups_of_case[0])
    return series


def read_series_image(series: Series) -> sitk.Image:
    """The pixels of a series in its sorted slice order, with the header geometry of :class:`Series`."""
    reader = sitk.ImageSeriesReader()
    reader.SetImageIO("GDCMImageIO")
    reader.SetFileNames(list(series.files))
    try:
        image = reader.Execute()
    except RuntimeError as e:
        raise ValueError(f"DICOM series {series.folder} (case {series.case_id}): cannot read the pixels ({e})") \
            from None
    if image.GetSize() != series.size or image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"DICOM series {series.folder} (case {series.case_id}): read {image.GetSize()} with "
                         f"{image.GetNumberOfComponentsPerPixel()} component(s), expected one value per pixel and "
                         f"size {series.size}")
    image.SetOrigin(series.origin)
    image.SetSpacing(series.spacing)
    image.SetDirection(series.direction)
    return image


# ---------------------------------------------------------------------------------------------- label pairing


@dataclass(frozen=True)
class Grid:
    """A voxel grid in SimpleITK's terms (x, y, z; direction row-major)."""
    size: Tuple[int, ...]
    spacing: Tuple[float, ...]
    origin: Tuple[float, ...]
    direction: Tuple[float, ...]

    @property
    def index_to_physical(self) -> np.ndarray:
        return np.array(self.direction).reshape(3, 3) @ np.diag(self.spacing)


def read_label_grid(path: str) -> Grid:
    """The voxel grid of a label file (NRRD, NIfTI, ...) from its header; ``ValueError`` naming the file if it is not
    a 3-D scalar image."""
    reader = sitk.ImageFileReader()
    reader.SetFileName(path)
    try:
        reader.ReadImageInformation()
    except RuntimeError as e:
        raise ValueError(f"{path}: cannot be read as a label image ({str(e).strip().splitlines()[-1]})") from None
    if reader.GetDimension() != 3 or reader.GetNumberOfComponents() != 1:
        raise ValueError(f"{path}: a label must be a 3-D scalar image, this one is {reader.GetDimension()}-D with "
                         f"{reader.GetNumberOfComponents()} component(s)")
    return Grid(tuple(reader.GetSize()), tuple(reader.GetSpacing()), tuple(reader.GetOrigin()),
                tuple(reader.GetDirection()))


def label_to_image_index(label: Grid, image: Grid) -> Tuple[np.ndarray, np.ndarray]:
    """(A, b) such that the continuous image index of label index i is A · i + b (both (x, y, z))."""
    to_index = np.linalg.inv(image.index_to_physical)
    return to_index @ label.index_to_physical, to_index @ (np.array(label.origin) - np.array(image.origin))


def grid_match(label: Grid, image: Grid) -> Optional[Tuple[float, bool]]:
    """Whether the label's voxels are the image's voxels, in any axis order or direction.

    Returns None if not; else (the largest distance, in image voxels, between a label voxel centre and the image
    voxel centre it belongs to, whether the two grids have the same axes). The map from label to image index is
    affine, so its largest deviation from the nearest signed permutation plus integer shift is reached at a corner.
    """
    linear, shift = label_to_image_index(label, image)
    permutation = np.round(linear)
    if not ((np.abs(permutation).sum(axis=0) == 1).all() and (np.abs(permutation).sum(axis=1) == 1).all()):
        return None
    corners = np.array(list(itertools.product(*[(0, n - 1) for n in label.size]))).T
    lattice = permutation @ corners + np.round(shift)[:, None]
    if not ((lattice.min(axis=1) == 0).all() and (lattice.max(axis=1) == np.array(image.size) - 1).all()):
        return None
    deviation = float(np.abs(linear @ corners + shift[:, None] - lattice).max())
    return deviation, bool((permutation == np.eye(3)).all() and (np.round(shift) == 0).all())


def grid_problem(label: Grid, image: Grid, match: Optional[Tuple[float, bool]], label_path: str,
                 series: Series) -> Optional[Tuple[str, str]]:
    """(problem code, description) where the label cannot be put on the series' grid (``match`` is
    :func:`grid_match`'s answer), else None."""
    where = f"DICOM series {series.folder} vs label {label_path}"
    if label.size[2] != image.size[2] and label.size[:2] == image.size[:2]:
        return "slice_count_mismatch", (f"the DICOM series has {image.size[2]} slices, the label {label.size[2]} "
                                        f"({where})")
    if match is not None and match[0] <= GRID_TOLERANCE:
        return None
    if sorted(label.size) != sorted(image.size):
        return "size_mismatch", f"image size {image.size}, label size {label.size} ({where})"
    if match is not None:
        return "geometry_mismatch", (f"label voxel centres lie up to {match[0]:.3g} voxels from the image's "
                                     f"(tolerance {GRID_TOLERANCE}) ({where})")
    origin = np.linalg.norm(np.array(label.origin) - np.array(image.origin))
    direction = np.abs(np.array(label.direction) - np.array(image.direction)).max()
    return "geometry_mismatch", (f"the label's voxel grid is not the image's: origins {origin:.3g} mm apart, "
                                 f"direction cosines differ by up to {direction:.3g}, spacing {_fmt(label.spacing)} "
                                 f"vs {_fmt(image.spacing)} ({where})")


def _fmt(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"

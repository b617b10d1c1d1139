"""GazeMedSeg fixation CSVs (spec §2.2): both exports (current and older), validated row by row."""
import csv
import os
from typing import Dict, List, Tuple

import numpy as np


_NAME_COLUMNS = ("IMAGE", "images")


_X, _Y, _DURATION, _INDEX = "CURRENT_FIX_X", "CURRENT_FIX_Y", "CURRENT_FIX_DURATION", "CURRENT_FIX_INDEX"


_HEIGHT, _WIDTH = "IMAGE_HEIGHT", "IMAGE_WIDTH"


def image_key(file_name: str) -> str:
    """The key that pairs CSV rows, image files and mask files: the base name without its extension.

    GazeMedSeg names every image ``<id>.jpg`` even where the image is a PNG or a DICOM slice (§2.2).
    """
    return os.path.splitext(os.path.basename(file_name.strip()))[0]


def read_gaze_csv(csv_path: str) -> Tuple[Dict[str, np.ndarray], Dict[str, Tuple[int, int]]]:
    """Fixations and image sizes of a GazeMedSeg CSV, keyed by :func:`image_key`.

    Both formats of §2.2 are read: the current one (``IMAGE`` … ``IMAGE_HEIGHT``, ``IMAGE_WIDTH``) and the
    older export (``images``, ``RECORDING_SESSION_LABEL``, no image size). Fixations of an image are an
    ``(n, 3)`` float64 array of columns x, y (normalised, origin top-left) and duration (ms), ordered by
    ``CURRENT_FIX_INDEX`` (file order where the column is absent). Sizes are ``(height, width)``; the dict is
    empty for the older format. Raises ``ValueError`` naming the file and line for a missing column, a
    non-numeric value, a coordinate outside [0, 1], a negative duration or sizes that disagree within an image.
    """
    rows: Dict[str, List[Tuple[float, float, float, float]]] = {}
    sizes: Dict[str, Tuple[int, int]] = {}
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        columns = reader.fieldnames or []
        name_column = next((c for c in _NAME_COLUMNS if c in columns), None)
        missing = [c for c in (_X, _Y, _DURATION) if c not in columns]
        if name_column is None or missing:
            raise ValueError(f"{csv_path}: not a GazeMedSeg fixation CSV: missing column(s) "
                             f"{(['IMAGE (or images)'] if name_column is None else []) + missing}; found {columns}")
        has_size = _HEIGHT in columns and _WIDTH in columns
        for line, row in enumerate(reader, start=2):
            def fail(problem: str) -> ValueError:
                return ValueError(f"{csv_path}, line {line} (image {row.get(name_column)!r}): {problem}")

            try:
                x, y, duration = (float(row[c]) for c in (_X, _Y, _DURATION))
                index = float(row[_INDEX]) if row.get(_INDEX) not in (None, "") else float(line)
            except (TypeError, ValueError):
                raise fail("non-numeric fixation value") from None
            if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
                raise fail(f"fixation ({x}, {y}) lies outside the image: coordinates must be in [0, 1]")
            if not duration >= 0:
                raise fail(f"negative or missing fixation duration {duration}")
            key = image_key(row[name_column] or "")
            if not key:
                raise fail("empty image name")
            rows.setdefault(key, []).append((index, x, y, duration))
            if has_size:
                try:
                    size = (_positive_int(row[_HEIGHT]), _positive_int(row[_WIDTH]))
                except (TypeError, ValueError):
                    raise fail(f"image size {row[_HEIGHT]!r} x {row[_WIDTH]!r} is not a positive integer") from None
                if sizes.setdefault(key, size) != size:
                    raise fail(f"image size {size} differs from {sizes[key]} on an earlier line of the same image")
    if not rows:
        raise ValueError(f"{csv_path}: no fixation rows")
    fixations = {}
    for key, values in rows.items():
        values.sort(key=lambda r: r[0])
        fixations[key] = np.array([r[1:] for r in values], dtype=np.float64)
    return fixations, sizes


def _positive_int(text: str) -> int:
    value = float(text)
    if value != int(value) or value < 1:
        raise ValueError(text)
    return int(value)

"""GazeSup's gaze heatmap (spec §2.3): duration-weighted fixations blurred with an isotropic Gaussian."""
import numpy as np
from scipy import ndimage


def gaze_heatmap(fixations: np.ndarray, height: int, width: int, sigma: float) -> np.ndarray:
    """Duration-weighted Gaussian gaze heatmap in [0, 1], ``(height, width)`` float32 (§2.3).

    Every fixation adds its duration (ms) to the pixel that contains it — column ``floor(x·W)``, row
    ``floor(y·H)``, clipped so that x = 1 (or y = 1) lands in the last column (row) — and the canvas is blurred
    with SciPy's ``gaussian_filter`` (σ in native pixels, truncate 4σ, reflect boundary), then min-max
    normalised. ``fixations`` is an ``(n, 3)`` array of x, y, duration, as :func:`read_gaze_csv` returns per image.
    """
    fixations = np.asarray(fixations, dtype=np.float64)
    if fixations.ndim != 2 or fixations.shape[1] != 3 or len(fixations) == 0:
        raise ValueError(f"fixations must be a non-empty (n, 3) array of x, y, duration; got shape {fixations.shape}")
    if height < 1 or width < 1 or sigma <= 0:
        raise ValueError(f"height, width and sigma must be positive, got {height}, {width}, {sigma}")
    x, y, duration = fixations.T
    if np.any((x < 0) | (x > 1) | (y < 0) | (y > 1)):
        raise ValueError("fixation coordinates must lie in [0, 1]")
    columns = np.clip(np.floor(x * width).astype(np.int64), 0, width - 1)
    rows = np.clip(np.floor(y * height).astype(np.int64), 0, height - 1)
    canvas = np.zeros((height, width), dtype=np.float64)
    np.add.at(canvas, (rows, columns), duration)
    blurred = ndimage.gaussian_filter(canvas, sigma=sigma)
    low, high = blurred.min(), blurred.max()
    if not high > low:
        raise ValueError("the gaze heatmap is constant (all fixation durations are 0?); it cannot be normalised")
    return ((blurred - low) / (high - low)).astype(np.float32)

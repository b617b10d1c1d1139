"""Per-dataset gaze settings of GazeSup (σ of §2.3, level thresholds of §2.5), as presets with overrides."""
from dataclasses import dataclass
from typing import Dict, Optional, Sequence, Tuple

from nnunet_ext.gaze.levels import level_thresholds


@dataclass(frozen=True)
class GazePreset:
    """Per-dataset constants of GazeSup: Gaussian σ (§2.3) and the thresholds per number of levels (§2.5).

    Thresholds are listed in the paper's level order (``configs/static.py``); :func:`level_thresholds` sorts
    them for the ordinal encoding.
    """
    sigma: float
    thresholds: Dict[int, Tuple[float, ...]]
    default_levels: int = 2


PRESETS: Dict[str, GazePreset] = {
    "kvasir": GazePreset(sigma=70.0, thresholds={1: (0.5,), 2: (0.5, 0.3), 3: (0.5, 0.3, 0.4),
                                                 4: (0.5, 0.3, 0.367, 0.433), 5: (0.5, 0.3, 0.35, 0.4, 0.45)}),
    "nci_isbi": GazePreset(sigma=50.0, thresholds={2: (0.2, 0.4)}),
}


def resolve_settings(preset: str = "kvasir", sigma: Optional[float] = None,
                     thresholds: Optional[Sequence[float]] = None,
                     levels: Optional[int] = None) -> Tuple[float, Tuple[float, ...]]:
    """σ and the (ascending) level thresholds from a preset, overridden by explicit values.

    Without ``thresholds``, the preset's thresholds for ``levels`` levels (its default number if None) are
    used; with them, ``levels`` (if given) must equal their number.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown gaze preset {preset!r}; choose one of {sorted(PRESETS)}")
    chosen = PRESETS[preset]
    if thresholds:
        if levels is not None and levels != len(thresholds):
            raise ValueError(f"--levels {levels} disagrees with the {len(thresholds)} thresholds given")
        ordered = level_thresholds(thresholds)
    else:
        levels = chosen.default_levels if levels is None else levels
        if levels not in chosen.thresholds:
            raise ValueError(f"preset {preset!r} defines thresholds for {sorted(chosen.thresholds)} levels, not "
                             f"{levels}; pass --thresholds explicitly")
        ordered = level_thresholds(chosen.thresholds[levels])
    sigma = chosen.sigma if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    return sigma, ordered

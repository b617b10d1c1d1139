"""GazeSup's dense-CRF refinement of a gaze heatmap (spec §2.4): a bilateral Potts kernel only, the soft
foreground marginal after 10 mean-field iterations (``pydensecrf2``, the ``[gaze]`` extra)."""
from dataclasses import dataclass
from types import ModuleType

import numpy as np


@dataclass(frozen=True)
class CrfParameters:
    """Dense-CRF settings of GazeSup (§2.4): bilateral Potts kernel only, soft marginal after 10 iterations.

    ``sxy`` is the spatial standard deviation in pixels, ``srgb`` the colour standard deviation in 8-bit grey
    levels, ``compat`` the Potts weight; ``unary_clip`` is the probability floor of the unary
    ``-log(clip(P, unary_clip, 1))`` (pydensecrf's ``unary_from_softmax`` default).
    """
    sxy: float = 80.0
    srgb: float = 13.0
    compat: float = 1.0
    iterations: int = 10
    unary_clip: float = 1e-5


def require_densecrf() -> ModuleType:
    """The ``pydensecrf.densecrf`` module, or an ``ImportError`` that says how to install it."""
    try:
        import pydensecrf.densecrf as dcrf
    except ImportError:
        raise ImportError("the dense-CRF step of the gaze pipeline needs the package pydensecrf2 (it imports as "
                          "pydensecrf): pip install nnunet_ext[gaze], or pip install pydensecrf2 (built from "
                          "source: needs a C++ compiler)") from None
    return dcrf


def crf_refine(image_rgb: np.ndarray, heatmap: np.ndarray, sxy: float = CrfParameters.sxy,
               srgb: float = CrfParameters.srgb, compat: float = CrfParameters.compat,
               iterations: int = CrfParameters.iterations, unary_clip: float = CrfParameters.unary_clip) -> np.ndarray:
    """Dense-CRF refinement of a gaze heatmap: the soft foreground marginal in [0, 1], float32 (§2.4).

    Two labels with probabilities ``[1 - h, h]`` give the unary ``-log(clip(P, unary_clip, 1))``; the only
    pairwise term is pydensecrf's bilateral kernel (positions / ``sxy``, colours / ``srgb``, diagonal kernel,
    symmetric normalisation) with Potts weight ``compat``; after ``iterations`` mean-field steps the marginal
    Q(foreground) is returned — not the arg-max, which would lose the soft map the levels threshold.
    """
    dcrf = require_densecrf()
    image_rgb = np.asarray(image_rgb)
    heatmap = np.asarray(heatmap, dtype=np.float64)
    if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
        raise ValueError(f"image_rgb must be an (H, W, 3) uint8 array, got {image_rgb.shape} {image_rgb.dtype}")
    if heatmap.shape != image_rgb.shape[:2]:
        raise ValueError(f"heatmap shape {heatmap.shape} differs from the image's {image_rgb.shape[:2]}")
    if heatmap.min() < 0 or heatmap.max() > 1:
        raise ValueError("the heatmap must lie in [0, 1]")
    height, width = heatmap.shape
    probabilities = np.stack([1.0 - heatmap, heatmap]).reshape(2, -1)
    unary = np.ascontiguousarray(-np.log(np.clip(probabilities, unary_clip, 1.0)), dtype=np.float32)
    crf = dcrf.DenseCRF2D(width, height, 2)
    crf.setUnaryEnergy(unary)
    crf.addPairwiseBilateral(sxy=sxy, srgb=srgb, rgbim=np.array(image_rgb, order="C"), compat=compat)
    marginals = np.asarray(crf.inference(iterations), dtype=np.float32)
    return np.clip(marginals[1].reshape(height, width), 0.0, 1.0)

"""Gaze pseudo-labels of GazeSup (GazeMedSeg, Zhong et al., MICCAI 2024) and the ``nnunet_ext gaze`` command.

GazeSup trains a segmentation network from eye-gaze alone. The gaze of one annotator on one image becomes a
pseudo-label in three steps (specs/cmc_gazesup_ltuda.md §2.3-2.5), each a pure function here:

1. :func:`gaze_heatmap` — a duration-weighted fixation map at the image's native resolution, blurred with an
   isotropic Gaussian (σ = 70 px Kvasir, 50 px NCI-ISBI; SciPy ``gaussian_filter`` defaults: truncate 4σ,
   ``reflect`` boundary) and min-max normalised to [0, 1] (§2.3).
2. :func:`crf_refine` — a dense CRF (Krähenbühl & Koltun, via ``pydensecrf2``) with unary
   ``-log(clip([1 - h, h], 1e-5, 1))``, a bilateral Potts term only (sxy 80, srgb 13, compat 1), 10 mean-field
   iterations; the foreground *marginal* Q is kept as a soft map in [0, 1] (§2.4).
3. :func:`level_masks` — the soft map thresholded at several levels, encoded as one ordinal map whose value is
   the number of thresholds reached (≥, §2.5); :func:`decode_levels` gives back the binary mask of one level.
   The thresholds are sorted ascending, so level k is "ordinal ≥ k" and the highest level is the strictest
   (smallest) mask. This is how the nnU-Net raw datasets store the levels as nested regions (§2.12). Note
   that the paper numbers Kvasir's levels the other way round (its level 1 is the 0.5 mask); the thresholds
   of every level are therefore always written out next to the level number.

Bugs of the original notebooks that are not copied (§2.3, §2.11): fixation coordinates are mapped to the pixel
that contains them (``floor(x·W)``, clipped to the image), so x = 0 cannot wrap to the last column; maps are
kept as floats between the steps instead of being stored as 8-bit JPEG and read back.

The package holds one module per step (:mod:`~nnunet_ext.gaze.heatmaps`, :mod:`~nnunet_ext.gaze.crf`,
:mod:`~nnunet_ext.gaze.levels`), the CSV and image readers, the per-dataset settings, the pseudo-label of one
image with its quality (:mod:`~nnunet_ext.gaze.pseudo_labels`) and the command (:mod:`~nnunet_ext.gaze.command`).
The names below are re-exported here, so ``from nnunet_ext import gaze; gaze.level_masks(...)`` works.

``nnunet_ext gaze`` runs the three steps on a GazeMedSeg CSV and a folder of images, in parallel, and writes:

* ``heatmaps/<id>.png`` and ``crf/<id>.png`` — the soft maps as 16-bit PNG (value / 65535);
* ``levels/<id>.png`` — the ordinal level map, uint8;
* ``previews/<id>.png`` — image + heatmap + level contours (+ true mask contour) for a person to look at;
* ``quality_report.json`` — with ``--masks``: per-image and mean Dice / IoU against the true masks of the
  heatmap and the CRF map (both binarised at ≥ 0.5, the threshold of the notebooks' quality figures, §2.4)
  and of every level mask; and the fraction of the image each map covers. The same table is printed.
"""
from nnunet_ext.gaze.command import add_gaze_setting_arguments, list_images, map_in_pool, run_pipeline
from nnunet_ext.gaze.crf import CrfParameters, crf_refine, require_densecrf
from nnunet_ext.gaze.fixations import image_key, read_gaze_csv
from nnunet_ext.gaze.heatmaps import gaze_heatmap
from nnunet_ext.gaze.images import grey_to_rgb, read_mask, read_rgb
from nnunet_ext.gaze.levels import (binary_dataset_json, decode_levels, gaze_dataset_entries, gaze_labels,
                                    gaze_level_count, level_masks, level_thresholds)
from nnunet_ext.gaze.pseudo_labels import PseudoLabel, map_names, overlap, pseudo_label, quality
from nnunet_ext.gaze.settings import PRESETS, GazePreset, resolve_settings

__all__ = ["CrfParameters", "GazePreset", "PRESETS", "PseudoLabel", "add_gaze_setting_arguments",
           "binary_dataset_json", "crf_refine", "decode_levels", "gaze_dataset_entries", "gaze_heatmap",
           "gaze_labels", "gaze_level_count", "grey_to_rgb", "image_key", "level_masks", "level_thresholds",
           "list_images", "map_in_pool", "map_names", "overlap", "pseudo_label", "quality", "read_gaze_csv",
           "read_mask", "read_rgb", "require_densecrf", "resolve_settings", "run_pipeline"]

"""``nnunet_ext evaluate``: Dice, Jaccard, HD95, ASD and ASSD of a prediction folder against a reference folder.

nnU-Net's own evaluation reports overlap only. Semi-supervised segmentation papers also report surface
distances, so this module adds them with definitions that match medpy's ``metric.binary`` functions, which
most of those papers use, while taking the voxel spacing from the reference image (distances in mm;
``--voxel-units`` gives voxels, for comparison with papers that report those).

Definitions, per case and label (``pred`` and ``ref`` are the binary masks of one label):

* Dice = 2·|pred ∩ ref| / (|pred| + |ref|); Jaccard = |pred ∩ ref| / |pred ∪ ref|.
* Surface voxels of a mask: the mask minus its binary erosion with the connectivity-1 structuring element
  (voxels on the border of the image count as surface). Surface distances: for each surface voxel of one
  mask, the Euclidean distance (scaled by the spacing) to the nearest surface voxel of the other mask.
* HD95: 95th percentile of the distances of both directions pooled together.
* ASD: mean distance from the prediction's surface to the reference surface (one direction).
* ASSD: mean of ASD(pred → ref) and ASD(ref → pred), as medpy up to 0.4 computes it (medpy 0.5 averages the
  pooled distances of both directions instead, which weights each direction by its number of surface voxels).

Empty-mask rule: Both masks empty: Dice = Jaccard = 1 and HD95 = ASD = ASSD = 0. Exactly one mask empty:
Dice = Jaccard = 0 and HD95, ASD and ASSD are undefined (NaN, written as null in the JSON), never 0; the means
over cases use only the finite distances and n_undefined_distance counts the cases left out.

The distance transform runs on the union bounding box of both masks plus a margin, which gives the same
distances as on the whole image and keeps large volumes fast.

Output: a ``summary.json`` shaped like nnU-Net's (``metric_per_case``, ``mean`` per label, ``foreground_mean``)
plus ``units`` and ``empty_mask_rule``, and a table on stdout.
"""
from nnunet_ext.evaluation.folders import evaluate_case, evaluate_folders, format_table, pair_files
from nnunet_ext.evaluation.metrics import EMPTY_MASK_RULE, binary_metrics, surface_distances
from nnunet_ext.evaluation.segmentations import image_ending, read_segmentation

__all__ = ["EMPTY_MASK_RULE", "binary_metrics", "evaluate_case", "evaluate_folders", "format_table", "image_ending",
           "pair_files", "read_segmentation", "surface_distances"]

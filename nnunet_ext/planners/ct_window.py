"""A fixed CT intensity window instead of nnU-Net's dataset-wide percentiles (``-pl nnUNetPlannerCTWindow``).

nnU-Net's ``CTNormalization`` clips every CT channel to the 0.5 and 99.5 percentiles of the training foreground
and z-scores it with the foreground's mean and standard deviation. In a partially labeled union the foreground is
each source's one annotated organ, so those statistics describe a mix of organs that depends on which sources were
joined. Papers instead fix a window: LTUDA clips to [−325, 325] HU and divides by 325, mapping it onto [−1, 1]
(spec §3.7, §3.11). This planner writes that window into the plans' intensity properties (percentile_00_5 and
percentile_99_5 the window's ends, mean its centre, std its half-width), so the stock ``CTNormalization`` of
nnU-Net's preprocessor and predictor computes ``(clip(x, lo, hi) − (lo + hi) / 2) / ((hi − lo) / 2)`` with no class
of ours in the plans. Only channels nnU-Net normalises as CT (channel name ``CT``) change; a dataset without one is
refused. Another window is a two-line subclass setting ``window``.
"""
from typing import List, Tuple, Union

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization
from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme


class nnUNetPlannerCTWindow(ExperimentPlanner):
    """nnU-Net's planner with the CT window ``window`` (HU; LTUDA's [−325, 325]) as the CT channels' intensity
    properties; plans identifier ``nnUNetPlansCTWindow``."""

    window: Tuple[float, float] = (-325.0, 325.0)

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = "nnUNetPlansCTWindow",
                 overwrite_target_spacing: Union[List[float], Tuple[float, ...]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)
        lower, upper = (float(v) for v in self.window)
        if not lower < upper:
            raise ValueError(f"{type(self).__name__}.window must be (lower, upper) with lower < upper, got "
                             f"{self.window}")
        channels = self.dataset_json.get("channel_names", self.dataset_json.get("modality", {}))
        ct_channels = [c for c, name in channels.items() if get_normalization_scheme(name) is CTNormalization]
        if not ct_channels:
            raise ValueError(f"{self.raw_dataset_folder}/dataset.json names no CT channel (channel_names "
                             f"{channels}); {type(self).__name__} only windows channels named 'CT'")
        properties = self.dataset_fingerprint["foreground_intensity_properties_per_channel"]
        for channel in ct_channels:
            properties[str(channel)].update(percentile_00_5=lower, percentile_99_5=upper, mean=(lower + upper) / 2,
                                            std=(upper - lower) / 2)

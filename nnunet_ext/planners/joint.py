"""Joint planning of two partner datasets (DESIGN.md §8.1): one spacing, patch size, topology and batch size for
both, each with its own intensities and normalisation.

nnU-Net's planner is run once, for the primary, on the two fingerprints together (the spacings and cropped
shapes of both datasets' cases), so the target spacing, the median shape, and therefore the patch size, the
network and the batch size are chosen for the union of the cases. The partner's plans are a copy with the
partner's own dataset name, reader/writer, foreground intensity properties and normalisation schemes, as nnU-Net's
planner determines them from the partner's own ``dataset.json`` and fingerprint (CT normalisation for CT,
z-score for MR; ``nnUNetv2_move_plans_between_datasets`` would keep the primary's and is wrong here). Both plans
record the roles under ``nnunet_ext_joint``.
"""
import shutil
from copy import deepcopy
from os.path import join
from typing import List, Optional, Tuple, Type

from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner
from nnunetv2.paths import nnUNet_preprocessed

from nnunet_ext.partners import JOINT_PLANS_KEY, check_partners

FINGERPRINT_CASE_KEYS = ("spacings", "shapes_after_crop")
"""Per-case fingerprint entries the joint planner sees from both datasets."""


def plan_jointly(primary: str, partner: str, planner_class: Type[ExperimentPlanner],
                 gpu_memory_target_in_gb: Optional[float] = None, preprocessor_name: str = "DefaultPreprocessor",
                 overwrite_target_spacing: Optional[List[float]] = None,
                 overwrite_plans_name: Optional[str] = None) -> Tuple[dict, dict]:
    """Plan ``primary`` and ``partner`` (dataset names, fingerprints extracted) together; write both plans files
    and return ``(primary_plans, partner_plans)``.

    Raises:
        ValueError: the two datasets do not name each other as partners, or differ in labels, regions or
            channel count (:func:`nnunet_ext.partners.check_partners`).
    """
    kwargs = {"preprocessor_name": preprocessor_name, "overwrite_target_spacing": overwrite_target_spacing}
    if gpu_memory_target_in_gb is not None:
        kwargs["gpu_memory_target_in_gb"] = gpu_memory_target_in_gb
    if overwrite_plans_name is not None:
        kwargs["plans_name"] = overwrite_plans_name
    planners = [planner_class(name, **kwargs) for name in (primary, partner)]
    check_partners((primary, partner), (planners[0].dataset_json, planners[1].dataset_json))

    joint = planners[0]
    own_fingerprint = joint.dataset_fingerprint
    joint.dataset_fingerprint = dict(own_fingerprint, **{
        key: list(own_fingerprint[key]) + list(planners[1].dataset_fingerprint[key]) for key in FINGERPRINT_CASE_KEYS})
    primary_plans = joint.plan_experiment()
    joint.dataset_fingerprint = own_fingerprint

    partner_planner = planners[1]
    partner_plans = deepcopy(primary_plans)
    schemes, masks = partner_planner.determine_normalization_scheme_and_whether_mask_is_used_for_norm()
    partner_plans.update(
        dataset_name=partner_planner.dataset_name,
        image_reader_writer=partner_planner.determine_reader_writer().__name__,
        foreground_intensity_properties_per_channel=partner_planner.dataset_fingerprint[
            "foreground_intensity_properties_per_channel"])
    for configuration in partner_plans["configurations"].values():
        if "normalization_schemes" in configuration:
            configuration.update(normalization_schemes=schemes, use_mask_for_norm=masks)
    shutil.copy(join(partner_planner.raw_dataset_folder, "dataset.json"),
                join(nnUNet_preprocessed, partner, "dataset.json"))
    roles = {"primary": primary, "partner": partner}
    for planner, plans in ((joint, primary_plans), (partner_planner, partner_plans)):
        plans[JOINT_PLANS_KEY] = roles
        planner.plans = plans
        planner.save_plans(plans)
    return primary_plans, partner_plans

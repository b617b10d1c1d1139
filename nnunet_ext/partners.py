"""Two nnU-Net datasets that train one model (DESIGN.md §3, §8.1): how they name each other and what they must
share.

Each raw ``dataset.json`` names its partner's folder under ``nnunet_ext_partner`` (written by the AMOS and
MS-CMRSeg converters). Joint planning (``nnunet_ext plan_and_preprocess -d PRIMARY PARTNER --joint``) records the
roles in both plans under ``nnunet_ext_joint`` (``{"primary": name, "partner": name}``): the primary is the
dataset a trainer is started on, the partner the one whose cases it adds. The two must have the same labels
(and regions) and the same number of input channels; their plans must agree in everything that shapes the
network and its patches.
"""
from os.path import isfile, join
from typing import Dict, List, Tuple

from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.paths import nnUNet_preprocessed
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

PARTNER_KEY = "nnunet_ext_partner"
"""dataset.json key naming the partner dataset's folder (``DatasetXXX_Name``)."""
JOINT_PLANS_KEY = "nnunet_ext_joint"
"""Plans key holding ``{"primary": name, "partner": name}`` of a joint planning."""
SHARED_CONFIGURATION_KEYS = ("spacing", "patch_size", "architecture")
"""Configuration entries two jointly planned datasets must share (normalisation and intensities are their own;
the partner's batch size is the primary's, whatever its plans say)."""
SHARED_PLANS_KEYS = ("transpose_forward", "transpose_backward")


def label_set_problems(names: Tuple[str, str], dataset_jsons: Tuple[dict, dict]) -> List[str]:
    """What keeps two datasets from training one model: different labels, regions or channel counts."""
    problems = []
    for key in ("labels", "regions_class_order"):
        values = [d.get(key) for d in dataset_jsons]
        if values[0] != values[1]:
            problems.append(f"their {key} differ ({names[0]}: {values[0]}; {names[1]}: {values[1]})")
    channels = [len(d.get("channel_names", d.get("modality", {}))) for d in dataset_jsons]
    if channels[0] != channels[1]:
        problems.append(f"their channel counts differ ({names[0]}: {channels[0]}; {names[1]}: {channels[1]})")
    return problems


def check_partners(names: Tuple[str, str], dataset_jsons: Tuple[dict, dict]) -> None:
    """Raise ValueError unless the two raw datasets name each other and can train one model."""
    problems = label_set_problems(names, dataset_jsons)
    for (name, dataset_json), other in zip(zip(names, dataset_jsons), names[::-1]):
        named = dataset_json.get(PARTNER_KEY)
        if named != other:
            problems.append(f"the dataset.json of {name} names {named!r} as its partner ({PARTNER_KEY}), not {other}")
    if problems:
        raise ValueError(f"{names[0]} and {names[1]} cannot be planned jointly: " + "; ".join(problems) + ".")


def joint_roles(plans: dict) -> Dict[str, str]:
    """``{"primary": name, "partner": name}`` of jointly planned plans; ValueError naming the plans otherwise."""
    roles = plans.get(JOINT_PLANS_KEY)
    if not roles:
        raise ValueError(f"The plans {plans['plans_name']} of {plans['dataset_name']} were not planned jointly with a "
                         f"partner dataset. Run 'nnunet_ext plan_and_preprocess -d PRIMARY PARTNER --joint' first.")
    return roles


def plans_disagreements(primary: dict, partner: dict, configuration: str) -> List[str]:
    """Entries of two plans that must be equal for one network to train on both, and are not."""
    problems = [f"{key} ({primary.get(key)} vs {partner.get(key)})" for key in SHARED_PLANS_KEYS
                if primary.get(key) != partner.get(key)]
    if configuration not in partner["configurations"]:
        return problems + [f"configuration {configuration} exists only in {primary['dataset_name']}'s plans"]
    ours, theirs = (PlansManager(p).get_configuration(configuration).configuration for p in (primary, partner))
    return problems + [f"{configuration}.{key}" for key in SHARED_CONFIGURATION_KEYS if ours.get(key) != theirs.get(key)]


def partner_of(plans: dict, dataset_json: dict, configuration: str) -> Tuple[dict, dict]:
    """``(plans, dataset.json)`` of the partner of the primary dataset of ``plans``, from nnUNet_preprocessed.

    Raises:
        ValueError: the plans are not joint plans, or belong to the partner (the message names the primary to
            train instead), or the partner's plans or labels disagree with these.
        FileNotFoundError: the partner has not been planned.
    """
    roles = joint_roles(plans)
    name, partner = plans["dataset_name"], roles["partner"]
    if roles["primary"] != name:
        raise ValueError(f"{name} is the partner of {roles['primary']} in the joint plans {plans['plans_name']}: "
                         f"train on {roles['primary']} (nnUNetv2_train {roles['primary']} ...), which trains on both "
                         f"datasets and writes {name}'s results folder too.")
    folder = join(nnUNet_preprocessed, partner)
    plans_file = join(folder, plans["plans_name"] + ".json")
    if not isfile(plans_file):
        raise FileNotFoundError(f"The partner {partner} of {name} has no plans {plans_file}; run 'nnunet_ext "
                                f"plan_and_preprocess -d {name} {partner} --joint'.")
    partner_plans, partner_json = load_json(plans_file), load_json(join(folder, "dataset.json"))
    problems = label_set_problems((name, partner), (dataset_json, partner_json))
    disagreements = plans_disagreements(plans, partner_plans, configuration)
    if disagreements:
        problems.append(f"their plans {plans['plans_name']} disagree in {', '.join(disagreements)}")
    if problems:
        raise ValueError(f"{name} and its partner {partner} cannot train one model: " + "; ".join(problems) +
                         f". Plan them jointly again ('nnunet_ext plan_and_preprocess -d {name} {partner} --joint').")
    return partner_plans, partner_json

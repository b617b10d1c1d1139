"""An ``nnUNetPredictor`` around a network in memory.

nnU-Net's predictor normally rebuilds the network from a results folder (plans.json, dataset.json, checkpoint).
The benchmark and the tests predict with networks they just built or trained; ``manual_initialization`` takes
such a network with the plans and the dataset.json the predictor of that model would read.
"""
from typing import Optional, Tuple

import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager


def predictor_for_network(network: torch.nn.Module, plans_manager: PlansManager,
                          configuration_manager: ConfigurationManager, dataset_json: dict, trainer_name: str,
                          device: torch.device, use_gaussian: bool = True,
                          mirror_axes: Optional[Tuple[int, ...]] = None) -> nnUNetPredictor:
    """nnU-Net's sliding-window predictor for ``network`` (in ``eval()`` mode, deep supervision off), with
    mirroring over ``mirror_axes`` (``None``: none) and nnU-Net's default tile step 0.5."""
    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=use_gaussian, use_mirroring=mirror_axes is not None,
                                perform_everything_on_device=device.type == "cuda", device=device, verbose=False,
                                verbose_preprocessing=False, allow_tqdm=False)
    predictor.manual_initialization(network.to(device), plans_manager, configuration_manager, None, dataset_json,
                                    trainer_name, mirror_axes)
    return predictor

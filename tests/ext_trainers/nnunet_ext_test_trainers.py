"""Short-schedule variants living OUTSIDE the package, found by nnU-Net through ``nnUNet_extTrainer``.

They only change the schedule in ``__init__``, as nnU-Net's own ``_5epochs`` variants do. The number of
epochs can be raised with ``NNUNET_EXT_TEST_EPOCHS`` so that a test can continue a finished run with ``--c``.
"""
import os

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunet_ext.trainers import (nnUNetTrainerCMC, nnUNetTrainerDTC, nnUNetTrainerGazeSup, nnUNetTrainerGazeSup_pure,
                                 nnUNetTrainerLTUDA,
                                 nnUNetTrainerMAML, nnUNetTrainerMarginal, nnUNetTrainerMeanTeacher, nnUNetTrainerUAMT,
                                 nnUNetTrainerUGMCL)


def _short(cls):
    class Short(cls):
        def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                     device: torch.device = torch.device("cuda")):
            super().__init__(plans, configuration, fold, dataset_json, device)
            self.num_epochs = int(os.environ.get("NNUNET_EXT_TEST_EPOCHS", 2))
            self.num_iterations_per_epoch = 3
            self.num_val_iterations_per_epoch = 1

    Short.__name__ = Short.__qualname__ = f"{cls.__name__}_smoke"
    return Short


nnUNetTrainerMeanTeacher_smoke = _short(nnUNetTrainerMeanTeacher)
nnUNetTrainerUAMT_smoke = _short(nnUNetTrainerUAMT)
nnUNetTrainerDTC_smoke = _short(nnUNetTrainerDTC)
nnUNetTrainerUGMCL_smoke = _short(nnUNetTrainerUGMCL)
nnUNetTrainerGazeSup_smoke = _short(nnUNetTrainerGazeSup)
nnUNetTrainerGazeSup_pure_smoke = _short(nnUNetTrainerGazeSup_pure)
nnUNetTrainerCMC_smoke = _short(nnUNetTrainerCMC)
nnUNetTrainerMAML_smoke = _short(nnUNetTrainerMAML)
nnUNetTrainer_smoke = _short(nnUNetTrainer)
nnUNetTrainerMarginal_smoke = _short(nnUNetTrainerMarginal)
nnUNetTrainerLTUDA_smoke = _short(nnUNetTrainerLTUDA)

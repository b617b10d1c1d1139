"""Every nnunet_ext trainer, importable as ``from nnunet_ext.trainers import nnUNetTrainerDTC``."""
from nnunet_ext.trainers.nnUNetTrainerDTC import nnUNetTrainerDTC, nnUNetTrainerDTC_paper
from nnunet_ext.trainers.nnUNetTrainerGazeSup import (nnUNetTrainerGazeSup, nnUNetTrainerGazeSup_flipsOnly,
                                                      nnUNetTrainerGazeSup_paper, nnUNetTrainerGazeSup_pure)
from nnunet_ext.trainers.nnUNetTrainerMeanTeacher import nnUNetTrainerMeanTeacher, nnUNetTrainerMeanTeacher_paper
from nnunet_ext.trainers.nnUNetTrainerUAMT import nnUNetTrainerUAMT, nnUNetTrainerUAMT_paper
from nnunet_ext.trainers.nnUNetTrainerUGMCL import nnUNetTrainerUGMCL, nnUNetTrainerUGMCL_paper

__all__ = ["nnUNetTrainerMeanTeacher", "nnUNetTrainerUAMT", "nnUNetTrainerDTC", "nnUNetTrainerUGMCL",
           "nnUNetTrainerMeanTeacher_paper", "nnUNetTrainerUAMT_paper", "nnUNetTrainerDTC_paper",
           "nnUNetTrainerUGMCL_paper", "nnUNetTrainerGazeSup", "nnUNetTrainerGazeSup_pure",
           "nnUNetTrainerGazeSup_flipsOnly", "nnUNetTrainerGazeSup_paper"]

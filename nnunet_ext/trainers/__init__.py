"""Every nnunet_ext trainer, importable as ``from nnunet_ext.trainers import nnUNetTrainerDTC``."""
from nnunet_ext.trainers.nnUNetTrainerDTC import nnUNetTrainerDTC
from nnunet_ext.trainers.nnUNetTrainerMeanTeacher import nnUNetTrainerMeanTeacher
from nnunet_ext.trainers.nnUNetTrainerUAMT import nnUNetTrainerUAMT
from nnunet_ext.trainers.nnUNetTrainerUGMCL import nnUNetTrainerUGMCL

__all__ = ["nnUNetTrainerDTC", "nnUNetTrainerMeanTeacher", "nnUNetTrainerUAMT", "nnUNetTrainerUGMCL"]

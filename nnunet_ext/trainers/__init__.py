"""Every nnunet_ext trainer, importable as ``from nnunet_ext.trainers import nnUNetTrainerDTC``."""
from nnunet_ext.trainers.nnUNetTrainerCMC import nnUNetTrainerCMC, nnUNetTrainerCMC_mseCAC, nnUNetTrainerCMC_sortedCSC
from nnunet_ext.trainers.nnUNetTrainerDTC import nnUNetTrainerDTC, nnUNetTrainerDTC_dropout, nnUNetTrainerDTC_paper
from nnunet_ext.trainers.nnUNetTrainerGazeSup import (nnUNetTrainerGazeSup, nnUNetTrainerGazeSup_flipsOnly,
                                                      nnUNetTrainerGazeSup_paper, nnUNetTrainerGazeSup_pure)
from nnunet_ext.trainers.nnUNetTrainerLTUDA import nnUNetTrainerLTUDA, nnUNetTrainerLTUDA_paper
from nnunet_ext.trainers.nnUNetTrainerMAML import nnUNetTrainerMAML, nnUNetTrainerMAML_noDropout
from nnunet_ext.trainers.nnUNetTrainerMarginal import nnUNetTrainerMarginal
from nnunet_ext.trainers.nnUNetTrainerMeanTeacher import (nnUNetTrainerMeanTeacher, nnUNetTrainerMeanTeacher_dropout,
                                                          nnUNetTrainerMeanTeacher_paper)
from nnunet_ext.trainers.nnUNetTrainerUAMT import nnUNetTrainerUAMT, nnUNetTrainerUAMT_paper
from nnunet_ext.trainers.nnUNetTrainerUGMCL import (nnUNetTrainerUGMCL, nnUNetTrainerUGMCL_paper,
                                                    nnUNetTrainerUGMCL_unlabeledConsistency)

__all__ = ["nnUNetTrainerMeanTeacher", "nnUNetTrainerUAMT", "nnUNetTrainerDTC", "nnUNetTrainerUGMCL",
           "nnUNetTrainerMeanTeacher_dropout", "nnUNetTrainerDTC_dropout", "nnUNetTrainerUGMCL_unlabeledConsistency",
           "nnUNetTrainerMeanTeacher_paper", "nnUNetTrainerUAMT_paper", "nnUNetTrainerDTC_paper",
           "nnUNetTrainerUGMCL_paper", "nnUNetTrainerGazeSup", "nnUNetTrainerGazeSup_pure",
           "nnUNetTrainerGazeSup_flipsOnly", "nnUNetTrainerGazeSup_paper", "nnUNetTrainerCMC",
           "nnUNetTrainerCMC_sortedCSC", "nnUNetTrainerCMC_mseCAC", "nnUNetTrainerMAML", "nnUNetTrainerMAML_noDropout",
           "nnUNetTrainerMarginal", "nnUNetTrainerLTUDA", "nnUNetTrainerLTUDA_paper"]

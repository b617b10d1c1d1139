"""Every nnunet_ext trainer, importable as ``from nnunet_ext.trainers import nnUNetTrainerDTC``."""

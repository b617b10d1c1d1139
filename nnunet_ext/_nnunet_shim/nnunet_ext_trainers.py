"""Shim module for nnU-Net's ``nnUNet_extTrainer`` search path.

nnU-Net imports every module in the folders listed in ``nnUNet_extTrainer`` by bare name and removes them
from ``sys.modules`` afterwards. This folder therefore holds only this uniquely named module, which
re-exports the trainers from the installed package by absolute import, so the classes keep their
canonical module ``nnunet_ext.trainers.*`` (picklable, imported once).
"""
from nnunet_ext.trainers import *  # noqa: F401,F403

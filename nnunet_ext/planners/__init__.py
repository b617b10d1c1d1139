"""Experiment planners of nnunet_ext, and the ``nnunet_ext plan_and_preprocess`` command that can use them.

``nnUNetv2_plan_and_preprocess -pl`` only searches nnunetv2's own package, so ``nnunet_ext plan_and_preprocess -pl``
also looks up planner classes by name in this package: a planner becomes available to ``-pl`` by being importable
from here (``from nnunet_ext.planners.my_planner import MyPlanner`` in this file). Planners subclass nnU-Net's
``ExperimentPlanner`` and keep nnU-Net's built-in preprocessor, normalisation and reader names in the plans, so
stock ``nnUNetv2_train`` and ``nnUNetv2_predict`` can use their plans.
"""
from nnunet_ext.planners.ct_window import nnUNetPlannerCTWindow

__all__ = ["nnUNetPlannerCTWindow"]

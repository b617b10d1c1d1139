"""Thin layers over nnU-Net's ``nnUNetPredictor``: predicting with a network that is not (yet) in a results
folder, as a trained model would predict."""
from nnunet_ext.inference.predictor import predictor_for_network

__all__ = ["predictor_for_network"]

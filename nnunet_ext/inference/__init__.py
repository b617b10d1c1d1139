"""Thin layers over nnU-Net's ``nnUNetPredictor``: predicting with a network that is not (yet) in a results
folder, as a trained model would predict; predicting cases that lack some modalities (``nnunet_ext predict``)."""
from nnunet_ext.inference.missing_modalities import predict_with_missing
from nnunet_ext.inference.predictor import predictor_for_network

__all__ = ["predict_with_missing", "predictor_for_network"]

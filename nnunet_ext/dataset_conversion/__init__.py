"""Converters of public datasets to nnU-Net's raw format, all writing through :class:`RawDatasetWriter`.

``nnunet_ext convert NAME ...`` picks a converter from :data:`nnunet_ext.dataset_conversion.cli.CONVERTERS`;
``nnunet_ext make_semisupervised`` splits an existing raw dataset into labeled and unlabeled cases.
"""
from nnunet_ext.dataset_conversion.raw_dataset_writer import RawDatasetWriter

__all__ = ["RawDatasetWriter"]

"""nnunet_ext: nnU-Net v2 extensions for scarce, partial, weak and multimodal labels."""
__version__ = "0.1.0"

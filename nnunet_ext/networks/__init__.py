"""Networks the stock predictor rebuilds through the trainers' ``build_network_architecture``: the plans' U-Net
with what each method adds (heads, dropout, feature taps, several levels)."""
from nnunet_ext.networks.cross_modality_unet import CrossModalityUNet
from nnunet_ext.networks.feature_taps import DecoderFeatureTap
from nnunet_ext.networks.heads import OutputHead
from nnunet_ext.networks.modality_branches import ModalityBranchUNet
from nnunet_ext.networks.multi_level_unet import MultiLevelUNet
from nnunet_ext.networks.semi_supervised_unet import SemiSupervisedUNet

__all__ = ["CrossModalityUNet", "DecoderFeatureTap", "ModalityBranchUNet", "MultiLevelUNet", "OutputHead",
           "SemiSupervisedUNet"]

"""Loss terms the trainers compose (semi-supervised spec §1.4, §3.1, §4.3; GazeSup spec §2.7), one module per kind."""
from nnunet_ext.losses.consistency import mean_squared_error
from nnunet_ext.losses.cross_entropy import SummedBinaryCrossEntropy
from nnunet_ext.losses.dice import squared_soft_dice_loss
from nnunet_ext.losses.outputs import foreground_channels, one_hot_foreground, probabilities, split_ignore

__all__ = ["SummedBinaryCrossEntropy", "foreground_channels", "mean_squared_error", "one_hot_foreground",
           "probabilities", "split_ignore", "squared_soft_dice_loss"]

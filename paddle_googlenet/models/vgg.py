"""VGG13/16/19 as the legacy ``vgg.py`` built them (Simonyan & Zisserman, ICLR 2015)."""

import paddle.nn as nn

from .layers import ClassifierHead, ConvReLU, max_pool
from .registry import register_model

# Convolutions per block; the five blocks have 64, 128, 256, 512, 512 filters.
VGG_DEPTHS = {"vgg13": (2, 2, 2, 2, 2), "vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
BLOCK_CHANNELS = (64, 128, 256, 512, 512)


def conv_group(in_channels, out_channels, num_convs):
    """``img_conv_group``: ``num_convs`` 3×3 convolutions (bias, ReLU), then a 2×2 max-pool."""
    layers = [ConvReLU(in_channels if i == 0 else out_channels, out_channels, 3, padding=1) for i in range(num_convs)]
    return nn.Sequential(*layers, max_pool(2, 2))


class VGG(nn.Layer):
    """VGG without batch normalisation, as the legacy code built it.

    Faithful to the legacy code: five groups of 3×3 convolutions with bias and ReLU, each ending in a
    2×2 max-pool (224→112→56→28→14→7), then fc 25088→4096→4096 with ReLU and non-inverted dropout 0.5.

    Departures, all deliberate: the model returns logits (no softmax layer); inputs other than
    224×224 (64 and up) are average-pooled adaptively to 7×7 before fc1, the identity at 224.

    Args:
        depths: convolutions in each of the five groups, e.g. (2, 2, 3, 3, 3) for VGG16.
    """

    def __init__(self, depths, num_classes=102, dropout=0.5):
        super().__init__()
        groups, in_channels = [], 3
        for channels, num_convs in zip(BLOCK_CHANNELS, depths):
            groups.append(conv_group(in_channels, channels, num_convs))
            in_channels = channels
        self.features = nn.Sequential(*groups)  # N x 512 x 7 x 7
        self.classifier = ClassifierHead(512, 7, num_classes, dropout)

    def forward(self, x):
        return self.classifier(self.features(x))


def _register(name):
    @register_model(name)
    def build(num_classes=102, **kwargs):
        return VGG(VGG_DEPTHS[name], num_classes=num_classes, **kwargs)

    build.__doc__ = f"{name.upper()}: {sum(VGG_DEPTHS[name])} convolutions + 3 fc layers, no batch norm."
    return build


vgg13, vgg16, vgg19 = (_register(name) for name in VGG_DEPTHS)

"""GoogLeNet (Inception-v1) with both auxiliary classifiers, as the legacy ``googlenet.py`` built it.

Szegedy et al., "Going Deeper with Convolutions", CVPR 2015 (arXiv:1409.4842).
"""

from collections import namedtuple

import paddle
import paddle.nn as nn

from .layers import ConvReLU, FCReLUDropout, avg_pool, linear, max_pool
from .layers import dropout as dropout_layer
from .registry import register_model

GoogLeNetOutputs = namedtuple("GoogLeNetOutputs", ["logits", "aux1", "aux2"])
GoogLeNetOutputs.__doc__ = "Training outputs in network order: main head, head on inception 4a, head on 4d."

# name: (in, 1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj); the paper's Table 1.
INCEPTION_CONFIGS = {
    "ince3a": (192, 64, 96, 128, 16, 32, 32),
    "ince3b": (256, 128, 128, 192, 32, 96, 64),
    "ince4a": (480, 192, 96, 208, 16, 48, 64),
    "ince4b": (512, 160, 112, 224, 24, 64, 64),
    "ince4c": (512, 128, 128, 256, 24, 64, 64),
    "ince4d": (512, 112, 144, 288, 32, 64, 64),
    "ince4e": (528, 256, 160, 320, 32, 128, 128),
    "ince5a": (832, 256, 160, 320, 32, 128, 128),
    "ince5b": (832, 384, 192, 384, 48, 128, 128),
}


class Inception(nn.Layer):
    """Four parallel branches concatenated on channels: 1×1; 1×1→3×3; 1×1→5×5; 3×3 max-pool→1×1.

    The 1×1 "reduce" convolutions cut the channels before the expensive 3×3 and 5×5 ones
    (192→32→96 for a 5×5 costs 82,944 weights instead of 460,800). Every convolution has a bias and
    a ReLU, as the legacy ``img_conv`` default. Attribute names follow the legacy layer suffixes
    (``_1``, ``_3r``, ``_3``, ``_5r``, ``_5``, ``_max``, ``_proj``).
    """

    def __init__(self, in_channels, ch1, ch3_reduce, ch3, ch5_reduce, ch5, pool_proj):
        super().__init__()
        self.conv1 = ConvReLU(in_channels, ch1, 1)
        self.conv3r = ConvReLU(in_channels, ch3_reduce, 1)
        self.conv3 = ConvReLU(ch3_reduce, ch3, 3, padding=1)
        self.conv5r = ConvReLU(in_channels, ch5_reduce, 1)
        self.conv5 = ConvReLU(ch5_reduce, ch5, 5, padding=2)
        self.pool = max_pool(3, 1, padding=1)
        self.proj = ConvReLU(in_channels, pool_proj, 1)
        self.out_channels = ch1 + ch3 + ch5 + pool_proj

    def forward(self, x):
        branches = [self.conv1(x), self.conv3(self.conv3r(x)), self.conv5(self.conv5r(x)), self.proj(self.pool(x))]
        return paddle.concat(branches, axis=1)


class InceptionAux(nn.Layer):
    """Auxiliary classifier: avg-pool 5/3 → 1×1 conv 128 (ReLU) → fc 1024 (ReLU, dropout 0.7) → fc.

    On the 14×14 maps of a 224×224 input the legacy 5/3 pool gives 4×4×128 = 2048 fc inputs. For
    other input sizes (a deliberate extension) the map is average-pooled adaptively to 4×4 instead,
    so the fc keeps its 2048 inputs.
    """

    LEGACY_MAP_SIZE = 14

    def __init__(self, in_channels, num_classes, drop_rate=0.7):
        super().__init__()
        self.pool = avg_pool(5, 3)
        self.adaptive_pool = nn.AdaptiveAvgPool2D(4)  # for inputs other than 224x224
        self.conv = ConvReLU(in_channels, 128, 1)
        self.fc1 = FCReLUDropout(128 * 4 * 4, 1024, drop_rate)
        self.fc2 = linear(1024, num_classes)

    def forward(self, x):
        legacy_size = x.shape[2] == self.LEGACY_MAP_SIZE and x.shape[3] == self.LEGACY_MAP_SIZE
        x = self.pool(x) if legacy_size else self.adaptive_pool(x)  # N x C x 4 x 4
        x = self.conv(x).flatten(1)  # N x 2048
        return self.fc2(self.fc1(x))


class GoogLeNet(nn.Layer):
    """GoogLeNet as the legacy ``paddle.v2`` code built it, with both auxiliary heads.

    Faithful to the legacy code: ceil-mode pooling everywhere (112/56/28/14/7 at 224×224), bias and
    ReLU on every convolution including the stem and the 1×1 reductions, a 0.4 dropout on the pooled
    1024-vector and 0.7 in the auxiliary heads, both non-inverted (mask while training, ×(1-p) at
    inference), He-normal convolution and N(0, 1/sqrt(fan_in)) fc initialisation.

    Departures, all deliberate:
      * No LRN after the stem: the paper has two, the legacy code has none; we follow the legacy.
      * Softmax is not part of the model: it returns logits (the loss and inference apply softmax).
      * The auxiliary heads run only in training mode; in eval mode the model returns the main
        logits alone, so evaluation, export and inference pay nothing for them.
      * Inputs other than 224×224 are accepted (64 and up): the final pool is a global average
        (the legacy's 7×7 pool at 224) and the auxiliary pool becomes adaptive (see InceptionAux).

    Args:
        num_classes: outputs of each classifier (102 for Flowers-102).
        aux_logits: build the two auxiliary classifiers (on inception 4a and 4d).
        dropout: drop rate on the pooled features before the main classifier.
        aux_dropout: drop rate after the auxiliary heads' fc 1024.

    Returns:
        In training mode with ``aux_logits``: ``GoogLeNetOutputs(logits, aux1, aux2)``, each
        [N, num_classes]; otherwise the main logits [N, num_classes].
    """

    def __init__(self, num_classes=102, aux_logits=True, dropout=0.4, aux_dropout=0.7):
        super().__init__()
        self.aux_logits = aux_logits
        self.conv1 = ConvReLU(3, 64, 7, stride=2, padding=3)
        self.pool1 = max_pool(3, 2)
        self.conv2_1 = ConvReLU(64, 64, 1)
        self.conv2_2 = ConvReLU(64, 192, 3, padding=1)
        self.pool2 = max_pool(3, 2)
        self.ince3a = Inception(*INCEPTION_CONFIGS["ince3a"])
        self.ince3b = Inception(*INCEPTION_CONFIGS["ince3b"])
        self.pool3 = max_pool(3, 2)
        self.ince4a = Inception(*INCEPTION_CONFIGS["ince4a"])
        self.ince4b = Inception(*INCEPTION_CONFIGS["ince4b"])
        self.ince4c = Inception(*INCEPTION_CONFIGS["ince4c"])
        self.ince4d = Inception(*INCEPTION_CONFIGS["ince4d"])
        self.ince4e = Inception(*INCEPTION_CONFIGS["ince4e"])
        self.pool4 = max_pool(3, 2)
        self.ince5a = Inception(*INCEPTION_CONFIGS["ince5a"])
        self.ince5b = Inception(*INCEPTION_CONFIGS["ince5b"])
        self.pool5 = nn.AdaptiveAvgPool2D(1)
        self.dropout = dropout_layer(dropout)
        self.fc = linear(1024, num_classes)
        if aux_logits:
            self.aux1 = InceptionAux(512, num_classes, aux_dropout)
            self.aux2 = InceptionAux(528, num_classes, aux_dropout)

    def forward(self, x):
        # N x 3 x 224 x 224
        x = self.stem(x)  # N x 192 x 28 x 28
        x = self.ince3b(self.ince3a(x))  # N x 480 x 28 x 28
        x = self.pool3(x)  # N x 480 x 14 x 14
        x = self.ince4a(x)  # N x 512 x 14 x 14
        with_aux = self.aux_logits and self.training
        aux1 = self.aux1(x) if with_aux else None
        x = self.ince4d(self.ince4c(self.ince4b(x)))  # N x 528 x 14 x 14
        aux2 = self.aux2(x) if with_aux else None
        x = self.ince4e(x)  # N x 832 x 14 x 14
        x = self.pool4(x)  # N x 832 x 7 x 7
        x = self.ince5b(self.ince5a(x))  # N x 1024 x 7 x 7
        x = self.dropout(self.pool5(x).flatten(1))  # N x 1024
        logits = self.fc(x)  # N x num_classes
        if with_aux:
            return GoogLeNetOutputs(logits, aux1, aux2)
        return logits

    def stem(self, x):
        """Table 1's rows before inception (3a): conv 7×7/2, max pool, conv 1×1 then 3×3, max pool."""
        x = self.conv1(x)  # N x 64 x 112 x 112
        x = self.pool1(x)  # N x 64 x 56 x 56
        x = self.conv2_1(x)  # N x 64 x 56 x 56
        x = self.conv2_2(x)  # N x 192 x 56 x 56
        return self.pool2(x)  # N x 192 x 28 x 28


@register_model("googlenet")
def googlenet(num_classes=102, **kwargs):
    """GoogLeNet with auxiliary heads (``aux_logits=False`` drops them)."""
    return GoogLeNet(num_classes=num_classes, **kwargs)

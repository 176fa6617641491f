"""AlexNet as the legacy ``alexnet.py`` built it (Krizhevsky et al., NIPS 2012)."""

import paddle.nn as nn

from .layers import ClassifierHead, ConvReLU, local_response_norm, max_pool
from .registry import register_model


def lrn():
    """``img_cmrnorm(size=5, scale=1e-4, power=0.75)``: y = x (1 + 1e-4/5 · Σ x²)^-0.75 over 5 channels."""
    return local_response_norm(size=5, scale=1e-4, power=0.75)


class AlexNet(nn.Layer):
    """AlexNet with LRN, as the legacy code built it.

    Faithful to the legacy code: conv1 11×11/4 with padding 1 on a 224×224 input (54×54 maps), LRN
    after the first two ReLU convolutions, ceil-mode 3/2 max-pools (27/13/6), no channel groups,
    fc 9216→4096→4096 with ReLU and non-inverted dropout 0.5 on their outputs, bias everywhere.

    Departures, all deliberate: the model returns logits (no softmax layer); inputs other than
    224×224 (64 and up) are average-pooled adaptively to 6×6 before fc1, which is the identity at 224.
    The paper's 227 input, grouped convolutions and LRN k=2 are properties of the paper that the
    legacy code did not have; we follow the legacy code.
    """

    def __init__(self, num_classes=102, dropout=0.5):
        super().__init__()
        self.features = nn.Sequential(
            ConvReLU(3, 96, 11, stride=4, padding=1),  # N x 96 x 54 x 54
            lrn(),
            max_pool(3, 2),  # N x 96 x 27 x 27
            ConvReLU(96, 256, 5, padding=2),
            lrn(),
            max_pool(3, 2),  # N x 256 x 13 x 13
            ConvReLU(256, 384, 3, padding=1),
            ConvReLU(384, 384, 3, padding=1),
            ConvReLU(384, 256, 3, padding=1),
            max_pool(3, 2),  # N x 256 x 6 x 6
        )
        self.classifier = ClassifierHead(256, 6, num_classes, dropout)  # 9216 → 4096 → 4096 → classes

    def forward(self, x):
        return self.classifier(self.features(x))


@register_model("alexnet")
def alexnet(num_classes=102, **kwargs):
    """AlexNet with LRN (58,699,238 parameters at 102 classes)."""
    return AlexNet(num_classes=num_classes, **kwargs)

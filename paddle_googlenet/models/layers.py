"""Building blocks with the legacy ``paddle.v2`` layer defaults, made of Paddle's own layers.

The legacy helpers and what they mean here (see docs/porting.md):

* ``img_conv``: convolution with a bias and a ReLU, weights N(0, sqrt(2 / (k*k*C_in))), bias 0;
* ``img_pool``: max (or average) pooling in ceil mode, out = 1 + ceil((in + 2p - k) / s);
* ``fc``: weights N(0, 1/sqrt(fan_in)), bias 0;
* ``drop_rate``: dropout on the layer's own output, a plain Bernoulli mask while training and the
  output scaled by (1 - p) at inference (non-inverted);
* ``img_cmrnorm(size=5, scale=1e-4, power=0.75)``: local response normalisation across channels.
"""

import math

import paddle.nn as nn
from paddle import ParamAttr
from paddle.nn.initializer import Constant, KaimingNormal, Normal


def conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
    """``nn.Conv2D`` with ``img_conv``'s initialisation: He-normal weights ("initial_smart"), bias 0."""
    return nn.Conv2D(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        weight_attr=ParamAttr(initializer=KaimingNormal()),
        bias_attr=ParamAttr(initializer=Constant(0.0)) if bias else False,
    )


class ConvReLU(nn.Layer):
    """``img_conv`` with its defaults: convolution with bias, then ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride, padding)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv(x))


def max_pool(kernel_size, stride, padding=0):
    """``img_pool`` (max): ceil mode, so 112 → 56 → 28 → 14 → 7 in GoogLeNet."""
    return nn.MaxPool2D(kernel_size, stride, padding=padding, ceil_mode=True)


def avg_pool(kernel_size, stride):
    """``img_pool`` (avg) in ceil mode, without padding."""
    return nn.AvgPool2D(kernel_size, stride, ceil_mode=True)


def local_response_norm(size=5, scale=1e-4, power=0.75):
    """``img_cmrnorm``: y = x (1 + scale/size · Σ x²)^-power over ``size`` neighbouring channels."""
    return nn.LocalResponseNorm(size=size, alpha=scale, beta=power, k=1.0)


def linear(in_features, out_features):
    """``fc`` weights: N(0, 1/sqrt(fan_in)), bias 0 (Paddle's own default would be Xavier)."""
    return nn.Linear(
        in_features,
        out_features,
        weight_attr=ParamAttr(initializer=Normal(0.0, 1.0 / math.sqrt(in_features))),
        bias_attr=ParamAttr(initializer=Constant(0.0)),
    )


def dropout(p):
    """``drop_rate``: a plain Bernoulli mask while training, outputs scaled by (1 - p) at inference."""
    return nn.Dropout(p, mode="downscale_in_infer")


class FCReLUDropout(nn.Layer):
    """``fc(act=Relu, layer_attr=Extra(drop_rate=p))``: dropout on the fc's own output, after ReLU."""

    def __init__(self, in_features, out_features, drop_rate):
        super().__init__()
        self.fc = linear(in_features, out_features)
        self.relu = nn.ReLU()
        self.dropout = dropout(drop_rate)

    def forward(self, x):
        return self.dropout(self.relu(self.fc(x)))


class ClassifierHead(nn.Layer):
    """The AlexNet/VGG head: pool to ``grid``×``grid``, fc 4096 (ReLU, dropout), fc 4096 (ReLU, dropout), fc.

    The adaptive pool is the identity at 224×224 input (the map is already ``grid``×``grid``); for
    other input sizes it keeps the fc input at the legacy width.
    """

    def __init__(self, channels, grid, num_classes, dropout_rate, hidden=4096):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2D(grid)
        self.fc1 = FCReLUDropout(channels * grid * grid, hidden, dropout_rate)
        self.fc2 = FCReLUDropout(hidden, hidden, dropout_rate)
        self.fc3 = linear(hidden, num_classes)

    def forward(self, x):
        x = self.pool(x).flatten(1)
        return self.fc3(self.fc2(self.fc1(x)))

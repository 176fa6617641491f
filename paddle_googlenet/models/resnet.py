"""ResNet-18/34/50/101/152 as the legacy ``resnet.py`` built them (He et al., CVPR 2016)."""

import paddle.nn as nn

from .layers import conv2d, linear, max_pool
from .registry import register_model


class ConvBN(nn.Sequential):
    """``conv_bn_layer``: convolution without bias, batch norm (momentum 0.9, eps 1e-5), optional ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, relu=True):
        layers = [conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False), nn.BatchNorm2D(out_channels)]
        super().__init__(*(layers + [nn.ReLU()] if relu else layers))


def shortcut(in_channels, out_channels, stride):
    """Projection (1×1 conv + BN) when the channel counts differ, identity otherwise, as the legacy."""
    if in_channels == out_channels:
        return nn.Identity()
    return ConvBN(in_channels, out_channels, 1, stride, relu=False)


class BasicBlock(nn.Layer):
    """Two 3×3 conv-BN layers (stride on the first) plus the shortcut, then ReLU."""

    expansion = 1

    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = ConvBN(in_channels, channels, 3, stride, 1)
        self.conv2 = ConvBN(channels, channels, 3, 1, 1, relu=False)
        self.shortcut = shortcut(in_channels, channels, stride)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.shortcut(x) + self.conv2(self.conv1(x)))


class Bottleneck(nn.Layer):
    """1×1 (stride here, as ResNet v1) → 3×3 → 1×1 ×4 channels, plus the shortcut, then ReLU."""

    expansion = 4

    def __init__(self, in_channels, channels, stride):
        super().__init__()
        self.conv1 = ConvBN(in_channels, channels, 1, stride)
        self.conv2 = ConvBN(channels, channels, 3, 1, 1)
        self.conv3 = ConvBN(channels, channels * 4, 1, relu=False)
        self.shortcut = shortcut(in_channels, channels * 4, stride)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.shortcut(x) + self.conv3(self.conv2(self.conv1(x))))


# depth: (block, blocks per stage); the legacy had [2, 2, 2, 1] for ResNet-18, a bug fixed here.
RESNET_CONFIGS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


class ResNet(nn.Layer):
    """ResNet v1 as the legacy ``resnet_imagenet`` built it.

    Faithful to the legacy code: 7×7/2 stem conv + BN + ReLU, a 3×3/2 max-pool with no padding in
    ceil mode (112→56), convolutions without bias followed by batch norm, the bottleneck's stride on
    its first 1×1 convolution (the original v1, not torchvision's v1.5), projection shortcuts exactly
    where the channel count changes (including the first block of stage 1), global average pooling
    (7×7 at 224) and an fc with N(0, 1/sqrt(fan_in)) initialisation.

    Departures, all deliberate: the model returns logits (no softmax layer); ResNet-18 has
    [2, 2, 2, 2] blocks (the legacy table said [2, 2, 2, 1]); the final pool is global, so inputs
    other than 224×224 (64 and up) work.

    Args:
        depth: 18, 34, 50, 101 or 152.
        blocks: blocks in each of the four stages, instead of the depth's; ``(2, 2, 2, 1)`` with depth 18
            builds the legacy ResNet-18, for weights converted from its archives (``convert_v2``).
    """

    def __init__(self, depth=50, num_classes=102, blocks=None):
        super().__init__()
        if depth not in RESNET_CONFIGS:
            raise ValueError(f"ResNet depth must be one of {sorted(RESNET_CONFIGS)}, got {depth}")
        block, counts = RESNET_CONFIGS[depth]
        if blocks is not None:
            if len(blocks) != 4 or min(blocks) < 1:
                raise ValueError(f"blocks needs 4 stage sizes of at least 1, got {blocks}")
            counts = tuple(int(count) for count in blocks)
        self.stem = nn.Sequential(ConvBN(3, 64, 7, 2, 3), max_pool(3, 2))  # N x 64 x 56 x 56
        stages, in_channels = [], 64
        for index, (channels, count) in enumerate(zip((64, 128, 256, 512), counts)):
            blocks = []
            for i in range(count):
                stride = 2 if index > 0 and i == 0 else 1
                blocks.append(block(in_channels, channels, stride))
                in_channels = channels * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)  # N x 2048 x 7 x 7 for ResNet-50
        self.pool = nn.AdaptiveAvgPool2D(1)
        self.fc = linear(in_channels, num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        return self.fc(self.pool(x).flatten(1))


def _register(depth, *aliases):
    def build(num_classes=102, **kwargs):
        return ResNet(depth, num_classes=num_classes, **kwargs)

    build.__doc__ = f"ResNet-{depth} ({RESNET_CONFIGS[depth][0].__name__}s {list(RESNET_CONFIGS[depth][1])})."
    for name in (f"resnet{depth}",) + aliases:
        register_model(name)(build)
    return build


resnet18, resnet34 = _register(18), _register(34)
resnet50 = _register(50, "resnet")  # ``resnet`` is the legacy train.py choice: ResNet-50
resnet101, resnet152 = _register(101), _register(152)

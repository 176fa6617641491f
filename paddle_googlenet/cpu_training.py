"""Faster CPU training for the plain models: ``use_cpu_training_layers(model)``.

The models in ``paddle_googlenet.models`` are written with Paddle's own layers, one forward each.
Training them on a CPU with Paddle's dygraph kernels spends much of each step outside the
convolutions' GEMMs, in kernels that other forms of the same arithmetic avoid. This module holds
those forms, and one function that puts them in place::

    model = get_model("googlenet")
    swapped = use_cpu_training_layers(model)   # [(sublayer name, plain class name), ...]

Each swap turns a layer into a subclass of its own class that overrides only how it computes
(``forward``, or GoogLeNet's ``stem``): the object stays where it is, with the same Parameter objects
(so ``state_dict``, checkpoints and an optimizer built before or after are unchanged), the same hooks
and the same sublayers. Two exceptions for hooks, while training: a swapped ``Inception`` runs its
three input 1×1 units as one convolution, and a swapped ``GoogLeNet`` runs ``conv1``, ``pool1``,
``conv2_2`` and ``pool2`` in another order, so hooks on those units and layers do not fire then;
train with the plain layers to observe them. While the
layer is in training mode it computes the same function by a faster route; in eval mode it runs
the plain forward (or an exactly equal one), so evaluation inside training gives the numbers that
``infer.py`` and an export give. Only layers of exactly the plain type are swapped (a subclass or a
wrapper a user put in, e.g. for quantisation-aware training, is left alone), and a second call
swaps nothing.

``train.py`` applies it when it trains on the CPU (``--plain-layers`` turns it off); export,
inference, ``models.summary`` and GPU runs use the plain models. ``benchmarks/bench_speed.py``
measures the pass (path ``ours``) against the plain model (``ours-plain``): docs/performance.md;
how each form was chosen: benchmarks/NOTES.md.
"""

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .models.googlenet import GoogLeNet, Inception
from .models.layers import ConvReLU
from .runtime import paddle_major_version

# Paddle 2.6's max_pool2d_with_index ignores ceil_mode (27 rows from 56 instead of 28); 3.0 fixed it.
_ARGMAX_POOL_HONOURS_CEIL_MODE = paddle_major_version() >= 3


def add_channel_bias(x, bias):
    """``x + bias`` over the channels of an NCHW map, as [N, C, H*W] + [C, 1].

    The same additions as ``nn.Conv2D``'s [N, C, H, W] + [1, C, 1, 1], for which Paddle's CPU
    broadcast (forward and backward) takes a much slower generic path.
    """
    _, channels, height, width = x.shape
    flat = x.reshape([0, channels, height * width]) + bias.reshape([channels, 1])
    return flat.reshape([0, channels, height, width])


def unfold_conv2d(x, weight, stride, padding):
    """``F.conv2d`` (NCHW, no groups or dilation, an int ``padding``) as im2col and one batched matmul.

    Paddle's CPU convolution repeats its im2col in the backward pass; this form keeps the columns
    (memory: C_in·k·k·H_out·W_out floats per image) and reuses them. For the weight's gradient, Paddle's
    matmul backward turns a 2-D weight's batched product into one GEMM by transposing the columns and the
    output gradient (N·H_out·W_out·(C_out + C_in·k·k) floats); where the weight copied once per image is
    smaller than that (counted twice: the copy and its gradient's sum), it is multiplied as that copy.
    """
    batch = x.shape[0]
    out_channels, _, kernel_h, kernel_w = weight.shape
    out_h = (x.shape[2] + 2 * padding - kernel_h) // stride[0] + 1
    out_w = (x.shape[3] + 2 * padding - kernel_w) // stride[1] + 1
    columns = F.unfold(x, [kernel_h, kernel_w], stride, padding)  # [N, C_in*kh*kw, out_h*out_w]
    matrix = weight.reshape([out_channels, -1])
    depth = matrix.shape[1]
    if 2 * out_channels * depth < out_h * out_w * (out_channels + depth):
        matrix = matrix.expand([batch, out_channels, depth])
    return paddle.matmul(matrix, columns).reshape([batch, out_channels, out_h, out_w])


class TrainingConv2D(nn.Conv2D):
    """``nn.Conv2D`` whose bias is added by ``add_channel_bias``; kernels of 5×5 and larger (GoogLeNet's
    5×5 and 7×7 stem, ResNet's 7×7 stem, AlexNet's 11×11 and 5×5) train as ``unfold_conv2d``."""

    def forward(self, x):
        y = self.without_bias(x)
        return y if self.bias is None else add_channel_bias(y, self.bias)

    def without_bias(self, x):
        """This layer's convolution of ``x`` before its bias is added."""
        if self.training and min(self._kernel_size) >= 5 and self.unfoldable():
            return self.unfolded(x)
        return self.convolve(x, self.weight)

    def unfoldable(self):
        """No groups and no dilation: the convolutions ``unfold_conv2d`` covers."""
        return self._groups == 1 and self._dilation == [1, 1]

    def unfolded(self, x):
        """This layer's convolution of ``x``, without bias, as ``unfold_conv2d`` (for an ``unfoldable`` layer)."""
        return unfold_conv2d(x, self.weight, self._stride, self._padding)

    def convolve(self, x, weight):
        """The convolution by ``weight`` with this layer's stride, padding, dilation and groups, without bias."""
        return F.conv2d(x, weight, None, self._stride, self._updated_padding, self._dilation, self._groups)

    @staticmethod
    def accepts(conv):
        """Zero padding, NCHW and an integer padding: the cases the forms above cover."""
        return conv._padding_mode == "zeros" and conv._data_format == "NCHW" and isinstance(conv._padding, int)


class TrainingInception(Inception):
    """``Inception`` whose three 1×1 convolutions that read the block's input run, while training, as one
    convolution by their stacked weights, split per branch after: one larger GEMM, the input read once
    and one input gradient instead of three to add up."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        units = (self.conv1, self.conv3r, self.conv5r)
        weight = paddle.concat([unit.conv.weight for unit in units])
        bias = paddle.concat([unit.conv.bias for unit in units])
        reduced = F.relu(add_channel_bias(self.conv1.conv.convolve(x, weight), bias))
        out1, out3r, out5r = paddle.split(reduced, [unit.conv.weight.shape[0] for unit in units], axis=1)
        return paddle.concat([out1, self.conv3(out3r), self.conv5(out5r), self.proj(self.pool(x))], axis=1)

    @staticmethod
    def accepts(block):
        """The three units are swapped ``ConvReLU``s (``is_swapped_conv_relu``) of unpadded, unstrided 1×1
        convolutions."""
        return all(
            is_swapped_conv_relu(unit)
            and unit.conv._kernel_size == [1, 1] and unit.conv._stride == [1, 1] and unit.conv._padding == 0
            and unit.conv._groups == 1
            for unit in (block.conv1, block.conv3r, block.conv5r)
        )


def is_swapped_conv_relu(unit):
    """A ``ConvReLU`` whose convolution was swapped, has a bias and whose ReLU is Paddle's own: a unit whose
    arithmetic a fused form may compute itself (a user's wrapper in either place keeps the unit as it is)."""
    return (
        type(unit) is ConvReLU and type(unit.conv) is TrainingConv2D and unit.conv.bias is not None
        and type(unit.relu) is nn.ReLU
    )


class TrainingMaxPool2D(nn.MaxPool2D):
    """``nn.MaxPool2D`` that, while training, keeps the argmax of each window (``max_pool2d_with_index``),
    so its backward scatters through it instead of searching every window again."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        return F.max_pool2d(x, self.ksize, self.stride, self.padding, ceil_mode=self.ceil_mode, return_mask=True)[0]

    @staticmethod
    def accepts(pool):
        """NCHW pools returning values only, on a Paddle whose argmax pool honours ceil mode."""
        return _ARGMAX_POOL_HONOURS_CEIL_MODE and pool.data_format == "NCHW" and not pool.return_mask


class TrainingGoogLeNet(GoogLeNet):
    """``GoogLeNet`` whose stem, while training, max-pools the outputs of ``conv1`` and ``conv2_2`` before
    their bias and ReLU: a max over a window commutes with adding a per-channel constant and with ReLU,
    so the values and gradients are the same, and the bias and ReLU run on a quarter of the pixels. Both
    convolutions run as ``unfold_conv2d``: on the network's two largest maps, keeping the columns for the
    backward beats Paddle's convolution, which forms them again there (for ``conv2_2``'s 3×3 kernel the
    rule of ``TrainingConv2D`` would not choose it; its columns take 7 MB per 224×224 image)."""

    def stem(self, x):
        if not self.training:
            return super().stem(x)
        x = pool_before_bias_and_relu(self.conv1, self.pool1, x)
        return pool_before_bias_and_relu(self.conv2_2, self.pool2, self.conv2_1(x))

    @staticmethod
    def accepts(model):
        """``conv1`` and ``conv2_2`` are swapped ``ConvReLU``s (``is_swapped_conv_relu``) of ``unfoldable``
        convolutions; ``pool1`` and ``pool2`` are max pools, plain or swapped."""
        return all(
            is_swapped_conv_relu(unit) and unit.conv.unfoldable()
            and type(pool) in (nn.MaxPool2D, TrainingMaxPool2D) and not pool.return_mask
            for unit, pool in ((model.conv1, model.pool1), (model.conv2_2, model.pool2))
        )


def pool_before_bias_and_relu(unit, pool, x):
    """``pool(unit(x))`` for a ``ConvReLU`` ``unit`` and a max ``pool``, as ``relu(pool(conv(x)) + bias)``,
    the convolution unfolded."""
    conv = unit.conv
    return F.relu(add_channel_bias(pool.forward(conv.unfolded(x)), conv.bias))


class TrainingLocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` whose sum of x² over neighbouring channels is, while training, a 1×1
    convolution by a fixed banded [C, C] matrix (one GEMM) instead of a padded 3-D average pool."""

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        channels = x.shape[1]
        index = paddle.arange(channels)
        offset = index.unsqueeze(0) - index.unsqueeze(1)  # [i, j]: j - i
        window = (offset >= -(self.size // 2)) & (offset <= (self.size - 1) // 2)  # Paddle's window: c-2..c+2 for size 5
        weight = (window.astype(x.dtype) * (self.alpha / self.size)).reshape([channels, channels, 1, 1])
        return x * (F.conv2d(x * x, weight) + self.k).pow(-self.beta)

    @staticmethod
    def accepts(lrn):
        """NCHW maps."""
        return lrn.data_format == "NCHW"


# (plain class, its faster subclass) in the order of the swaps: an Inception block or GoogLeNet's stem
# is changed only if its convolutions were swapped before it.
SWAPS = (
    (nn.Conv2D, TrainingConv2D),
    (Inception, TrainingInception),
    (nn.MaxPool2D, TrainingMaxPool2D),
    (nn.LocalResponseNorm, TrainingLocalResponseNorm),
    (GoogLeNet, TrainingGoogLeNet),
)


def use_cpu_training_layers(model):
    """Swap ``model``'s plain layers for the faster CPU-training ones above, in place; return what changed.

    Returns ``[(sublayer name, plain class name), ...]``, empty when nothing was swapped (e.g. on a second call).
    """
    swapped = []
    for plain, fast in SWAPS:
        for name, layer in model.named_sublayers(include_self=True):
            if type(layer) is plain and fast.accepts(layer):
                layer.__class__ = fast
                swapped.append((name, plain.__name__))
    return swapped


def summarize(swapped):
    """One line for the log, e.g. ``59 Conv2D, 9 Inception, 13 MaxPool2D, 1 GoogLeNet`` (or ``nothing``)."""
    counts = {}
    for _, kind in swapped:
        counts[kind] = counts.get(kind, 0) + 1
    return ", ".join(f"{count} {kind}" for kind, count in counts.items()) or "nothing"

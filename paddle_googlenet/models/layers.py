"""Building blocks that reproduce the legacy ``paddle.v2`` layer defaults (legacy-spec §1, §6.2)."""

import math

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle import ParamAttr
from paddle.autograd import PyLayer
from paddle.nn.initializer import Constant, KaimingNormal, Normal


def recording_on_cpu(x):
    """True when ``x`` is on the CPU and dygraph records its operations for a backward pass: where the
    training-only CPU variants below pay off (traced, exported and GPU runs keep Paddle's own ops)."""
    return paddle.in_dynamic_mode() and paddle.is_grad_enabled() and x.place.is_cpu_place()


def add_channel_bias(x, bias):
    """``x + bias`` on the channels of an NCHW map, computed as [N, C, H*W] + [C, 1].

    The same sums as ``nn.Conv2D``'s own bias add ([N, C, H, W] + [1, C, 1, 1]), but that 4-D
    broadcast takes a slow path in Paddle's CPU kernels: this 3-D one is ~4x faster, forward and backward.
    When training on the CPU the bias gradient is taken by ``ChannelBiasAdd`` instead of Paddle's reduction.
    """
    _, channels, height, width = x.shape
    flat = x.reshape([0, channels, height * width])
    if not bias.stop_gradient and recording_on_cpu(x):
        flat = ChannelBiasAdd.apply(flat, bias)
    else:
        flat = flat + bias.reshape([channels, 1])
    return flat.reshape([0, channels, height, width])


class ChannelBiasAdd(PyLayer):
    """[N, C, L] + bias[C] whose bias gradient, the sum of the output gradient over N and L, is computed
    as a product with a vector of ones: one GEMV, ~6x faster on the CPU than Paddle's reduction over
    those two axes (which made the bias gradient ~3 % of a GoogLeNet training step)."""

    @staticmethod
    def forward(ctx, x, bias):
        return x + bias.reshape([-1, 1])

    @staticmethod
    def backward(ctx, grad):
        ones = paddle.ones([grad.shape[2], 1], dtype=grad.dtype)
        # x's gradient is the output's, passed on without a copy
        return grad, paddle.matmul(grad, ones).sum(0).reshape([-1])


class Conv2D(nn.Conv2D):
    """``nn.Conv2D`` (NCHW, as ``conv2d`` builds it) with the same arithmetic, faster on the CPU: its bias
    is added by ``add_channel_bias``, and in CPU training 5×5 kernels run as ``unfold_conv2d``."""

    def forward(self, x):
        y = self.convolve(x)
        return y if self.bias is None else add_channel_bias(y, self.bias)

    def convolve(self, x):
        """The convolution without its bias."""
        if self._kernel_size == [5, 5] and recording_on_cpu(x):
            return unfold_conv2d(x, self.weight, self._stride, self._padding)
        return F.conv2d(x, self.weight, None, self._stride, self._updated_padding, self._dilation, self._groups)


def unfold_conv2d(x, weight, stride, padding):
    """``F.conv2d`` (NCHW, no groups or dilation, ``padding`` an int) as im2col (``F.unfold``) and one
    batched matmul. Paddle's CPU convolution repeats the im2col in its backward; this keeps the columns
    instead: 1.07-1.28x faster forward + backward for GoogLeNet's and AlexNet's 5×5 convolutions, for the
    kept columns' memory (~105 MB by their sizes for GoogLeNet at batch 16; its peak RSS rose 2 %). For 3×3
    kernels, which Paddle's im2col special-cases, and for the 7×7 stem it was no faster in the training step."""
    batch, _, height, width = x.shape
    out_channels, _, kernel_h, kernel_w = weight.shape
    out_h = (height + 2 * padding - kernel_h) // stride[0] + 1
    out_w = (width + 2 * padding - kernel_w) // stride[1] + 1
    columns = F.unfold(x, [kernel_h, kernel_w], stride, padding)  # [N, C_in*kh*kw, out_h*out_w]
    return paddle.matmul(weight.reshape([out_channels, -1]), columns).reshape([batch, out_channels, out_h, out_w])


def conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
    """``img_conv`` weights: N(0, sqrt(2 / (k*k*C_in))) ("initial_smart"), bias initialised to 0."""
    return Conv2D(
        in_channels,
        out_channels,
        kernel_size,
        stride=stride,
        padding=padding,
        weight_attr=ParamAttr(initializer=KaimingNormal()),
        bias_attr=ParamAttr(initializer=Constant(0.0)) if bias else False,
    )


def relu_on_fresh(x):
    """ReLU of a tensor nothing else reads (a convolution's output), in place in dygraph: one
    activation-sized allocation less, ~1.8x faster on the CPU than writing a new tensor. Traced for
    export it is the plain ReLU (``to_static`` refuses in-place ops on reshaped tensors)."""
    return F.relu_(x) if paddle.in_dynamic_mode() else F.relu(x)


class ConvReLU(nn.Layer):
    """``img_conv`` with its defaults: convolution with bias, then ReLU."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = conv2d(in_channels, out_channels, kernel_size, stride, padding)

    def forward(self, x):
        return relu_on_fresh(self.conv(x))


def conv_relu_max_pool(conv_relu, pool, x):
    """``pool(conv_relu(x))`` for a ``ConvReLU`` followed by a max pool.

    In CPU training the bias add and ReLU run after the pool: a max commutes with adding a per-channel
    constant and with ReLU (monotone), so the values are the same, and the two elementwise passes and
    their gradients cover the pooled map, 4x smaller (GoogLeNet's stem: +2.8% training).
    """
    if not recording_on_cpu(x):
        return pool(conv_relu(x))
    conv = conv_relu.conv
    return relu_on_fresh(add_channel_bias(pool(conv.convolve(x)), conv.bias))


class LocalResponseNorm(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` (NCHW), y = x (k + alpha/size · Σ x²)^-beta over ``size`` neighbouring
    channels, with the channel sum computed as a 1×1 convolution of x² by a fixed banded [C, C] weight:
    the same values within float rounding, 2-3x faster forward + backward on CPU than Paddle's pad +
    3-D average pool (AlexNet's two LRNs were ~45 % of its training step)."""

    def forward(self, x):
        channels = x.shape[1]
        index = paddle.arange(channels)
        offset = index.unsqueeze(0) - index.unsqueeze(1)  # [i, j]: j - i
        window = (offset >= -(self.size // 2)) & (offset <= (self.size - 1) // 2)  # Paddle's: c-2..c+2 for size 5
        weight = (window.astype(x.dtype) * (self.alpha / self.size)).reshape([channels, channels, 1, 1])
        # x * x, not x.square(): Paddle Inference's oneDNN run of square() here corrupts x for the product
        return x * (F.conv2d(x * x, weight) + self.k).pow(-self.beta)


def linear(in_features, out_features):
    """``fc`` weights: N(0, 1/sqrt(fan_in)), bias initialised to 0 (Paddle's default would be Xavier)."""
    return nn.Linear(
        in_features,
        out_features,
        weight_attr=ParamAttr(initializer=Normal(0.0, 1.0 / math.sqrt(in_features))),
        bias_attr=ParamAttr(initializer=Constant(0.0)),
    )


def dropout(p):
    """``drop_rate``: a plain Bernoulli mask while training, outputs scaled by (1 - p) at inference."""
    return nn.Dropout(p, mode="downscale_in_infer")


# Paddle 2.6's max_pool2d_with_index ignores ceil_mode (27 rows from 56 instead of 28); 3.0 honours it.
_POOL_WITH_INDEX = paddle.__version__ == "0.0.0" or int(paddle.__version__.split(".")[0]) >= 3


class MaxPool(nn.MaxPool2D):
    """Max pool in ceil mode that, while training, runs ``max_pool2d_with_index``: its backward
    scatters through the saved argmax instead of searching each window again (1.3-2.7x faster
    forward + backward on CPU). Evaluation keeps the plain kernel, faster without a backward."""

    def forward(self, x):
        if self.training and _POOL_WITH_INDEX:
            return F.max_pool2d(x, self.ksize, self.stride, self.padding, ceil_mode=True, return_mask=True)[0]
        return super().forward(x)


def max_pool(kernel_size, stride, padding=0):
    """``img_pool`` (max): output size 1 + ceil((in + 2p - k) / s)."""
    return MaxPool(kernel_size, stride, padding=padding, ceil_mode=True)


def pooling_windows(size, kernel_size, stride):
    """[size, outputs] 0/1 matrix of a 1-D pooling in ceil mode without padding: column j marks the
    inputs of output j (a last, partial window included)."""
    outputs = -(-(size - kernel_size) // stride) + 1
    starts = np.arange(outputs)[None, :] * stride
    inputs = np.arange(size)[:, None]
    return ((inputs >= starts) & (inputs < starts + kernel_size)).astype("float32")


def average_by_matrix(x, windows_h, windows_w):
    """Average pooling as one product: [N, C, H*W] @ [H*W, out_h*out_w], each column the mean over a window.

    Pooling is linear; as a GEMM its forward and backward are ~4x faster on the CPU than Paddle's pool kernels.
    """
    batch, channels, height, width = x.shape
    matrix = np.kron(windows_h, windows_w)
    matrix /= matrix.sum(axis=0)  # exclusive: a partial window averages only its inputs
    y = paddle.matmul(x.reshape([batch, channels, height * width]), paddle.to_tensor(matrix, dtype=x.dtype))
    return y.reshape([batch, channels, windows_h.shape[1], windows_w.shape[1]])


class AvgPool(nn.AvgPool2D):
    """``img_pool`` (avg): average pool in ceil mode, no padding; in CPU training, ``average_by_matrix``."""

    def forward(self, x):
        if not recording_on_cpu(x):
            return super().forward(x)
        return average_by_matrix(x, *(pooling_windows(size, self.ksize, self.stride) for size in x.shape[2:]))


class GlobalAvgPool(nn.AdaptiveAvgPool2D):
    """Mean over the whole map, [N, C, H, W] -> [N, C, 1, 1]; in CPU training, ``average_by_matrix``."""

    def __init__(self):
        super().__init__(1)

    def forward(self, x):
        if not recording_on_cpu(x):
            return super().forward(x)
        return average_by_matrix(x, *(np.ones([size, 1], "float32") for size in x.shape[2:]))


def avg_pool(kernel_size, stride):
    """``img_pool`` (avg) in ceil mode."""
    return AvgPool(kernel_size, stride, ceil_mode=True)


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

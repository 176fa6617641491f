"""The CPU-training pass: the same function and gradients as the plain models, the same parameters."""

import numpy as np
import paddle
import pytest

from paddle_googlenet.cpu_training import unfold_conv2d, use_cpu_training_layers
from paddle_googlenet.models import GoogLeNetOutputs, get_model, list_models


def without_dropout(name):
    """Constructor arguments that turn every dropout off, so training mode is deterministic."""
    if name == "googlenet":
        return {"dropout": 0.0, "aux_dropout": 0.0}
    return {"dropout": 0.0} if name == "alexnet" or name.startswith("vgg") else {}


@pytest.fixture
def float64():
    """Build and run in float64: rounding differences between two forms of the same arithmetic are
    then ~1e-16, far too small to move a max pool's choice between two near-equal inputs."""
    previous = paddle.get_default_dtype()
    paddle.set_default_dtype("float64")
    yield
    paddle.set_default_dtype(previous)


def outputs_and_gradients(model, x, labels):
    """Training-mode outputs of every head and the gradient of every trainable parameter."""
    model.train()
    outputs = model(x)
    heads = list(outputs) if isinstance(outputs, GoogLeNetOutputs) else [outputs]
    sum(paddle.nn.functional.cross_entropy(head, labels) for head in heads).backward()
    gradients = {name: p.grad.numpy() for name, p in model.named_parameters() if not p.stop_gradient}  # copies
    model.clear_gradients()
    return [head.numpy() for head in heads], gradients


def assert_close(actual, expected, rtol, atol, err_msg=""):
    """``np.testing.assert_allclose``'s check at ``np.allclose``'s speed, several times faster on VGG's
    10^8 fully connected weights; on failure, its report."""
    if not np.allclose(actual, expected, rtol=rtol, atol=atol):
        np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol, err_msg=err_msg)


@pytest.mark.parametrize("name", list_models())
def test_the_pass_computes_the_plain_models_outputs_and_gradients(name, float64):
    paddle.seed(0)
    model = get_model(name, num_classes=5, **without_dropout(name))
    x = paddle.to_tensor(np.random.default_rng(0).standard_normal((2, 3, 64, 64)))
    labels = paddle.to_tensor([1, 3])
    state_before = model.state_dict()
    plain_outputs, plain_gradients = outputs_and_gradients(model, x, labels)

    swapped = use_cpu_training_layers(model)
    assert swapped, "the pass should find layers to swap in every model"
    state_after = model.state_dict()
    assert list(state_after) == list(state_before)
    assert all(state_after[key] is state_before[key] for key in state_before)  # the same Parameter objects
    fast_outputs, fast_gradients = outputs_and_gradients(model, x, labels)

    for fast, plain in zip(fast_outputs, plain_outputs):
        assert_close(fast, plain, rtol=1e-9, atol=1e-12 * np.abs(plain).max())
    assert fast_gradients.keys() == plain_gradients.keys()
    for key, plain in plain_gradients.items():
        assert_close(fast_gradients[key], plain, rtol=1e-8, atol=1e-10 * np.abs(plain).max(), err_msg=key)


@pytest.mark.parametrize("name", ["googlenet", "alexnet", "resnet18"])
def test_evaluation_after_the_pass_is_exactly_the_plain_models(name):
    paddle.seed(0)
    model = get_model(name, num_classes=5)
    model.eval()
    x = paddle.randn([2, 3, 64, 64])
    with paddle.no_grad():
        plain = model(x).numpy()
        use_cpu_training_layers(model)
        model.train()  # and back: the mode switch reaches the swapped layers
        model.eval()
        np.testing.assert_array_equal(model(x).numpy(), plain)


def test_a_second_pass_swaps_nothing_and_changes_nothing():
    paddle.seed(0)
    model = get_model("googlenet", num_classes=5, **without_dropout("googlenet"))
    first = use_cpu_training_layers(model)
    x = paddle.randn([2, 3, 64, 64])
    model.train()
    before = model(x).logits.numpy()
    assert use_cpu_training_layers(model) == []
    np.testing.assert_array_equal(model(x).logits.numpy(), before)
    assert {"Conv2D", "Inception"} <= {kind for _, kind in first}  # and MaxPool2D from Paddle 3 on


class Doubled(paddle.nn.Layer):
    """A user's wrapper around a layer (as quantisation-aware training or a LoRA would put in)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def forward(self, x):
        return 2 * self.inner(x)


# A convolution or a ReLU inside a unit that a fused form of the pass computes: an Inception block's
# 1x1 reduction and GoogLeNet's stem.
@pytest.mark.parametrize("unit, part", [("ince3a.conv1", "conv"), ("ince3a.conv3r", "relu"), ("conv2_2", "relu")])
def test_a_layer_wrapped_by_the_user_keeps_its_wrapper_in_training(unit, part):
    paddle.seed(0)
    model = get_model("googlenet", num_classes=5, **without_dropout("googlenet"))
    owner = model
    for name in unit.split("."):
        owner = getattr(owner, name)
    plain = getattr(owner, part)
    setattr(owner, part, Doubled(plain))
    x = paddle.randn([2, 3, 64, 64])
    model.train()
    wrapped = model(x).logits.numpy()
    use_cpu_training_layers(model)
    np.testing.assert_allclose(model(x).logits.numpy(), wrapped, rtol=1e-5, atol=1e-6 * np.abs(wrapped).max())
    setattr(owner, part, plain)  # without the wrapper the output changes
    assert not np.allclose(model(x).logits.numpy(), wrapped, rtol=1e-3)


# Few output channels on a 9x11 map multiply a copy of the weight per image; 64 of them on a 5x5 map,
# the weight itself: both forms of unfold_conv2d, with the kernels the pass unfolds.
@pytest.mark.parametrize(
    "kernel, stride, padding, out_channels, size",
    [(5, 1, 2, 4, (9, 11)), (5, 2, 1, 4, (9, 11)), (7, 2, 3, 4, (9, 11)), (5, 1, 2, 64, (5, 5)),
     (3, 1, 1, 4, (7, 7)), (3, 2, 1, 64, (9, 11))],
)
def test_unfold_convolution_equals_paddles(kernel, stride, padding, out_channels, size, float64):
    paddle.seed(kernel + stride)
    x, weight = paddle.randn([2, 3, *size]), paddle.randn([out_channels, 3, kernel, kernel])
    x.stop_gradient = weight.stop_gradient = False
    expected = paddle.nn.functional.conv2d(x, weight, stride=stride, padding=padding)
    got = unfold_conv2d(x, weight, [stride, stride], padding)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-12)
    weights = paddle.randn(expected.shape)
    for a, b in zip(paddle.grad((got * weights).sum(), [x, weight]), paddle.grad((expected * weights).sum(), [x, weight])):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-11, atol=1e-12)

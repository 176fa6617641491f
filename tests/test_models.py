"""Model zoo: shapes, gradients, legacy parameter counts and geometry, output contract, golden outputs."""

from pathlib import Path

import numpy as np
import paddle
import pytest

from paddle_googlenet.models import GoogLeNetOutputs, get_model, list_models
from paddle_googlenet.models.layers import ConvReLU

GOLDEN_FILE = Path(__file__).parent / "data" / "golden_outputs.npz"

# Trainable parameters at num_classes=102, as the legacy code had them (docs/porting.md).
LEGACY_PARAMETER_COUNTS = {
    "alexnet": 58_699_238,
    "vgg13": 129_368_742,
    "vgg16": 134_678_438,
    "vgg19": 139_988_134,
    "resnet": 23_717_030,
    "resnet50": 23_717_030,
    "googlenet": 10_616_930,
    # Derived by the same rules; ResNet-18 uses the fixed [2, 2, 2, 2] blocks.
    "resnet18": 11_228_838,
    "resnet34": 21_336_998,
    "resnet101": 42_709_158,
    "resnet152": 58_352_806,
}


@pytest.fixture(scope="module", params=list_models())
def named_model(request):
    """Each model built once per module (VGG19 alone has 140M parameters)."""
    paddle.seed(0)
    return request.param, get_model(request.param)


def trainable_count(model):
    return sum(int(np.prod(p.shape)) for p in model.parameters() if not p.stop_gradient)


def main_logits(outputs):
    return outputs.logits if isinstance(outputs, GoogLeNetOutputs) else outputs


def test_registry_covers_the_legacy_choices():
    assert set(LEGACY_PARAMETER_COUNTS) == set(list_models())


def test_unknown_model_lists_valid_names():
    with pytest.raises(ValueError, match="googlenet.*vgg19|alexnet.*googlenet"):
        get_model("googlenett")


def test_parameter_count_matches_legacy(named_model):
    name, model = named_model
    assert trainable_count(model) == LEGACY_PARAMETER_COUNTS[name]


def test_googlenet_without_aux_heads_has_legacy_main_path_count():
    assert trainable_count(get_model("googlenet", aux_logits=False)) == 6_078_102


@pytest.mark.parametrize("size", [224, 64])
def test_eval_output_shape_and_finite(named_model, size):
    _, model = named_model
    model.eval()
    with paddle.no_grad():
        out = model(paddle.randn([1, 3, size, size]))
    assert isinstance(out, paddle.Tensor)
    assert out.shape == [1, 102]
    assert np.isfinite(out.numpy()).all()


def test_every_parameter_gets_a_gradient(named_model):
    _, model = named_model
    model.train()
    model.clear_gradients()
    outputs = model(paddle.randn([2, 3, 64, 64]))
    heads = list(outputs) if isinstance(outputs, GoogLeNetOutputs) else [outputs]
    loss = sum(paddle.nn.functional.cross_entropy(h, paddle.to_tensor([1, 2])) for h in heads)
    loss.backward()
    missing = [p.name for p in model.parameters() if not p.stop_gradient and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    model.clear_gradients()


@pytest.mark.parametrize("size", [96, 128, 299])
def test_googlenet_accepts_other_sizes_in_training(size):
    model = get_model("googlenet", num_classes=5)
    model.train()
    outputs = model(paddle.randn([2, 3, size, size]))
    assert [list(o.shape) for o in outputs] == [[2, 5]] * 3


def output_shapes(model, x, layer_names):
    """Output shape (C, H, W or features) of the named sublayers for input x, read by forward hooks."""
    layers = dict(model.named_sublayers())
    shapes, hooks = {}, []
    for name in layer_names:
        hooks.append(layers[name].register_forward_post_hook(lambda layer, inp, out, name=name: shapes.__setitem__(name, out.shape[1:])))
    model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def test_googlenet_legacy_geometry_at_224():
    model = get_model("googlenet")
    model.train()
    expected = {
        "conv1": [64, 112, 112],
        "pool1": [64, 56, 56],
        "conv2_2": [192, 56, 56],
        "pool2": [192, 28, 28],
        "ince3a": [256, 28, 28],
        "ince3b": [480, 28, 28],
        "pool3": [480, 14, 14],
        "ince4a": [512, 14, 14],
        "ince4b": [512, 14, 14],
        "ince4c": [512, 14, 14],
        "ince4d": [528, 14, 14],
        "ince4e": [832, 14, 14],
        "pool4": [832, 7, 7],
        "ince5a": [832, 7, 7],
        "ince5b": [1024, 7, 7],
        "aux1.pool": [512, 4, 4],
        "aux1.conv": [128, 4, 4],
        "aux2.conv": [128, 4, 4],
        "aux1.fc1": [1024],
    }
    assert output_shapes(model, paddle.randn([1, 3, 224, 224]), expected) == expected
    assert model.aux1.fc1.fc.weight.shape == [2048, 1024]


def test_alexnet_legacy_geometry_at_224():
    model = get_model("alexnet")
    model.eval()
    shapes = output_shapes(model, paddle.randn([1, 3, 224, 224]), ["features.0", "features.2", "features.5", "features.9"])
    assert shapes == {"features.0": [96, 54, 54], "features.2": [96, 27, 27], "features.5": [256, 13, 13], "features.9": [256, 6, 6]}
    assert model.classifier.fc1.fc.weight.shape == [9216, 4096]


def test_resnet50_stem_pool_is_ceil_mode_at_224():
    model = get_model("resnet50")
    model.eval()
    shapes = output_shapes(model, paddle.randn([1, 3, 224, 224]), ["stem", "stages.0", "stages.3"])
    assert shapes == {"stem": [64, 56, 56], "stages.0": [256, 56, 56], "stages.3": [2048, 7, 7]}


def test_resnet_projection_shortcuts_only_where_channels_change():
    model = get_model("resnet50")
    projections = [name for name, layer in model.named_sublayers() if name.endswith("shortcut") and not isinstance(layer, paddle.nn.Identity)]
    assert projections == ["stages.0.0.shortcut", "stages.1.0.shortcut", "stages.2.0.shortcut", "stages.3.0.shortcut"]
    model.eval()
    shapes = output_shapes(model, paddle.randn([1, 3, 224, 224]), ["stages.1.0.conv1", "stages.1.0.conv2"])
    assert shapes == {"stages.1.0.conv1": [128, 28, 28], "stages.1.0.conv2": [128, 28, 28]}  # stride on the first 1x1 (v1)
    assert [len(stage) for stage in get_model("resnet18").stages] == [2, 2, 2, 2]


def test_forward_hooks_of_every_sublayer_fire_in_training(named_model):
    """Every layer of a plain model runs as itself in training on the CPU (no fused path bypasses a sublayer
    or a user's hook; the CPU-training pass, applied by train.py, is tested in test_cpu_training.py)."""
    name, model = named_model
    fired, hooks = set(), []
    for sublayer_name, layer in model.named_sublayers():
        hooks.append(layer.register_forward_post_hook(lambda *args, sublayer_name=sublayer_name: fired.add(sublayer_name)))
    model.train()
    outputs = model(paddle.randn([2, 3, 64, 64]))
    sum(o.sum() for o in (outputs if isinstance(outputs, GoogLeNetOutputs) else [outputs])).backward()
    model.clear_gradients()
    for hook in hooks:
        hook.remove()
    # GoogLeNet's auxiliary heads pool a 14x14 map (224 input) with the legacy 5/3 pool, other sizes adaptively
    expected_idle = {"aux1.pool", "aux2.pool"} if name == "googlenet" else set()
    assert {n for n, _ in model.named_sublayers()} - fired == expected_idle


def test_googlenet_train_and_eval_contract():
    model = get_model("googlenet")
    calls = []
    model.aux1.register_forward_post_hook(lambda *args: calls.append("aux1"))
    model.aux2.register_forward_post_hook(lambda *args: calls.append("aux2"))
    x = paddle.randn([2, 3, 64, 64])
    model.train()
    outputs = model(x)
    assert isinstance(outputs, GoogLeNetOutputs) and outputs._fields == ("logits", "aux1", "aux2")
    assert calls == ["aux1", "aux2"]
    model.eval()
    calls.clear()
    assert isinstance(model(x), paddle.Tensor)
    assert calls == []


def test_legacy_layer_semantics():
    model = get_model("googlenet")
    convs = [layer for layer in model.sublayers() if isinstance(layer, paddle.nn.Conv2D)]
    relu_convs = [layer.conv for layer in model.sublayers() if isinstance(layer, ConvReLU)]
    assert len(convs) == len(relu_convs) == 3 + 9 * 6 + 2  # stem, 6 per inception, 1 per aux head
    assert all(conv.bias is not None for conv in convs)
    assert not any(isinstance(layer, paddle.nn.LocalResponseNorm) for layer in model.sublayers())
    pools = [layer for layer in model.sublayers() if isinstance(layer, (paddle.nn.MaxPool2D, paddle.nn.AvgPool2D))]
    assert pools and all(pool.ceil_mode for pool in pools)
    assert model.dropout.p == 0.4 and model.aux1.fc1.dropout.p == 0.7
    assert model.dropout.mode == "downscale_in_infer"
    alexnet = get_model("alexnet")
    assert sum(isinstance(layer, paddle.nn.LocalResponseNorm) for layer in alexnet.sublayers()) == 2


def test_legacy_dropout_scales_at_inference_only():
    model = get_model("googlenet", aux_logits=False)
    x = paddle.ones([4, 1024])
    model.dropout.eval()
    np.testing.assert_allclose(model.dropout(x).numpy(), 0.6)
    model.dropout.train()
    kept = model.dropout(x).numpy()
    assert set(np.unique(kept)) <= {0.0, 1.0}  # mask only, no 1/(1-p) rescaling


def fill_from_numpy(model, seed=0):
    """Overwrite every parameter and buffer with values from a seeded NumPy generator."""
    rng = np.random.default_rng(seed)
    state = model.state_dict()
    for name in sorted(state):
        shape = state[name].shape
        if name.endswith("_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif len(shape) == 4:
            value = rng.normal(0.0, np.sqrt(2.0 / np.prod(shape[1:])), shape)
        elif len(shape) == 2:
            value = rng.normal(0.0, np.sqrt(1.0 / shape[0]), shape)
        else:
            value = rng.normal(0.0, 0.1, shape) + (1.0 if name.endswith("weight") else 0.0)
        state[name] = value.astype("float32")
    model.set_state_dict(state)


def golden_input(size=64):
    return np.random.default_rng(1).uniform(-1.0, 1.0, (2, 3, size, size)).astype("float32")


def golden_logits(model):
    fill_from_numpy(model)
    model.eval()
    with paddle.no_grad():
        return model(paddle.to_tensor(golden_input())).numpy()


def test_golden_outputs(named_model):
    name, model = named_model
    expected = np.load(GOLDEN_FILE)[name]
    actual = golden_logits(model)
    scale = np.abs(expected).max()
    np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4 * scale)


if __name__ == "__main__":  # regenerate: python tests/test_models.py (only after a deliberate model change)
    np.savez(GOLDEN_FILE, **{name: golden_logits(get_model(name)) for name in list_models()})
    print(f"wrote {GOLDEN_FILE}")

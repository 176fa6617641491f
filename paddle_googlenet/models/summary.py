"""Layer tables, parameter counts and multiply-accumulates, computed by running the model.

``python -m paddle_googlenet.models.summary googlenet`` prints a Markdown table; ``--all`` prints the
one-line-per-model table used in the README. (``paddle.flops`` fails with NumPy 2.)
"""

import argparse

import numpy as np
import paddle

from .googlenet import Inception, InceptionAux
from .layers import ConvReLU, FCReLUDropout
from .registry import get_model, list_models
from .resnet import BasicBlock, Bottleneck, ConvBN

# The units a layer table lists; their insides are summed into them.
TABLE_UNITS = (
    Inception, InceptionAux, ConvReLU, FCReLUDropout, ConvBN, BasicBlock, Bottleneck,
    paddle.nn.Linear, paddle.nn.MaxPool2D, paddle.nn.AvgPool2D, paddle.nn.AdaptiveAvgPool2D,
    paddle.nn.LocalResponseNorm, paddle.nn.Dropout,
)


def layer_macs(layer, inputs, output):
    """Multiply-accumulates of one convolution or fc for one image (0 for other layers)."""
    if isinstance(layer, paddle.nn.Conv2D):
        kernel = int(np.prod(layer.weight.shape[1:]))  # C_in/groups × k × k
        return int(np.prod(output.shape[1:])) * kernel
    if isinstance(layer, paddle.nn.Linear):
        return int(np.prod(layer.weight.shape))
    return 0


def count_parameters(layer):
    return sum(int(np.prod(p.shape)) for p in layer.parameters() if not p.stop_gradient)


def table_units(model):
    """(name, layer) of the outermost ``TABLE_UNITS`` sublayers, in definition order."""
    units = []
    for name, layer in model.named_sublayers():
        if isinstance(layer, TABLE_UNITS) and not any(name.startswith(outer + ".") for outer, _ in units):
            units.append((name, layer))
    return units


def trace(model, image_size):
    """Rows (name, type, output shape, parameters, MACs) of the model's table units, in call order.

    The model runs in training mode so that GoogLeNet's auxiliary heads are included.
    """
    macs, rows, hooks = {}, [], []

    def count(layer, inputs, output):
        macs[id(layer)] = macs.get(id(layer), 0) + layer_macs(layer, inputs, output)

    def record(name):
        def hook(layer, inputs, output):
            total = sum(macs.get(id(sub), 0) for sub in [layer, *layer.sublayers()])
            shape = output.shape[1:] if isinstance(output, paddle.Tensor) else "tuple"
            rows.append((name, type(layer).__name__, shape, count_parameters(layer), total))

        return hook

    for layer in model.sublayers(include_self=True):
        hooks.append(layer.register_forward_post_hook(count))
    for name, layer in table_units(model):
        hooks.append(layer.register_forward_post_hook(record(name)))
    model.train()
    with paddle.no_grad():
        model(paddle.zeros([1, 3, image_size, image_size]))
    for hook in hooks:
        hook.remove()
    return rows


def total_macs(model, image_size=224, with_aux=False):
    """Forward MACs of one image; GoogLeNet's auxiliary heads only if ``with_aux``."""
    rows = trace(model, image_size)
    return sum(r[4] for r in rows if with_aux or not r[0].startswith("aux"))


def markdown_table(name, image_size=224):
    model = get_model(name)
    lines = ["| Layer | Type | Output (C×H×W) | Parameters | MACs |", "|---|---|---|---:|---:|"]
    for layer, kind, shape, params, macs in trace(model, image_size):
        shape = "×".join(map(str, shape)) if isinstance(shape, list) else shape
        lines.append(f"| `{layer}` | {kind} | {shape} | {params:,} | {macs:,} |")
    lines.append(f"| **total** | | | **{count_parameters(model):,}** | **{total_macs(model, image_size, True):,}** |")
    return "\n".join(lines)


def zoo_table(image_size=224):
    lines = ["| Model | Parameters (102 classes) | MACs at 224 (inference) |", "|---|---:|---:|"]
    for name in list_models():
        model = get_model(name)
        lines.append(f"| `{name}` | {count_parameters(model):,} | {total_macs(model, image_size) / 1e9:.2f} G |")
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", choices=list_models())
    parser.add_argument("--all", action="store_true", help="one line per model")
    parser.add_argument("--image-size", type=int, default=224)
    args = parser.parse_args()
    print(zoo_table(args.image_size) if args.all or not args.model else markdown_table(args.model, args.image_size))

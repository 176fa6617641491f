"""The figures and tables of the docs, generated from the code and from committed result files.

    python docs/figures.py            # writes every figure of docs/img/ that is drawn from the code or from docs/data/
    python docs/figures.py --tables   # prints the Markdown tables that docs/googlenet.md quotes (and §9's run)

The diagrams walk a freshly built ``GoogLeNet`` (its layers, their kernels and channel counts, and
the output shapes of a 224×224 forward pass), so they change when the code does;
``tests/test_docs.py`` checks that the committed SVGs and tables are what this script writes now.
The pictures need matplotlib (VisualDL installs it):

* ``digits_curves.png``: the quick-start run's ``metrics.jsonl``, committed as
  ``docs/data/digits_metrics.jsonl`` (``--metrics`` for another run);
* ``digits_confusion.png``: the confusion matrix that ``train.py --eval-only`` wrote for that run's
  best checkpoint, committed as ``docs/data/digits_confusion.json`` (``--confusion`` for another),
  drawn by the same function as the report's ``confusion.png``;
* ``legacy_resize.png``: what the legacy ``paddle.v2`` resize and this project's resize make of a
  non-square photo (scikit-learn's sample ``flower.jpg``), through the evaluation transform that
  ``infer.py`` applies to converted and to trained checkpoints.
"""

import argparse
import json
import math
import re
import sys
from html import escape
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))  # the repository, when run as ``python docs/figures.py``

from paddle_googlenet import configure_threads  # noqa: E402

configure_threads()  # before Paddle is imported
from paddle_googlenet.models import get_model  # noqa: E402
from paddle_googlenet.models.googlenet import INCEPTION_CONFIGS, Inception, InceptionAux  # noqa: E402
from paddle_googlenet.models.layers import ConvReLU  # noqa: E402
from paddle_googlenet.models.summary import count_parameters, trace  # noqa: E402

import paddle  # noqa: E402

IMAGE_SIZE = 224
METRICS_FILE = DOCS / "data" / "digits_metrics.jsonl"
CONFUSION_FILE = DOCS / "data" / "digits_confusion.json"
RECIPES_FILE = DOCS / "data" / "digits_recipes.json"  # the reference runs of docs/training.md
TRANSFER_FILE = DOCS / "data" / "digits_transfer.json"
IMG = DOCS / "img"
RUN_COMMAND = "python train.py googlenet --dataset digits"
EVAL_COMMAND = "python train.py googlenet --dataset digits --eval-only output/googlenet/best.pdckpt"
SAMPLE_PHOTO = "flower.jpg"  # sklearn.datasets.load_sample_image: a 640×427 photo that ships with scikit-learn

# The four branches of Inception.forward, as (label, colour, attribute names in order).
BRANCHES = (
    ("1×1", "#f6d67a", ("conv1",)),
    ("3×3", "#8fb8f0", ("conv3r", "conv3")),
    ("5×5", "#9fd69a", ("conv5r", "conv5")),
    ("pool proj", "#f2a89a", ("pool", "proj")),
)
REDUCE_COLOUR = "#fbf0c8"  # the 1×1 reductions in front of the 3×3 and 5×5 convolutions
FONT = "font-family='DejaVu Sans, Helvetica, Arial, sans-serif'"


# --------------------------------------------------------------------------------------------
# Facts read from the layers


def kernel_stride(layer):
    """(kernel, stride) of a ConvReLU, a convolution or a fixed-window pool."""
    if isinstance(layer, ConvReLU):
        layer = layer.conv
    if isinstance(layer, paddle.nn.Conv2D):
        return int(layer.weight.shape[2]), int(layer._stride[0])
    size, stride = layer.ksize, layer.stride
    return (size if isinstance(size, int) else size[0]), (stride if isinstance(stride, int) else stride[0])


def conv_weights(layer):
    """Weights (bias excluded) of a ConvReLU: C_in × k × k × C_out."""
    return math.prod(int(d) for d in layer.conv.weight.shape)


def conv_channels(layer):
    c_out, c_in = layer.conv.weight.shape[:2]
    return int(c_in), int(c_out)


def branch_width(module, attributes):
    """Output channels of one Inception branch: those of its last convolution."""
    return conv_channels(getattr(module, attributes[-1]))[1]


def traced_units(model=None):
    """[(name, layer, output shape tuple, parameters, MACs)] of GoogLeNet at 224×224, in call order."""
    model = model or get_model("googlenet")
    layers = dict(model.named_sublayers())
    rows = trace(model, IMAGE_SIZE)
    return [(name, layers[name], tuple(int(d) for d in shape), params, macs) for name, _, shape, params, macs in rows]


def describe(layer):
    """One-line description of a table unit, from its attributes."""
    if isinstance(layer, ConvReLU):
        (k, s), (c_in, c_out) = kernel_stride(layer), conv_channels(layer)
        padding = layer.conv._padding
        return f"conv {k}×{k}/{s}, pad {padding}, {c_in}→{c_out}, ReLU"
    if isinstance(layer, Inception):
        widths = [branch_width(layer, attrs) for _, _, attrs in BRANCHES]
        return "Inception " + " + ".join(map(str, widths))
    if isinstance(layer, InceptionAux):
        k, s = kernel_stride(layer.pool)
        reduced, hidden = conv_channels(layer.conv)[1], layer.fc1.fc.weight.shape[1]
        return f"aux head: avg pool {k}×{k}/{s}, conv 1×1→{reduced}, fc→{hidden} (dropout {layer.fc1.dropout.p}), fc"
    if isinstance(layer, paddle.nn.AdaptiveAvgPool2D):
        return "global average pool"
    if isinstance(layer, (paddle.nn.MaxPool2D, paddle.nn.AvgPool2D)):
        k, s = kernel_stride(layer)
        kind = "max" if isinstance(layer, paddle.nn.MaxPool2D) else "avg"
        return f"{kind} pool {k}×{k}/{s}" + (", ceil mode" if layer.ceil_mode else "")
    if isinstance(layer, paddle.nn.Dropout):
        return f"dropout {layer.p} (×{1 - layer.p:.1f} at inference)"
    if isinstance(layer, paddle.nn.Linear):
        return f"fc {layer.weight.shape[0]}→{layer.weight.shape[1]}"
    return type(layer).__name__


def receptive_fields(units):
    """{name: theoretical receptive field in input pixels} along the main path (None: the whole image).

    A k×k window with stride s widens the field by (k−1)·jump and multiplies the jump (the input
    pixels between neighbouring outputs) by s; an Inception module widens it by its widest branch.
    """
    field, jump, fields = 1, 1, {}
    for name, layer, _, _, _ in units:
        if isinstance(layer, InceptionAux):
            continue
        if isinstance(layer, (paddle.nn.AdaptiveAvgPool2D, paddle.nn.Linear)) or field is None:
            field = None
        elif isinstance(layer, Inception):
            field += jump * max(sum(kernel_stride(getattr(layer, a))[0] - 1 for a in attrs) for _, _, attrs in BRANCHES)
        elif not isinstance(layer, paddle.nn.Dropout):
            k, s = kernel_stride(layer)
            field, jump = field + (k - 1) * jump, jump * s
        fields[name] = field
    return fields


def depth_with_parameters(units):
    """Layers with weights on the longest path through the main network (the paper's "22 layers deep")."""
    depth = 0
    for _, layer, _, _, _ in units:
        if isinstance(layer, (ConvReLU, paddle.nn.Linear)):
            depth += 1
        elif isinstance(layer, Inception):
            depth += max(sum(isinstance(getattr(layer, a), ConvReLU) for a in attrs) for _, _, attrs in BRANCHES)
    return depth


def branch_rows(module, height, width):
    """[(branch, layer attribute, description, parameters, MACs)] of one Inception module on an H×W map."""
    rows = []
    for label, _, attrs in BRANCHES:
        for attr in attrs:
            layer = getattr(module, attr)
            if isinstance(layer, ConvReLU):
                k, _ = kernel_stride(layer)
                c_in, c_out = conv_channels(layer)
                what = f"conv {k}×{k}, {c_in}→{c_out}"
                rows.append((label, attr, what, count_parameters(layer), conv_weights(layer) * height * width))
            else:
                k, s = kernel_stride(layer)
                rows.append((label, attr, f"max pool {k}×{k}/{s}, pad {layer.padding}", 0, 0))
    return rows


def reduction_arithmetic(c_in=192, c_out=96, reduce=32, kernel=5, size=28):
    """Weights and MACs of a k×k convolution c_in→c_out, directly and behind a 1×1 reduction to ``reduce``.

    Built from real layers (biases left out, as in the paper's arithmetic): the figures quoted in
    googlenet.md (192×5×5×96 = 460,800 against 192×32 + 32×5×5×96 = 82,944).
    """
    direct = ConvReLU(c_in, c_out, kernel, padding=kernel // 2)
    first, second = ConvReLU(c_in, reduce, 1), ConvReLU(reduce, c_out, kernel, padding=kernel // 2)
    pixels = size * size
    return {
        "direct_weights": conv_weights(direct),
        "reduce_weights": conv_weights(first),
        "conv_weights": conv_weights(second),
        "reduced_weights": conv_weights(first) + conv_weights(second),
        "direct_macs": conv_weights(direct) * pixels,
        "reduced_macs": (conv_weights(first) + conv_weights(second)) * pixels,
    }


def conv_weights_of(config, c_in=None, reductions=True):
    """Convolution weights (no biases) of an Inception module from its INCEPTION_CONFIGS entry.

    Without ``reductions`` it is the paper's naive module (Fig. 2a): the 3×3 and 5×5 convolutions
    see all ``c_in`` channels and the pooling branch passes them all on, unprojected.
    """
    config_in, ch1, r3, ch3, r5, ch5, proj = config
    c_in = config_in if c_in is None else c_in
    if reductions:
        return c_in * (ch1 + r3 + r5 + proj) + 9 * r3 * ch3 + 25 * r5 * ch5
    return c_in * (ch1 + 9 * ch3 + 25 * ch5)


def naive_chain(units):
    """[(module, in, out, weights, MACs, real weights, real MACs)] if every module were naive.

    Each naive module's pooling branch forwards all its input channels, so the channels (and the
    cost of the next module) grow from module to module.
    """
    rows, channels = [], None
    for name, layer, shape, _, _ in units:
        if not isinstance(layer, Inception):
            continue
        config = INCEPTION_CONFIGS[name]
        c_in = config[0] if channels is None else channels
        _, ch1, _, ch3, _, ch5, _ = config
        channels = ch1 + ch3 + ch5 + c_in
        pixels = shape[1] * shape[2]
        weights, real = conv_weights_of(config, c_in, reductions=False), conv_weights_of(config)
        rows.append((name, c_in, channels, weights, weights * pixels, real, real * pixels))
    return rows


# --------------------------------------------------------------------------------------------
# Markdown tables


def fmt(n):
    return f"{n:,}"


def layer_table(units):
    fields = receptive_fields(units)
    lines = [
        "| Layer | What | Output (C×H×W) | Receptive field | Parameters | MACs |",
        "|---|---|---|---:|---:|---:|",
    ]
    for name, layer, shape, params, macs in units:
        field = fields.get(name, "–")
        field = "all" if field is None else field
        lines.append(f"| `{name}` | {describe(layer)} | {'×'.join(map(str, shape))} | {field} | {fmt(params)} | {fmt(macs)} |")
    total_params = sum(u[3] for u in units)
    total_macs = sum(u[4] for u in units)
    lines.append(f"| **total** | | | | **{fmt(total_params)}** | **{fmt(total_macs)}** |")
    return "\n".join(lines)


def module_table(units, name="ince3a"):
    _, module, shape, params, macs = next(u for u in units if u[0] == name)
    lines = ["| Branch | Layer | What | Parameters | MACs |", "|---|---|---|---:|---:|"]
    for branch, attr, what, p, m in branch_rows(module, shape[1], shape[2]):
        lines.append(f"| {branch} | `{name}.{attr}` | {what} | {fmt(p)} | {fmt(m)} |")
    widths = "+".join(str(branch_width(module, attrs)) for _, _, attrs in BRANCHES)
    what = f"{widths} = {shape[0]} channels, {shape[1]}×{shape[2]}"
    lines.append(f"| **concat** | `{name}` | {what} | **{fmt(params)}** | **{fmt(macs)}** |")
    return "\n".join(lines)


STAGES = (
    ("stem (conv1, conv2_1, conv2_2)", ("conv1", "conv2_1", "conv2_2")),
    ("inception 3a–3b (28×28)", ("ince3a", "ince3b")),
    ("inception 4a–4e (14×14)", ("ince4a", "ince4b", "ince4c", "ince4d", "ince4e")),
    ("inception 5a–5b (7×7)", ("ince5a", "ince5b")),
    ("classifier (fc)", ("fc",)),
    ("auxiliary heads (training only)", ("aux1", "aux2")),
)


def macs_table(units):
    """Where the multiply-accumulates and parameters go: by stage, then by kind of Inception branch."""
    by_name = {u[0]: u for u in units}
    inference_units = [u for u in units if not isinstance(u[1], InceptionAux)]
    inference = sum(u[4] for u in inference_units)
    lines = ["| Part | Parameters | MACs | Share of inference MACs |", "|---|---:|---:|---:|"]
    for label, names in STAGES:
        params = sum(by_name[n][3] for n in names)
        macs = sum(by_name[n][4] for n in names)
        share = "–" if names[0].startswith("aux") else f"{100 * macs / inference:.1f} %"
        lines.append(f"| {label} | {fmt(params)} | {fmt(macs)} | {share} |")
    inference_params = sum(u[3] for u in inference_units)
    lines.append(f"| **inference total** | **{fmt(inference_params)}** | **{fmt(inference)}** | 100 % |")
    lines += ["", "| Inside the nine Inception modules | Parameters | MACs | Share of inference MACs |", "|---|---:|---:|---:|"]
    kinds = {}
    for name, layer, shape, _, _ in units:
        if isinstance(layer, Inception):
            for branch, attr, _, p, m in branch_rows(layer, shape[1], shape[2]):
                kind = "pool + 1×1 projection" if branch == "pool proj" else (
                    f"{branch} branch, 1×1 reduction" if attr.endswith("r") else f"{branch} convolutions")
                total = kinds.setdefault(kind, [0, 0])
                total[0] += p
                total[1] += m
    for kind in ("1×1 convolutions", "3×3 branch, 1×1 reduction", "3×3 convolutions",
                 "5×5 branch, 1×1 reduction", "5×5 convolutions", "pool + 1×1 projection"):
        p, m = kinds[kind]
        lines.append(f"| {kind} | {fmt(p)} | {fmt(m)} | {100 * m / inference:.1f} % |")
    return "\n".join(lines)


def config_table():
    """INCEPTION_CONFIGS, with the share of each module's output channels that the 3×3 and 5×5 branches make."""
    lines = [
        "| Module | In | 1×1 | 3×3 reduce → 3×3 | 5×5 reduce → 5×5 | pool proj | Out | 3×3 share | 5×5 share |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (c_in, ch1, r3, ch3, r5, ch5, proj) in INCEPTION_CONFIGS.items():
        out = ch1 + ch3 + ch5 + proj
        lines.append(
            f"| {name} | {c_in} | {ch1} | {r3} → {ch3} | {r5} → {ch5} | {proj} | {out} | {100 * ch3 / out:.0f} % | {100 * ch5 / out:.0f} % |"
        )
    return "\n".join(lines)


def naive_table(units):
    lines = [
        "| Module | In → out channels, naive | Conv weights, naive | MACs, naive | Conv weights, GoogLeNet | MACs, GoogLeNet |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    rows = naive_chain(units)
    for name, c_in, c_out, weights, macs, real, real_macs in rows:
        lines.append(f"| {name} | {c_in:,} → {c_out:,} | {fmt(weights)} | {fmt(macs)} | {fmt(real)} | {fmt(real_macs)} |")
    totals = [sum(r[i] for r in rows) for i in (3, 4, 5, 6)]
    lines.append("| **total** | | " + " | ".join(f"**{fmt(t)}**" for t in totals) + " |")
    return "\n".join(lines)


def head_comparison(units):
    """(main fc parameters, an fc on the flattened 7×7×1024 map, a VGG-style 4096-wide fc on it)."""
    by_name = {u[0]: u for u in units}
    channels, height, width = by_name["ince5b"][2]
    classes = by_name["fc"][2][0]
    flat = channels * height * width
    return by_name["fc"][3], flat * classes + classes, flat * 4096 + 4096


def all_tables(units):
    return {
        "layers": layer_table(units),
        "module": module_table(units),
        "macs": macs_table(units),
        "configs": config_table(),
        "naive": naive_table(units),
    }


# --------------------------------------------------------------------------------------------
# SVG


class Svg:
    """A minimal SVG writer: boxes, text and arrows, in a deterministic order."""

    def __init__(self, width, height):
        self.width, self.height, self.items = width, height, []

    def rect(self, x, y, w, h, fill, stroke="#444", rx=4):
        self.items.append(f"<rect x='{x:g}' y='{y:g}' width='{w:g}' height='{h:g}' rx='{rx}' fill='{fill}' stroke='{stroke}'/>")

    def text(self, x, y, content, size=12, anchor="middle", weight="normal", colour="#111"):
        self.items.append(
            f"<text x='{x:g}' y='{y:g}' font-size='{size}' text-anchor='{anchor}' font-weight='{weight}' fill='{colour}'>{escape(content)}</text>"
        )

    def arrow(self, x1, y1, x2, y2):
        self.items.append(f"<line x1='{x1:g}' y1='{y1:g}' x2='{x2:g}' y2='{y2:g}' stroke='#444' stroke-width='1.3' marker-end='url(#head)'/>")

    def polyline(self, points):
        coords = " ".join(f"{x:g},{y:g}" for x, y in points)
        self.items.append(f"<polyline points='{coords}' fill='none' stroke='#444' stroke-width='1.3' marker-end='url(#head)'/>")

    def render(self):
        head = (
            f"<svg xmlns='http://www.w3.org/2000/svg' width='{self.width}' height='{self.height}' "
            f"viewBox='0 0 {self.width} {self.height}' {FONT}>\n"
            "<defs><marker id='head' markerWidth='8' markerHeight='8' refX='7' refY='4' orient='auto'>"
            "<path d='M0,0 L8,4 L0,8 z' fill='#444'/></marker></defs>\n"
            f"<rect width='{self.width}' height='{self.height}' fill='white'/>\n"
        )
        return head + "\n".join(self.items) + "\n</svg>\n"


def inception_module_svg(units, name="ince3a"):
    """The Inception module ``name`` with its real channel counts, parameters and MACs."""
    _, module, shape, params, macs = next(u for u in units if u[0] == name)
    c_in = conv_channels(module.conv1)[0]
    height, width = shape[1], shape[2]
    svg = Svg(780, 430)
    svg.text(390, 24, f"Inception module {name} ({module.__class__.__name__} in paddle_googlenet/models/googlenet.py)", 15, weight="bold")
    svg.rect(240, 44, 300, 40, "#e8e8e8")
    svg.text(390, 62, "previous layer", 12)
    svg.text(390, 77, f"{c_in} × {height} × {width}", 12, weight="bold")
    columns = [102, 294, 486, 678]
    box_w, box_h = 178, 50
    rows_y = [130, 230]
    ends = []
    for x, (_, colour, attrs) in zip(columns, BRANCHES):
        layers = [(a, getattr(module, a)) for a in attrs]
        slots = rows_y[-len(layers):]  # the single 1×1 sits on the lower row
        svg.polyline([(390, 84), (390, 104), (x, 104), (x, slots[0] - 2)])
        for (attr, layer), y in zip(layers, slots):
            if isinstance(layer, ConvReLU):
                k, _ = kernel_stride(layer)
                c_out = conv_channels(layer)[1]
                is_reduction = attr != attrs[-1]  # a 1×1 feeding the branch's 3×3 or 5×5
                fill = REDUCE_COLOUR if is_reduction else colour
                title = f"{k}×{k} conv → {c_out}" + (" (reduce)" if is_reduction else "")
                detail = f"{count_parameters(layer):,} params · {conv_weights(layer) * height * width / 1e6:.1f} M MACs"
            else:
                k, s = kernel_stride(layer)
                fill, title, detail = colour, f"{k}×{k} max pool, stride {s}", f"pad {layer.padding}: stays {height} × {width}"
            svg.rect(x - box_w / 2, y, box_w, box_h, fill)
            svg.text(x, y + 21, title, 12, weight="bold")
            svg.text(x, y + 38, detail, 10.5)
            svg.text(x - box_w / 2 + 4, y - 4, f"{name}.{attr}", 9.5, anchor="start", colour="#666")
        if len(slots) == 2:
            svg.arrow(x, slots[0] + box_h, x, slots[1] - 2)
        ends.append(x)
    concat_y = 330
    for x in ends:
        svg.polyline([(x, rows_y[1] + box_h), (x, concat_y - 20), (390, concat_y - 20), (390, concat_y - 2)])
    widths = [branch_width(module, attrs) for _, _, attrs in BRANCHES]
    svg.rect(190, concat_y, 400, 44, "#e8e8e8")
    svg.text(390, concat_y + 18, "concatenate on channels", 12)
    svg.text(390, concat_y + 35, f"{' + '.join(map(str, widths))} = {shape[0]} × {height} × {width}", 12, weight="bold")
    svg.text(390, 405, f"{params:,} parameters, {macs:,} multiply-accumulates per image. Every conv: bias + ReLU.", 12)
    svg.text(390, 422, "Pale boxes: the 1×1 reductions that make the 3×3 and 5×5 branches affordable.", 11, colour="#555")
    return svg.render()


def googlenet_svg(units):
    """The whole network: one box per unit with its output shape and parameters, aux heads on the side."""
    row_h, gap, top = 30, 10, 100
    main_rows = [u for u in units if not isinstance(u[1], InceptionAux)]
    height = top + len(main_rows) * (row_h + gap) + 20 + 60
    svg = Svg(940, height)
    x0, box_w, name_w = 110, 430, 68
    svg.text(470, 24, "GoogLeNet as built by paddle_googlenet.models.get_model('googlenet'), 224 × 224 input", 15, weight="bold")
    svg.text(x0 - 8, 52, "parameters", 11, anchor="end", colour="#555")
    svg.text(x0 + box_w - 6, 52, "output C × H × W", 11, anchor="end", colour="#555")
    svg.rect(x0, 60, box_w, 20, "#e8e8e8")
    svg.text(x0 + 8, 74, "input image", 11, anchor="start", weight="bold")
    svg.text(x0 + box_w - 6, 74, f"3×{IMAGE_SIZE}×{IMAGE_SIZE}", 11, anchor="end", weight="bold")
    y = top
    positions = {}
    for name, layer, shape, params, _ in main_rows:
        svg.arrow(x0 + box_w / 2, y - gap - (10 if y == top else 0), x0 + box_w / 2, y - 1)
        if isinstance(layer, Inception):
            widths = [branch_width(layer, attrs) for _, _, attrs in BRANCHES]
            left = x0
            for (_, colour, _), w in zip(BRANCHES, widths):
                svg.rect(left, y, box_w * w / shape[0], row_h, colour, stroke="none", rx=0)
                left += box_w * w / shape[0]
            svg.rect(x0, y, box_w, row_h, "none")
        else:
            svg.rect(x0, y, box_w, row_h, "#e8e8e8" if params == 0 else "#d9d2ef")
        svg.text(x0 + 8, y + 19, name, 11, anchor="start", weight="bold")
        svg.text(x0 + name_w, y + 19, describe(layer), 11, anchor="start")
        svg.text(x0 + box_w - 6, y + 19, "×".join(map(str, shape)), 11, anchor="end", weight="bold")
        svg.text(x0 - 8, y + 19, f"{params:,}" if params else "–", 11, anchor="end")
        positions[name] = y
        y += row_h + gap
    svg.arrow(x0 + box_w / 2, y - gap, x0 + box_w / 2, y - 1)
    svg.rect(x0, y, box_w, 20, "#e8e8e8")
    svg.text(x0 + 8, y + 14, "softmax cross-entropy: the main loss (weight 1)", 11, anchor="start")
    aux_x, aux_w = 600, 320
    previous = {u[0]: units[i - 1][0] for i, u in enumerate(units) if i}
    for name, layer, shape, params, _ in units:
        if not isinstance(layer, InceptionAux):
            continue
        source = previous[name]
        ay = positions[source]
        k, s = kernel_stride(layer.pool)
        hidden = layer.fc1.fc.weight.shape[1]
        lines = [
            f"{name}: auxiliary classifier on {source}",
            f"avg pool {k}×{k}/{s} → {conv_channels(layer.conv)[1]}-channel 1×1 conv",
            f"fc {layer.fc1.fc.weight.shape[0]}→{hidden} + ReLU + dropout {layer.fc1.dropout.p}",
            f"fc {hidden}→{shape[0]} · {params:,} parameters",
            "softmax cross-entropy × 0.3 (--aux-weight)",
            "computed in training mode only",
        ]
        svg.arrow(x0 + box_w, ay + row_h / 2, aux_x - 2, ay + row_h / 2)
        svg.rect(aux_x, ay, aux_w, 16 * len(lines) + 10, "#f3e3f3")
        for i, line in enumerate(lines):
            svg.text(aux_x + 8, ay + 18 + 16 * i, line, 11, anchor="start", weight="bold" if i == 0 else "normal")
    legend_y = height - 28
    svg.text(x0, legend_y, "Inception boxes are split by the share of output channels of each branch:", 11, anchor="start")
    lx = x0
    for label, colour, _ in BRANCHES:
        svg.rect(lx, legend_y + 8, 14, 12, colour, rx=0)
        svg.text(lx + 18, legend_y + 18, label, 11, anchor="start")
        lx += 110
    svg.text(lx + 10, legend_y + 18, f"total {sum(u[3] for u in units):,} parameters", 11, anchor="start")
    return svg.render()


# --------------------------------------------------------------------------------------------
# Training curves


def read_metrics(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def run_table(records):
    """The run of ``records`` (a ``metrics.jsonl``) epoch by epoch, as googlenet.md §9 shows it."""
    heads = [suffix for suffix in ("", "_aux1", "_aux2") if f"train_loss{suffix}" in records[0]]
    names = ", ".join(["main", *(suffix[1:] for suffix in heads[1:])])
    lines = [
        f"| Epoch | lr at its end | Train loss ({names}) | Train top-1 ({names}) | Val loss | Val top-1 | Val top-5 | Seconds | img/s |",
        "|---:|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in records:
        losses = ", ".join(f"{r[f'train_loss{s}']:.2f}" for s in heads)
        top1 = ", ".join(f"{100 * r[f'train_top1{s}']:.1f} %" for s in heads)
        lines.append(f"| {r['epoch']} | {r['lr']:g} | {losses} | {top1} | {r['val_loss']:.3f} | {100 * r['val_top1']:.1f} % | "
                     f"{100 * r['val_top5']:.1f} % | {r['seconds']:.0f} | {r['img_per_s']:.0f} |")
    return "\n".join(lines)


def plot_curves(records, out_path, title=RUN_COMMAND):
    """Loss (main and auxiliary heads, train and validation) and accuracy per epoch, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in records]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 4.4))
    loss_ax.plot(epochs, [r["train_loss"] for r in records], "o-", label="train, main head")
    for suffix, style in (("aux1", "--"), ("aux2", ":")):
        if f"train_loss_{suffix}" in records[0]:
            loss_ax.plot(epochs, [r[f"train_loss_{suffix}"] for r in records], style, label=f"train, {suffix} head")
    loss_ax.plot(epochs, [r["val_loss"] for r in records], "s-", label="validation (main head)")
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy", title="loss")
    loss_ax.legend()
    acc_ax.plot(epochs, [100 * r["train_top1"] for r in records], "o-", label="train top-1, main head")
    for suffix, style in (("aux1", "--"), ("aux2", ":")):
        if f"train_top1_{suffix}" in records[0]:
            acc_ax.plot(epochs, [100 * r[f"train_top1_{suffix}"] for r in records], style, label=f"train top-1, {suffix} head")
    acc_ax.plot(epochs, [100 * r["val_top1"] for r in records], "s-", label="validation top-1")
    acc_ax.plot(epochs, [100 * r["val_top5"] for r in records], "^-", label="validation top-5")
    acc_ax.set(xlabel="epoch", ylabel="%", title="accuracy", ylim=(0, 101))
    acc_ax.legend(loc="lower right")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.set_xticks(epochs)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out_path, dpi=100, metadata={"Software": None})
    plt.close(fig)


# --------------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------------
# Reference runs of docs/training.md (docs/data/digits_recipes.json, docs/data/digits_transfer.json):
# {"machine": ..., "runs": {name: {"command": ..., "metrics": [metrics.jsonl records]}}}


def read_runs(path):
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _top1(value):
    return f"{100 * value:.2f} %"


def recipes_table(document, seeds=(0, 1, 2)):
    """The legacy recipe against the options beyond it, per seed: last (best) validation top-1, and the EMA's."""
    runs = document["runs"]
    lines = ["| seed | legacy recipe: last (best) val top-1 | with the options: last (best) | their EMA, last |",
             "|---|---:|---:|---:|"]
    lasts = {"legacy": [], "options": [], "ema": []}
    for seed in seeds:
        legacy, options = runs[f"legacy-s{seed}"]["metrics"], runs[f"options-s{seed}"]["metrics"]
        best_legacy, best_options = (max(r["val_top1"] for r in records) for records in (legacy, options))
        lasts["legacy"].append(legacy[-1]["val_top1"])
        lasts["options"].append(options[-1]["val_top1"])
        lasts["ema"].append(options[-1]["val_top1_ema"])
        lines.append(f"| {seed} | {_top1(legacy[-1]['val_top1'])} ({_top1(best_legacy)}) | "
                     f"{_top1(options[-1]['val_top1'])} ({_top1(best_options)}) | {_top1(options[-1]['val_top1_ema'])} |")
    mean = {key: sum(values) / len(values) for key, values in lasts.items()}
    lines.append(f"| mean | {_top1(mean['legacy'])} | {_top1(mean['options'])} | {_top1(mean['ema'])} |")
    return "\n".join(lines)


TRANSFER_ROWS = (
    ("digits59", "from the 0–4 checkpoint"), ("digits59-scratch", "from scratch"),
    ("digits59-30", "from the 0–4 checkpoint"), ("digits59-scratch-30", "from scratch"),
    ("digits59-30-lr0.001", "from the 0–4 checkpoint"), ("digits59-scratch-30-lr0.001", "from scratch"),
)


def transfer_table(document):
    """Fine-tuning on 50 images of the digits 5–9 from the 0–4 checkpoint, against training from scratch."""
    lines = ["| 50 images of 5–9 | epochs | lr | after epoch 1 | best (epoch) | last |", "|---|---:|---:|---:|---:|---:|"]
    for name, label in TRANSFER_ROWS:
        run = document["runs"][name]
        records, command = run["metrics"], run["command"]
        decay = re.search(r"--lr-decay-epochs (\S+)", command)
        epochs = f"{len(records)}" + (f", `--lr-decay-epochs {decay[1]}`" if decay else "")
        lr = re.search(r"--lr (\S+)", command)
        best = max(records, key=lambda r: r["val_top1"])
        lines.append(f"| {label} | {epochs} | {float(lr[1]) if lr else records[0]['lr']:g} | {100 * records[0]['val_top1']:.1f} % | "
                     f"{100 * best['val_top1']:.1f} % ({best['epoch']}) | {100 * records[-1]['val_top1']:.1f} % |")
    return "\n".join(lines)


# Confusion matrix of the quick start's best checkpoint


def read_confusion(path):
    """``(matrix, class_names)`` of a ``confusion.json`` written by ``train.py --eval-only``."""
    import numpy as np

    document = json.loads(Path(path).read_text(encoding="utf-8"))
    return np.asarray(document["matrix"], dtype=np.int64), list(document["class_names"])


def plot_confusion(confusion_path, out_path, command=EVAL_COMMAND):
    """The report's confusion matrix (``reports.plot_confusion``, as ``--eval-only`` draws it), titled by its command."""
    from paddle_googlenet.reports import per_class_rows, plot_confusion as draw

    matrix, class_names = read_confusion(confusion_path)
    top1 = matrix.trace() / matrix.sum()
    figure = draw(matrix, class_names, per_class_rows(matrix, class_names), f"{command}\ntop-1 {100 * top1:.2f} %")
    figure.savefig(out_path, format="png", metadata={"Software": None})


# --------------------------------------------------------------------------------------------
# The legacy resize against this project's, on a non-square photo


def sample_photo():
    """scikit-learn's sample photo ``flower.jpg`` as an HWC uint8 RGB array (640×427, no download)."""
    from sklearn.datasets import load_sample_image

    return load_sample_image(SAMPLE_PHOTO)


def resize_steps(image):
    """``{"legacy": (resized, crop), "corrected": (resized, crop)}``: the legacy ``paddle.v2`` evaluation
    geometry (``resize_legacy_swapped``, what a converted checkpoint applies) and ``--corrected-resize``'s
    (``resize_short_side``), each followed by the evaluation transform's centre crop."""
    from paddle_googlenet.data.transforms import (
        EvalTransform,
        legacy_preprocess,
        resize_legacy_swapped,
        resize_short_side,
    )

    steps = {}
    for name, resize, corrected in (("legacy", resize_legacy_swapped, False), ("corrected", resize_short_side, True)):
        preprocess = legacy_preprocess(corrected_resize=corrected)
        resized = resize(image, preprocess["resize_size"], preprocess["interpolation"])
        steps[name] = (resized, EvalTransform(preprocess).geometry(image))
    return steps


def plot_legacy_resize(out_path):
    """The photo, then what each resize and the centre crop make of it, every panel at the same pixel scale."""
    from paddle_googlenet.charts import new_figure

    image = sample_photo()
    steps = resize_steps(image)
    height, width = image.shape[:2]
    panels = [
        (image, f"the photo: {width}×{height}"),
        (steps["legacy"][0], "legacy paddle.v2 resize: {w}×{h}\n(width and height swapped)"),
        (steps["legacy"][1], "its centre crop {w}×{h}\n(what the legacy model saw)"),
        (steps["corrected"][0], "--corrected-resize: {w}×{h}\n(short side 256, aspect kept)"),
        (steps["corrected"][1], "its centre crop {w}×{h}"),
    ]
    scale = 1 / 100  # inches per pixel: every panel at the same scale, so the shapes compare
    widths = [panel.shape[1] for panel, _ in panels]
    tallest = max(panel.shape[0] for panel, _ in panels)
    figure = new_figure(scale * (sum(widths) + 40 * len(panels)), scale * tallest + 0.9)
    grid = figure.add_gridspec(1, len(panels), width_ratios=widths, wspace=0.08)
    for index, (panel, title) in enumerate(panels):
        axes = figure.add_subplot(grid[0, index])
        axes.imshow(panel, extent=(0, panel.shape[1], panel.shape[0], 0))
        axes.set_xlim(0, panel.shape[1])
        axes.set_ylim(tallest, 0)  # the same vertical scale in every panel
        axes.set_axis_off()
        axes.set_title(title.format(w=panel.shape[1], h=panel.shape[0]), fontsize=8)
    figure.savefig(out_path, format="png", dpi=100, bbox_inches="tight", pad_inches=0.1, metadata={"Software": None})


# --------------------------------------------------------------------------------------------


def write_figures(metrics=METRICS_FILE, out_dir=IMG, confusion=CONFUSION_FILE, pictures=True):
    """Write the diagrams and, with ``pictures`` (matplotlib), the curves, the confusion matrix and the resize picture."""
    out_dir.mkdir(parents=True, exist_ok=True)
    units = traced_units()
    (out_dir / "inception_module.svg").write_text(inception_module_svg(units))
    (out_dir / "googlenet.svg").write_text(googlenet_svg(units))
    written = [out_dir / "inception_module.svg", out_dir / "googlenet.svg"]
    if pictures:
        plot_curves(read_metrics(metrics), out_dir / "digits_curves.png")
        plot_confusion(confusion, out_dir / "digits_confusion.png")
        plot_legacy_resize(out_dir / "legacy_resize.png")
        written += [out_dir / name for name in ("digits_curves.png", "digits_confusion.png", "legacy_resize.png")]
    return written


def get_args_parser():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tables", action="store_true", help="print the Markdown tables instead of writing figures")
    parser.add_argument("--metrics", type=Path, default=METRICS_FILE, help="metrics.jsonl of the run to plot (default: %(default)s)")
    parser.add_argument("--confusion", type=Path, default=CONFUSION_FILE,
                        help="confusion.json of an --eval-only report to draw (default: %(default)s)")
    parser.add_argument("--no-curves", action="store_true", help="write only the two diagrams (no matplotlib needed)")
    parser.add_argument("--out", type=Path, default=IMG, help="folder for the figures (default: %(default)s)")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.tables:
        units = traced_units()
        for title, table in all_tables(units).items():
            print(f"<!-- {title} -->\n{table}\n")
        print(f"<!-- run ({args.metrics}) -->\n{run_table(read_metrics(args.metrics))}\n")
        for title, path, table in (("recipes", RECIPES_FILE, recipes_table), ("transfer", TRANSFER_FILE, transfer_table)):
            if path.is_file():
                print(f"<!-- {title} (docs/training.md) -->\n{table(read_runs(path))}\n")
        main_fc, flat_fc, vgg_fc = head_comparison(units)
        print(f"main fc {main_fc:,}; fc on the flattened map {flat_fc:,}; a 4096-wide fc on it {vgg_fc:,}")
        print("reduction arithmetic:", reduction_arithmetic())
        print("depth (layers with weights on the longest path):", depth_with_parameters(units))
        return 0
    for path in write_figures(args.metrics, args.out, args.confusion, pictures=not args.no_curves):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

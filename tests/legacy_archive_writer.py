"""Write parameter archives as the legacy ``paddle.v2`` trainer did, for the tests of ``convert_v2``.

Written from the legacy sources, independently of the converter (nothing here comes from
``legacy_params``, ``legacy_names`` or ``convert_v2``), so that a mistake in the converter is not
repeated here:

* ``paddle/v2/parameters.py``, ``Parameters.to_tar``: for each parameter a tar member ``NAME``
  (``struct.pack("IIQ", 0, 4, N)`` then N float32) and a member ``NAME.protobuf`` (the serialized
  ``ParameterConfig``); the ``TarFile`` is never closed, so no end-of-archive blocks;
* ``proto/ParameterConfig.proto``: name = 1, size = 2, dims = 9 (repeated, proto2: unpacked),
  is_static = 18, and other fields the converter has to skip (learning_rate = 3 … as doubles);
* ``paddle/trainer/config_parser.py``: dims are empty for conv weights and batch-norm scales,
  [O, 1] for conv biases, [in, out] for fc weights, [1, C] for the other biases and the moving
  statistics (which are ``is_static``);
* the model files of PaddlePaddle/models ``image_classification`` (``googlenet.py``, ``alexnet.py``,
  ``vgg.py``, ``resnet.py``): which layers are named and in which order the others are created.

``legacy_tensors(model_name, state)`` turns a state dict of this project (``{key: array}``) into the
archive's tensors, named by the rules below; ``write_archive`` writes them.
"""

import gzip
import random
import struct
import tarfile
from dataclasses import dataclass
from io import BytesIO

import numpy as np

SUFFIXES = {"weight": "w0", "bias": "wbias", "_mean": "w1", "_variance": "w2"}
INCEPTION_BRANCHES = {"conv1": "1", "conv3r": "3r", "conv3": "3", "conv5r": "5r", "conv5": "5", "proj": "proj"}
ALEXNET_LAYERS = {  # alexnet.py: conv1, conv2 by img_conv, conv3-5 by one img_conv_group, then fc1, fc2, out
    "features.0.conv": ("conv", 0, "img_conv_layer", 0), "features.3.conv": ("conv", 1, "img_conv_layer", 1),
    "features.6.conv": ("conv", 2, "conv", 0), "features.7.conv": ("conv", 3, "conv", 1),
    "features.8.conv": ("conv", 4, "conv", 2),
    "classifier.fc1.fc": ("fc_layer", 0, "fc_layer", 0), "classifier.fc2.fc": ("fc_layer", 1, "fc_layer", 1),
    "classifier.fc3": ("fc_layer", 2, "fc_layer", 2),
}
RESNET_BLOCKS = {"resnet18": ("basic", [2, 2, 2, 2]), "resnet34": ("basic", [3, 4, 6, 3]),
                 "resnet50": ("bottleneck", [3, 4, 6, 3]), "resnet": ("bottleneck", [3, 4, 6, 3]),
                 "resnet101": ("bottleneck", [3, 4, 23, 3]),
                 "resnet152": ("bottleneck", [3, 8, 36, 3])}


@dataclass
class Tensor:
    """One archive tensor: its legacy name, values (any shape: written flat), ParameterConfig dims and is_static."""

    name: str
    values: np.ndarray
    dims: list
    is_static: bool = False
    key: str = None  # this project's key it came from


# Names --------------------------------------------------------------------------------------------

def legacy_tensors(model_name, state, early=False, blocks=None):
    """The archive tensors of a state dict of this project, in the legacy creation order.

    ``early``: the spellings of early ``paddle.v2`` releases (``___img_conv_layer_N__`` for
    ``paddle.layer.img_conv``, ``___batch_norm_layer_N__``). ``blocks``: a ResNet's blocks per stage.
    """
    if model_name == "googlenet":
        located = {key: (index, *googlenet_layer(key)) for index, key in enumerate(state)}
    elif model_name == "alexnet":
        located = {key: alexnet_layer(key, early) for key in state}
    elif model_name.startswith("vgg"):
        located = vgg_layers(state)
    else:
        located = resnet_layers(model_name, state, early, blocks)
    ordered = sorted(state, key=lambda key: (located[key][0], list(SUFFIXES).index(key.rsplit(".", 1)[1])))
    return [_tensor(key, state[key], *located[key][1:]) for key in ordered]


def googlenet_layer(key):
    """(layer name, kind) of a GoogLeNet key: googlenet.py names every conv and the auxiliary fc_o1/fc_o2;
    the three classifiers are unnamed fcs created as out, out1, out2."""
    path = key.split(".")[:-1]
    if path[0].startswith("ince"):
        return f"{path[0]}_{INCEPTION_BRANCHES[path[1]]}", "conv"
    if path[0].startswith("aux"):
        head = path[0][-1]
        return {"conv": (f"conv_o{head}", "conv"), "fc1": (f"fc_o{head}", "fc"), "fc2": (f"__fc_layer_{head}__", "fc")}[path[1]]
    if path == ["fc"]:
        return "__fc_layer_0__", "fc"
    return path[0], "conv"  # conv1, conv2_1, conv2_2


def alexnet_layer(key, early):
    prefix, number, early_prefix, early_number = ALEXNET_LAYERS[key.rsplit(".", 1)[0]]
    name = f"__{early_prefix}_{early_number}__" if early else f"__{prefix}_{number}__"
    return (10 * (prefix == "fc_layer") + number, name, "fc" if prefix == "fc_layer" else "conv")


def vgg_layers(state):
    """vgg.py: five img_conv_groups (all ___conv_N__, in every release), then fc1, fc2, out."""
    convs = sorted({tuple(int(i) for i in key.split(".")[1:3]) for key in state if key.startswith("features.")})
    located = {}
    for key in state:
        if key.startswith("features."):
            number = convs.index(tuple(int(i) for i in key.split(".")[1:3]))
            located[key] = (number, f"__conv_{number}__", "conv")
        else:
            number = ["classifier.fc1.fc", "classifier.fc2.fc", "classifier.fc3"].index(key.rsplit(".", 1)[0])
            located[key] = (1000 + number, f"__fc_layer_{number}__", "fc")
    return located


def resnet_units(model_name, blocks=None):
    """resnet.py's conv_bn_layer calls in order: the stem, then per block the projection shortcut (where
    the channel count changes) before the block's own convolutions."""
    kind, counts = RESNET_BLOCKS[model_name]
    convs = ["conv1", "conv2", "conv3"] if kind == "bottleneck" else ["conv1", "conv2"]
    units = ["stem.0"]
    for stage, count in enumerate(blocks or counts):
        for block in range(count):
            if block == 0 and (stage > 0 or kind == "bottleneck"):
                units.append(f"stages.{stage}.{block}.shortcut")
            units += [f"stages.{stage}.{block}.{conv}" for conv in convs]
    return units


def resnet_layers(model_name, state, early, blocks):
    units = {unit: number for number, unit in enumerate(resnet_units(model_name, blocks))}
    located = {}
    for key in state:
        path, attr = key.rsplit(".", 1)
        if path == "fc":
            located[key] = (len(units), "__fc_layer_0__", "fc")
            continue
        unit, part = path.rsplit(".", 1)
        number = units[unit]
        conv, norm = ("img_conv_layer", "batch_norm_layer") if early else ("conv", "batch_norm")
        located[key] = (number, f"__{conv}_{number}__", "conv") if part == "0" else (number, f"__{norm}_{number}__", "batch_norm")
    return located


def _tensor(key, values, layer, kind):
    suffix = SUFFIXES[key.rsplit(".", 1)[1]]
    shape = list(values.shape)
    if kind == "conv":
        dims = [] if suffix == "w0" else [shape[0], 1]
    elif kind == "fc":
        dims = shape if suffix == "w0" else [1, shape[0]]
    else:  # batch norm: the scale has no dims, the moving statistics and the shift [1, C]
        dims = [] if suffix == "w0" else [1, shape[0]]
    moving_statistic = kind == "batch_norm" and suffix in ("w1", "w2")
    return Tensor(f"_{layer}.{suffix}", np.asarray(values, np.float32), dims, moving_statistic, key)


# Bytes --------------------------------------------------------------------------------------------

def tensor_bytes(values, header=None):
    """A tensor member: ``struct.pack("IIQ", 0, 4, N)`` (or ``header``) and the float32 values."""
    values = np.ascontiguousarray(values, dtype="<f4").reshape(-1)
    return struct.pack("<IIQ", *(header or (0, 4, values.size))) + values.tobytes()


def _varint(value):
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _field(number, wire_type, payload=b""):
    return _varint(number << 3 | wire_type) + payload


def parameter_config(name, size, dims, is_static=False, packed_dims=False):
    """A serialized ``paddle.ParameterConfig``, fields in number order as protobuf writes them."""
    encoded = name.encode()
    data = _field(1, 2, _varint(len(encoded)) + encoded) + _field(2, 0, _varint(size))
    for number, value in ((3, 1.0), (4, 0.9), (6, 0.0005 * 128)):  # learning_rate, momentum, decay_rate
        data += _field(number, 1, struct.pack("<d", value))
    if packed_dims and dims:
        payload = b"".join(_varint(d) for d in dims)
        data += _field(9, 2, _varint(len(payload)) + payload)
    else:
        data += b"".join(_field(9, 0, _varint(d)) for d in dims)
    data += _field(11, 0, _varint(1))  # initial_strategy
    return data + (_field(18, 0, _varint(1)) if is_static else b"")


def archive_members(tensors, configs=True, packed_dims=False):
    """``[(member name, bytes)]``: each tensor, then its ParameterConfig (``configs``: True, False, or a set of names)."""
    members = []
    for tensor in tensors:
        members.append((tensor.name, tensor_bytes(tensor.values)))
        if configs is True or (configs and tensor.name in configs):
            config = parameter_config(tensor.name, tensor.values.size, tensor.dims, tensor.is_static, packed_dims)
            members.append((tensor.name + ".protobuf", config))
    return members


def write_members(path, members, compress=True, closed=False, shuffle_seed=None):
    """Write ``members`` into a tar at ``path``, gzip-compressed or plain, left unterminated unless ``closed``."""
    members = list(members)
    if shuffle_seed is not None:
        random.Random(shuffle_seed).shuffle(members)
    with open(path, "wb") as raw:
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=1, mtime=0) if compress else raw
        tar = tarfile.TarFile(fileobj=stream, mode="w", format=tarfile.GNU_FORMAT)  # Python 2's default format
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, BytesIO(data))
        if closed:
            tar.close()  # end-of-archive blocks, which the legacy trainer never wrote
        if compress:
            stream.close()
    return path


def write_archive(path, tensors, compress=True, closed=False, configs=True, shuffle_seed=None, packed_dims=False):
    """Write legacy ``tensors`` as the trainer did (see ``archive_members`` and ``write_members``)."""
    return write_members(path, archive_members(tensors, configs, packed_dims), compress, closed, shuffle_seed)

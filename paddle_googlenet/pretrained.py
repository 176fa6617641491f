"""Starting a new run from trained weights: ``train.py MODEL --pretrained PATH``.

``PATH`` is a checkpoint of the same model (written by ``train.py`` or ``convert_v2``), a ``.pdparams``
state dict saved with ``paddle.save(model.state_dict(), PATH)`` or a ``.safetensors`` file, holding
this project's model or, for the models whose layers match the legacy ones tensor for tensor
(ResNet-18/34/50/101/152 and VGG-13/16/19), the same ``paddle.vision.models`` model: their names are
mapped by ``vision_names_to_ours``. Every file is read by ``safe_load``, which never runs code from it.
A checkpoint also says what its weights were trained on (its preprocessing), which the run adopts
(``training.choose_preprocess``).

Every tensor is loaded where the shapes agree. The classifier layers (the ``Linear`` layers that
output the class scores: ``fc``, ``aux1.fc2`` and ``aux2.fc2`` in GoogLeNet, ``classifier.fc3`` in
AlexNet and VGG, ``fc`` in ResNet) keep their fresh initialisation when the class count differs, or
when a checkpoint's class names are not this run's; any other tensor whose shape differs is an error
naming it. A checkpoint gives the weights its run chose its best checkpoint by (its moving average
for a ``--best-of ema`` run, ``checkpoint.chosen_weights``). See docs/training.md.
"""

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .checkpoint import SUFFIX, CheckpointError, load_checkpoint, read_record, weights_of
from .errors import UserError
from .runtime import import_paddle
from .safe_load import UnreadableFileError, load as safe_load, load_safetensors

paddle = import_paddle()

SHOWN = 3  # tensor names a message lists before "..."


class PretrainedError(UserError):
    """Weights that cannot start this run; ``str()`` says which tensor or file and why."""


@dataclass
class StartingWeights:
    """Weights to start a run from: a state dict, and what the file says about them (checkpoints only)."""

    weights: dict
    class_names: Optional[list] = None
    preprocess: Optional[dict] = None  # the inputs they were trained on (a checkpoint's preprocessing)


def read_weights(path, model_name):
    """The ``StartingWeights`` at ``path``: a checkpoint, a ``.safetensors`` file or a ``.pdparams`` state dict.

    Every file is read without running code from it (``safe_load``).
    """
    path = Path(path)
    if not path.is_file():
        raise PretrainedError(f"--pretrained {path}: no such file")
    if path.suffix == SUFFIX:
        return _checkpoint_weights(path, model_name)
    if path.suffix == ".safetensors":
        return StartingWeights(vision_names_to_ours(model_name, load_safetensors(path)))
    try:
        state = safe_load(path)
    except UnreadableFileError as exc:
        raise PretrainedError(f"--pretrained {path}: not a readable Paddle state dict ({exc})") from None
    if not isinstance(state, dict) or not state or not all(hasattr(value, "shape") for value in state.values()):
        raise PretrainedError(f"--pretrained {path}: not a state dict (expected paddle.save(model.state_dict(), PATH), "
                              f"a *.safetensors file or a *{SUFFIX} checkpoint)")
    return StartingWeights(vision_names_to_ours(model_name, state))


def _checkpoint_weights(path, model_name):
    try:
        state = load_checkpoint(path)
    except CheckpointError as exc:
        raise PretrainedError(f"--pretrained {exc}") from None
    record = read_record(state)
    if record.model_name != model_name:
        raise PretrainedError(f"--pretrained {path} holds a {record.model_name} model, not {model_name}")
    return StartingWeights(weights_of(state), record.class_names, record.preprocess)


def _vgg_renames(model_name, keys):
    from .models.vgg import VGG_DEPTHS

    # The k-th convolution of paddle.vision's ``features`` (numbered with its ReLU and pool layers)
    # is the k-th of ours, ``features.<group>.<position>.conv``.
    positions = [(group, i) for group, count in enumerate(VGG_DEPTHS[model_name]) for i in range(count)]
    indices = sorted({int(match.group(1)) for match in map(re.compile(r"features\.(\d+)\.weight$").match, keys) if match})
    renames = {rf"features\.{index}\.": f"features.{group}.{i}.conv." for index, (group, i) in zip(indices, positions)}
    renames.update({r"classifier\.0\.": "classifier.fc1.fc.", r"classifier\.3\.": "classifier.fc2.fc.", r"classifier\.6\.": "classifier.fc3."})
    return renames


# paddle.vision ResNet name -> ours (regular expressions applied once to the start of each name).
_RESNET_RENAMES = {
    r"conv1\.": "stem.0.0.",
    r"bn1\.": "stem.0.1.",
    r"layer(\d)\.(\d+)\.conv(\d)\.": lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.conv{m[3]}.0.",
    r"layer(\d)\.(\d+)\.bn(\d)\.": lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.conv{m[3]}.1.",
    r"layer(\d)\.(\d+)\.downsample\.(\d)\.": lambda m: f"stages.{int(m[1]) - 1}.{m[2]}.shortcut.{m[3]}.",
}


def vision_names_to_ours(model_name, state):
    """``state`` with ``paddle.vision.models`` names (``layer1.0.conv1.weight``, ``features.0.weight``)
    renamed to this project's (``stages.0.0.conv1.0.weight``, ``features.0.0.conv.weight``); other
    state dicts are returned unchanged."""
    keys = list(state)
    if model_name.startswith("resnet") and any(key.startswith("layer1.") for key in keys):
        renames = _RESNET_RENAMES
    elif model_name.startswith("vgg") and "features.0.weight" in state and "classifier.0.weight" in state:
        renames = _vgg_renames(model_name, keys)
    else:
        return state
    renamed = {}
    for key, value in state.items():
        for pattern, replacement in renames.items():
            match = re.match(pattern, key)
            if match:
                new = replacement(match) if callable(replacement) else replacement
                key = new + key[match.end():]
                break
        renamed[key] = value
    return renamed


def classifier_layers(model, num_classes):
    """Names of the ``Linear`` layers that output ``num_classes`` scores (the heads' classifiers)."""
    return [name for name, layer in model.named_sublayers()
            if isinstance(layer, paddle.nn.Linear) and layer.weight.shape[1] == num_classes]


def load_pretrained(model, model_name, class_names, starting, path):
    """Load ``starting`` (``StartingWeights`` read from ``path``) into ``model``, a fresh ``model_name`` for ``class_names``.

    Returns a one-line report: how many tensors were loaded, re-initialised (classifier layers of
    other classes, or classifier tensors missing from the file), left at their initialisation
    because the file lacks them, and ignored (in the file, not in the model).
    """
    weights = starting.weights
    heads = tuple(name + "." for name in classifier_layers(model, len(class_names)))
    other_classes = starting.class_names is not None and starting.class_names != list(class_names)
    state = model.state_dict()
    loaded, reinitialised, absent = [], [], []
    for key, tensor in state.items():
        value = weights.get(key)
        if value is not None and list(value.shape) == list(tensor.shape) and not (other_classes and key.startswith(heads)):
            state[key] = value
            loaded.append(key)
        elif key.startswith(heads):
            reinitialised.append(key)
        elif value is not None:
            raise PretrainedError(
                f"--pretrained {path}: {key} has shape {list(value.shape)} there and {list(tensor.shape)} in this "
                f"{model_name}; only the classifier layers ({', '.join(h[:-1] for h in heads)}) may differ"
            )
        else:
            absent.append(key)
    if not loaded:
        raise PretrainedError(f"--pretrained {path}: none of its {len(weights)} tensors is a tensor of this {model_name}")
    model.set_state_dict({key: np.asarray(value) if not hasattr(value, "numpy") else value for key, value in state.items()})
    ignored = [key for key in weights if key not in state]
    return _report(path, loaded, reinitialised, absent, ignored, other_classes, model_name)


def _report(path, loaded, reinitialised, absent, ignored, other_classes, model_name):
    report = f"{len(loaded)} tensors loaded from {path}, {len(reinitialised)} re-initialised"
    if reinitialised:
        report += f" ({', '.join(sorted({key.rsplit('.', 1)[0] for key in reinitialised}))}"
        report += ": other classes)" if other_classes else ")"
    if absent:
        report += f", {len(absent)} not in the file (kept at initialisation: {_names(absent)})"
    report += f", {len(ignored)} ignored"
    if ignored:
        report += (f" ({_names(ignored)}: tensors this {model_name} does not have; are they the weights of "
                   "another model or depth?)")
    return report


def _names(keys):
    return ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")

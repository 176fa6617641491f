"""Where each tensor of a legacy ``paddle.v2`` archive goes: the legacy names of this project's models,
and matching an archive's tensors to them.

**The names.** ``paddle/trainer/config_parser.py`` names a layer's parameters ``"_" + LAYER + ".w<k>"``
(its k-th input's weights) and ``"_" + LAYER + ".wbias"`` (its bias). ``LAYER`` is the name the model
code gave (GoogLeNet: ``conv1``, ``ince3a_1`` … ``ince5b_proj``, ``conv_o1``, ``fc_o1``) or else one
made by ``DefaultNameFactory`` (``trainer_config_helpers/default_decorators.py``): ``__PREFIX_N__``,
one counter per layer function, counted in creation order over the whole training process: ``conv``
(``img_conv`` and ``img_conv_group``), ``fc_layer`` and ``batch_norm``. Early ``paddle.v2`` releases
wrapped the layer functions differently and spelled ``paddle.layer.img_conv`` as
``__img_conv_layer_N__`` and ``paddle.layer.batch_norm`` as ``__batch_norm_layer_N__``, while
``networks.img_conv_group`` still made ``__conv_N__`` from a counter of its own.

So a conv layer gives ``.w0`` [O, C, kH, kW] and ``.wbias`` [O] (none in ResNet), an fc layer ``.w0``
[in, out] and ``.wbias`` [out], a batch norm ``.w0`` (scale), ``.w1`` (moving mean), ``.w2`` (moving
variance) and ``.wbias`` (shift): exactly the layouts of Paddle's ``Conv2D``, ``Linear`` and
``BatchNorm2D``, so no tensor is ever transposed, only reshaped.

**The tables** (``legacy_table``) are generated from this project's models, built under
``paddle.LazyGuard`` (shapes without memory), by walking their layers in the legacy creation order:
the order of definition, except that a residual block's projection shortcut comes first (the legacy
``resnet.py`` called ``shortcut()`` before the block's convolutions, so it got the lower numbers).

**Matching** (``match_archive``) tolerates the ways real archives differ from the tables: explicit
names are looked up as they are; the counter-named layers of each prefix are taken, sorted by N, as
one contiguous run aligned with the table's layers of that prefix: at the table's own numbers if they
fit (matched by name), otherwise at the one position where every size fits (matched by creation
order: layers the training script built besides the model, before or after it, shift the numbers).
No fit, or more than one, is a ``MatchError``. ``match_model`` also finds the class count (from the
classifier's shape) and ``identify`` which model an archive holds when it is not the one asked for.
"""

import functools
import math
import re
from collections import Counter
from dataclasses import dataclass, field

from .errors import UserError
from .runtime import import_paddle

paddle = import_paddle()

# Parameters of each kind of legacy layer: (legacy suffix, attribute of the Paddle layer).
PARAMETERS = {
    "conv": (("w0", "weight"), ("wbias", "bias")),
    "fc": (("w0", "weight"), ("wbias", "bias")),
    "batch_norm": (("w0", "weight"), ("w1", "_mean"), ("w2", "_variance"), ("wbias", "bias")),
}
MOVING_STATISTICS = ("w1", "w2")  # batch norm's moving mean and variance: is_static in their ParameterConfig
LATER_PREFIXES = {"conv": "conv", "fc": "fc_layer", "batch_norm": "batch_norm"}
EARLY_ONLY_PREFIXES = ("img_conv_layer", "batch_norm_layer")
AUTO_NAME = re.compile(r"^__(?P<prefix>\w+?)_(?P<number>\d+)__$")
OPTIONAL_PATHS = ("aux1.", "aux2.")  # GoogLeNet's auxiliary heads: absent from archives of early trainers
LEGACY_RESNET18_BLOCKS = [2, 2, 2, 1]  # the legacy resnet.py's ResNet-18; this project's has [2, 2, 2, 2]
SHOWN = 4  # names listed in a message before "and N more"


class MatchError(UserError):
    """An archive whose tensors cannot be matched to a model's parameters, unambiguously and completely."""


@dataclass(frozen=True)
class LegacyParameter:
    """One tensor of a legacy layer: its suffix (``w0``, ``wbias``…), this project's key and shape."""

    suffix: str
    key: str
    shape: tuple

    @property
    def size(self):
        return math.prod(self.shape)


@dataclass(frozen=True)
class LegacyLayer:
    """A legacy layer with parameters, as the later (``name``) and early (``early_name``) trainers named it."""

    name: str
    early_name: str
    kind: str  # "conv", "fc" or "batch_norm"
    params: tuple
    optional: bool = False

    def spelled(self, early):
        return self.early_name if early else self.name


@dataclass(frozen=True)
class LegacyTable:
    """The legacy layers of one model, in creation order, and the model arguments they were made for."""

    model_name: str
    model_kwargs: dict = field(hash=False)
    layers: tuple
    block: str = None  # a ResNet's residual blocks: "basic" or "bottleneck"

    @property
    def title(self):
        blocks = self.model_kwargs.get("blocks")
        return f"{self.model_name} with blocks {list(blocks)}" if blocks else self.model_name


@dataclass(frozen=True)
class Match:
    """How an archive's tensors map onto a model: ``placed`` maps this project's keys to archive names."""

    table: LegacyTable
    placed: dict
    fresh: tuple  # keys of optional layers the archive does not hold
    unused: tuple  # archive tensors placed nowhere
    early: bool  # the archive spells its names as early paddle.v2 releases did
    renames: tuple  # (archive layer, table layer) of the layers matched by creation order

    @property
    def description(self):
        """``"53 conv+BN units, bottleneck blocks"`` or ``"13 convolutions, 3 fc layers"`` (of the layers matched)."""
        kinds = Counter(layer.kind for layer in self.table.layers if not (layer.optional and self.fresh))
        if self.table.block:
            return f"{kinds['batch_norm']} conv+BN units, {self.table.block} blocks"
        return f"{kinds['conv']} convolutions, {kinds['fc']} fc layer{'s' * (kinds['fc'] != 1)}"


def legacy_order(layer, prefix=""):
    """``(path, layer)`` of every conv, fc and batch-norm layer, in the legacy creation order."""
    children = sorted(layer.named_children(), key=lambda child: child[0] != "shortcut")  # stable: shortcut first
    for name, child in children:
        kind = _kind(child)
        if kind:
            yield f"{prefix}{name}", child
        else:
            yield from legacy_order(child, f"{prefix}{name}.")


def _kind(layer):
    nn = paddle.nn
    for kind, types in (("conv", nn.Conv2D), ("fc", nn.Linear), ("batch_norm", nn.BatchNorm2D)):
        if isinstance(layer, types):
            return kind
    return None


def legacy_table(model_name, num_classes, **model_kwargs):
    """The ``LegacyTable`` of a registered model: every parameter's legacy name, key and shape, in order."""
    from .models import get_model

    with paddle.LazyGuard():
        model = get_model(model_name, num_classes=num_classes, **model_kwargs)
    shapes = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    namer, layers = _Namer(model), []
    for path, layer in legacy_order(model):
        params = tuple(LegacyParameter(suffix, f"{path}.{attr}", shapes.pop(f"{path}.{attr}"))
                       for suffix, attr in PARAMETERS[_kind(layer)] if f"{path}.{attr}" in shapes)
        layers.append(LegacyLayer(*namer.names(path, _kind(layer)), _kind(layer), params, path.startswith(OPTIONAL_PATHS)))
    if shapes:
        raise RuntimeError(f"{model_name}: no legacy name for {sorted(shapes)}")  # a layer type this module does not know
    return LegacyTable(model_name, dict(model_kwargs, num_classes=num_classes), tuple(layers), _block_kind(model))


def _block_kind(model):
    from .models.resnet import BasicBlock, Bottleneck

    kinds = {BasicBlock: "basic", Bottleneck: "bottleneck"}
    return next((kinds[type(layer)] for layer in model.sublayers() if type(layer) in kinds), None)


class _Namer:
    """Gives each layer its legacy names: explicit where the legacy model code named it, counters otherwise."""

    def __init__(self, model):
        from .models.alexnet import AlexNet
        from .models.vgg import VGG

        self.counters = Counter()
        # Convolutions made by networks.img_conv_group kept the __conv_N__ name in early releases too:
        # all of VGG's; AlexNet's last three (img_conv_group(conv_num_filter=[384, 384, 256])).
        self.group_made = {VGG: lambda n: True, AlexNet: lambda n: n >= 2}.get(type(model), lambda n: False)
        self.explicit = _googlenet_name if _is_googlenet(model) else lambda path: None

    def names(self, path, kind):
        """``(later name, early name)`` of the layer at ``path``, e.g. ``("__conv_3__", "__img_conv_layer_3__")``."""
        explicit = self.explicit(path)
        if explicit:
            return explicit, explicit
        later = LATER_PREFIXES[kind]
        number = self._count(later)
        early = {"conv": "conv" if self.group_made(number) else "img_conv_layer",
                 "batch_norm": "batch_norm_layer"}.get(kind, later)
        return f"__{later}_{number}__", f"__{early}_{self._count('early ' + early)}__"

    def _count(self, counter):
        number = self.counters[counter]
        self.counters[counter] += 1
        return number


def _is_googlenet(model):
    from .models.googlenet import GoogLeNet

    return isinstance(model, GoogLeNet)


GOOGLENET_BRANCHES = {"conv1": "1", "conv3r": "3r", "conv3": "3", "conv5r": "5r", "conv5": "5", "proj": "proj"}


def _googlenet_name(path):
    """The name the legacy ``googlenet.py`` gave a layer (``ince3a_3r``, ``conv_o1``…), None for its unnamed fcs."""
    parts = path.split(".")
    if parts[0].startswith("ince"):
        return f"{parts[0]}_{GOOGLENET_BRANCHES[parts[1]]}"
    if parts[0].startswith("aux"):
        return {"conv": f"conv_o{parts[0][3:]}", "fc1": f"fc_o{parts[0][3:]}"}.get(parts[1])
    return parts[0] if parts[0] != "fc" else None  # conv1, conv2_1, conv2_2; fc: ___fc_layer_0__


def tensor_name(layer_name, suffix):
    """The archive member of a layer's parameter: ``tensor_name("__conv_0__", "w0")`` is ``___conv_0__.w0``."""
    return f"_{layer_name}.{suffix}"


def _shown(layer_name):
    return f"_{layer_name}"  # as the layer appears in its tensors' names: ___fc_layer_3__


def _prefix(layer_name):
    """``fc_layer`` for ``__fc_layer_3__``; None for an explicit name."""
    found = AUTO_NAME.match(layer_name)
    return found["prefix"] if found else None


def _number(layer_name):
    return int(AUTO_NAME.match(layer_name)["number"])


def archive_layers(tensors):
    """``{layer name: {suffix: size}}`` of the archive tensors named ``_LAYER.SUFFIX`` (others cannot be placed)."""
    layers = {}
    for name, tensor in tensors.items():
        layer, dot, suffix = name[1:].rpartition(".")
        if name.startswith("_") and dot and layer:
            layers.setdefault(layer, {})[suffix] = tensor.size
    return layers


def _fits(layer, params):
    """Whether an archive layer's tensors (``{suffix: size}``) are exactly this table layer's, size for size."""
    return set(params) == {param.suffix for param in layer.params} and all(params[p.suffix] == p.size for p in layer.params)


def match_archive(table, tensors):
    """Match an archive's tensors (``{name: tensor}``, each with a ``size``) to ``table``; return a ``Match``.

    Optional layers (GoogLeNet's auxiliary heads) are matched when the archive holds any of their
    named layers, and left ``fresh`` otherwise. Raises ``MatchError`` when a tensor the model needs is
    missing, when a named tensor has the wrong size, or when a prefix's layers fit nowhere or in more
    than one place.
    """
    archive = archive_layers(tensors)
    early = any(_prefix(name) in EARLY_ONLY_PREFIXES for name in archive)
    with_optional = any(layer.optional and _prefix(layer.name) is None and layer.name in archive for layer in table.layers)
    layers = [layer for layer in table.layers if with_optional or not layer.optional]
    pairs, renames, missing = {}, [], []
    for layer in layers:
        if _prefix(layer.name) is None:
            _match_named(table, layer, archive, pairs, missing)
    for prefix, group in _groups(layers, early).items():
        _align_group(table, prefix, group, archive, early, pairs, renames, missing)
    if missing:
        raise MatchError(f"the archive lacks {len(missing)} tensor{'s' * (len(missing) > 1)} that {table.title} needs: "
                         f"{_listed(missing)}")
    placed = {param.key: tensor_name(name, param.suffix) for layer, name in pairs.items() for param in layer.params}
    fresh = tuple(param.key for layer in table.layers if layer not in pairs for param in layer.params)
    unused = tuple(sorted(set(tensors) - set(placed.values())))
    return Match(table, placed, fresh, unused, early, tuple(renames))


def _listed(names):
    more = f" and {len(names) - SHOWN} more" if len(names) > SHOWN else ""
    return ", ".join(names[:SHOWN]) + more


def _groups(layers, early):
    """The counter-named layers by the prefix they are spelled with, each list in creation order."""
    groups = {}
    for layer in layers:
        prefix = _prefix(layer.spelled(early))
        if prefix:
            groups.setdefault(prefix, []).append(layer)
    return groups


def _match_named(table, layer, archive, pairs, missing):
    params = archive.get(layer.name, {})
    absent = [tensor_name(layer.name, param.suffix) for param in layer.params if param.suffix not in params]
    if absent:
        missing.extend(absent)
    elif not _fits(layer, params):
        raise MatchError(f"{_difference(layer, layer.name, params)}: it fits no parameter of {table.title}")
    else:
        pairs[layer] = layer.name


def _align_group(table, prefix, group, archive, early, pairs, renames, missing):
    """Align the table's ``group`` with one contiguous run of the archive's ``__PREFIX_N__`` layers, sorted by N."""
    found = sorted((name for name in archive if _prefix(name) == prefix), key=_number)
    wanted = [layer.spelled(early) for layer in group]
    if len(found) < len(group):
        missing.extend(tensor_name(name, p.suffix) for name, layer in zip(wanted, group) if name not in archive
                       for p in layer.params)
        return
    starts = [start for start in range(len(found) - len(group) + 1)
              if all(_fits(layer, archive[name]) for layer, name in zip(group, found[start:]))]
    by_name = [start for start in starts if found[start : start + len(group)] == wanted]
    if not by_name and len(starts) != 1:
        raise MatchError(_ambiguous(table, prefix, group, found, starts) if starts else
                         _no_fit(table, prefix, group, found, archive, early))
    start = (by_name or starts)[0]
    for layer, name in zip(group, found[start:]):
        pairs[layer] = name
        if name != layer.spelled(early):
            renames.append((_shown(name), _shown(layer.spelled(early))))


def _no_fit(table, prefix, group, found, archive, early):
    first = group[0].spelled(early)
    start = found.index(first) if first in found[: len(found) - len(group) + 1] else 0
    layer, name = next((layer, name) for layer, name in zip(group, found[start:]) if not _fits(layer, archive[name]))
    return (f"{_difference(layer, name, archive[name])}, and no other alignment of the archive's {len(found)} "
            f"___{prefix}_N__ layers with the {len(group)} of {table.title} fits either")


def _ambiguous(table, prefix, group, found, starts):
    where = " and from ".join(_shown(found[start]) for start in starts[:2])
    return (f"cannot tell which of the archive's {len(found)} ___{prefix}_N__ layers are the {len(group)} of "
            f"{table.title}: their sizes fit from {where} on (the training script built other layers of the same sizes)")


def _difference(layer, name, params):
    """The first way an archive layer's tensors differ from a table layer's, as words."""
    for param in layer.params:
        shown = tensor_name(name, param.suffix)
        if param.suffix not in params:
            return f"{shown} is missing ({param.key} {list(param.shape)} needs it)"
        if params[param.suffix] != param.size:
            return f"{shown} holds {params[param.suffix]:,} values where {param.key} {list(param.shape)} takes {param.size:,}"
    extra = sorted(set(params) - {param.suffix for param in layer.params})
    return f"{tensor_name(name, extra[0])} has no counterpart in {layer.params[0].key.rsplit('.', 1)[0]}"


def classifier_inputs(model_name, blocks=None):
    """Input width of the model's classifier: the last fc layer of its main path."""
    return _classifier_inputs(model_name, tuple(blocks) if blocks else None)


@functools.lru_cache(maxsize=None)  # identify asks for every model's, once per model variant
def _classifier_inputs(model_name, blocks):
    table = legacy_table(model_name, 1, **({"blocks": list(blocks)} if blocks else {}))
    return [layer for layer in table.layers if layer.kind == "fc" and not layer.optional][-1].params[0].shape[0]


def class_counts(model_name, tensors, **model_kwargs):
    """The class counts C for which some ``__fc_layer_N__`` of the archive could be the classifier: [in, C] and C."""
    width, counts = classifier_inputs(model_name, **model_kwargs), set()
    for name, params in archive_layers(tensors).items():
        if _prefix(name) == "fc_layer" and set(params) == {"w0", "wbias"} and params["w0"] == width * params["wbias"]:
            counts.add(params["wbias"])
    return sorted(counts)


def model_variants(model_name):
    """The constructor arguments to try: ``resnet18`` in its own shape, then in the legacy [2, 2, 2, 1] one."""
    return [{}, {"blocks": LEGACY_RESNET18_BLOCKS}] if model_name == "resnet18" else [{}]


def match_model(model_name, tensors):
    """The ``Match`` of an archive to a registered model, finding the class count and (ResNet-18) the shape."""
    error = None
    for kwargs in model_variants(model_name):
        matches = []
        for count in class_counts(model_name, tensors, **kwargs):
            try:
                matches.append(match_archive(legacy_table(model_name, count, **kwargs), tensors))
            except MatchError as exc:
                error = exc
        if len(matches) > 1:
            counts = " and ".join(str(m.table.model_kwargs["num_classes"]) for m in matches)
            raise MatchError(f"the archive fits {model_name} with {counts} classes: cannot tell which fc layer is its classifier")
        if matches:
            return matches[0]
    if error:
        raise error
    width = classifier_inputs(model_name)
    raise MatchError(f"no fc layer of the archive can be the classifier of {model_name} "
                     f"(a ___fc_layer_N__ with [{width}, C] weights and C biases)")


def identify(tensors, exclude):
    """``Match``es of the archive to the registered models other than ``exclude`` (an alias counted once)."""
    from .models import list_models

    found = {}
    for name in sorted(list_models(), key=len, reverse=True):  # resnet50 before its alias resnet
        if name == exclude:
            continue
        try:
            match = match_model(name, tensors)
        except MatchError:
            continue
        found.setdefault(match.table.layers, match)
    return list(found.values())


def check_configs(match, tensors):
    """Cross-check each placed tensor's ParameterConfig, where the archive has one, against its role.

    ``dims`` must be empty or describe the parameter (fc weights exactly [in, out]: the layout read
    here); a batch norm's moving mean and variance must be ``is_static``.
    """
    for layer in match.table.layers:
        for param in layer.params:
            name = match.placed.get(param.key)
            config = tensors[name].config if name else None
            if config is None:
                continue
            if not _dims_fit(tuple(config.dims), param.shape):
                raise MatchError(_dims_problem(name, tuple(config.dims), param))
            if layer.kind == "batch_norm" and param.suffix in MOVING_STATISTICS and not config.is_static:
                role = "mean" if param.suffix == "w1" else "variance"
                raise MatchError(f"{name}: its ParameterConfig is not static, but a batch norm's moving {role} "
                                 f"({param.key}) always is: the archive's layers do not line up with {match.table.title}")


def _dims_fit(dims, shape):
    if not dims or dims == shape:
        return True
    if len(shape) == 2:
        return False  # an fc weight: only [in, out] says the values are in the layout read here
    size = math.prod(shape)
    return dims in {(size,), (1, size), (size, 1)}


def _dims_problem(name, dims, param):
    if len(param.shape) == 2 and dims == param.shape[::-1]:
        return (f"{name}: its ParameterConfig says dims {list(dims)}, i.e. [out, in], the layout of MKL-DNN builds; "
                f"only the default [in, out] layout of {param.key} {list(param.shape)} can be converted")
    return f"{name}: dims {list(dims)} in its ParameterConfig do not describe {param.key} {list(param.shape)}"


def placed_weights(match, tensors):
    """``{key: float32 array}`` of every placed tensor, reshaped to this project's shape (never transposed)."""
    shapes = {param.key: param.shape for layer in match.table.layers for param in layer.params}
    return {key: tensors[name].values.reshape(shapes[key]) for key, name in match.placed.items()}

"""The single list of model names: ``register_model``, ``get_model`` and ``list_models``."""

_BUILDERS = {}


def register_model(name):
    """Register a builder ``fn(num_classes=102, **kwargs) -> paddle.nn.Layer`` under ``name``."""

    def decorate(builder):
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        _BUILDERS[name] = builder
        return builder

    return decorate


def list_models():
    """The names ``get_model`` accepts, sorted."""
    return sorted(_BUILDERS)


def get_model(name, num_classes=102, **kwargs):
    """Build the model registered as ``name`` (e.g. ``"googlenet"``) with ``num_classes`` outputs."""
    if name not in _BUILDERS:
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(list_models())}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    return _BUILDERS[name](num_classes=num_classes, **kwargs)

"""An exponential moving average of a model's weights (``train.py --ema DECAY``).

After every optimizer step, each trainable parameter's average becomes
``decay · average + (1 - decay) · parameter``; buffers and frozen tensors (batch-norm statistics)
are copied as they are. The averages start at the weights the run starts from and are kept in
float32 whatever the training precision: an average kept in float16 loses the small updates
``(1 - decay) · parameter`` to rounding, and a float16 EMA of a long run stops moving.
After k steps with a constant parameter sequence w_1..w_k, average = decay^k · w_0 + (1 - decay) ·
Σ_i decay^(k-i) · w_i. Its time constant is 1 / (1 - decay) steps: 0.999 averages over the last
~1,000 steps, 0.9998 (torchvision's recipe) over ~5,000.
"""

import contextlib

from .runtime import import_paddle

paddle = import_paddle()


class ModelEMA:
    """Float32 averages of ``model``'s state, updated by ``update()`` after each optimizer step."""

    def __init__(self, model, decay):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"the EMA decay must lie strictly between 0 and 1, got {decay}")
        self.model = model
        self.decay = float(decay)
        self.averaged = {name for name, p in model.named_parameters() if not p.stop_gradient}
        self.values = {name: _float32_copy(value) for name, value in model.state_dict().items()}

    @paddle.no_grad()
    def update(self):
        """Move the averages towards the model's current weights (call after the optimizer step)."""
        for name, value in self.model.state_dict().items():
            if name in self.averaged:
                self.values[name] = self.values[name] * self.decay + value.astype("float32") * (1.0 - self.decay)
            else:
                self.values[name] = _float32_copy(value)

    def state_dict(self):
        """The averages as NumPy float32 arrays (for checkpoints) and the decay."""
        return {"decay": self.decay, "values": {name: value.numpy() for name, value in self.values.items()}}

    def set_state_dict(self, state):
        self.decay = float(state["decay"])
        self.values = {name: paddle.to_tensor(value, dtype="float32") for name, value in state["values"].items()}

    @contextlib.contextmanager
    def applied(self):
        """Run the block with the averages in the model (cast to its dtypes), then put its weights back."""
        state = self.model.state_dict()
        kept = {name: value.clone() for name, value in state.items()}
        self.model.set_state_dict({name: self.values[name].astype(value.dtype) for name, value in state.items()})
        try:
            yield self.model
        finally:
            self.model.set_state_dict(kept)


def _float32_copy(value):
    return value.detach().astype("float32").clone()

"""Learning-rate schedules, set once per optimizer step: the legacy ``discexp`` and the modern ones.

lr = base_lr · warmup(step) · shape, where ``step`` counts the optimizer steps of the run from 1 and

* ``discexp`` (the legacy default): shape = rate ^ floor(samples / decay_samples), ``samples`` the
  training samples processed so far *including the current batch*, never reset between epochs,
  exactly as the legacy ``DiscreteExpLRS`` counted them;
* ``step``: shape = rate ^ floor((step - 1) / decay_steps), i.e. ×rate every ``decay_steps`` steps
  (``--lr-decay-epochs`` epochs of steps), as torchvision's ``StepLR``;
* ``cosine``: shape = (1 + cos(π · (step - 1) / total_steps)) / 2, from base_lr to 0 over the run;
* warmup(step) = min(1, step / warmup_steps): a linear rise over the first ``warmup_steps`` steps
  that multiplies whichever shape is chosen (1 when ``warmup_steps`` is 0).

The state is ``last_epoch`` (Paddle's name; here the steps taken), ``last_lr`` and ``samples_seen``,
so a resumed run continues the same curve step for step.
"""

import math

from paddle.optimizer.lr import LRScheduler

SCHEDULES = ("discexp", "cosine", "step")


class TrainingSchedule(LRScheduler):
    """The learning rate of each optimizer step; call ``start_batch(n)`` before each step with the
    global batch size (all ranks)."""

    def __init__(self, learning_rate, kind="discexp", decay_rate=0.1, decay_samples=4_480_000, decay_steps=None,
                 total_steps=None, warmup_steps=0):
        if kind not in SCHEDULES:
            raise ValueError(f"kind must be one of {', '.join(SCHEDULES)}, got {kind!r}")
        if kind == "discexp" and decay_samples <= 0:
            raise ValueError(f"decay_samples must be positive, got {decay_samples}")
        if kind == "step" and not (decay_steps and decay_steps > 0):
            raise ValueError(f"the step schedule needs a positive decay_steps, got {decay_steps}")
        if kind == "cosine" and not (total_steps and total_steps > 0):
            raise ValueError(f"the cosine schedule needs a positive total_steps, got {total_steps}")
        self.kind = kind
        self.decay_rate = float(decay_rate)
        self.decay_samples = int(decay_samples)
        self.decay_steps = decay_steps
        self.total_steps = total_steps
        self.warmup_steps = int(warmup_steps)
        self.samples_seen = 0
        super().__init__(learning_rate)  # calls step() once: last_epoch 0, the rate before any batch

    def get_lr(self):
        step = self.last_epoch  # steps taken, the current one included
        if self.kind == "discexp":
            shape = self.decay_rate ** (self.samples_seen // self.decay_samples)
        elif self.kind == "step":
            shape = self.decay_rate ** (max(step - 1, 0) // self.decay_steps)
        else:
            shape = (1 + math.cos(math.pi * min(max(step - 1, 0), self.total_steps) / self.total_steps)) / 2
        warmup = min(1.0, step / self.warmup_steps) if self.warmup_steps else 1.0
        return self.base_lr * warmup * shape

    def start_batch(self, batch_size):
        """Count a batch of ``batch_size`` samples and set the rate it trains with."""
        self.samples_seen += int(batch_size)
        self.step()

    def state_keys(self):
        self.keys = ["last_epoch", "last_lr", "samples_seen"]

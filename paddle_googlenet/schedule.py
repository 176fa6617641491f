"""The legacy ``discexp`` learning-rate schedule, counted in samples as ``paddle.v2`` counted them."""

from paddle.optimizer.lr import LRScheduler


class DiscreteExpDecay(LRScheduler):
    """lr = base_lr · decay_rate ^ floor(samples_seen / decay_samples).

    ``samples_seen`` is the number of training samples processed so far *including the current
    batch* and is never reset between epochs, exactly as the legacy ``DiscreteExpLRS`` did. Call
    ``start_batch(n)`` before each optimizer step with the global batch size (all ranks).
    """

    def __init__(self, learning_rate, decay_rate=0.1, decay_samples=4_480_000):
        if decay_samples <= 0:
            raise ValueError(f"decay_samples must be positive, got {decay_samples}")
        self.decay_rate = float(decay_rate)
        self.decay_samples = int(decay_samples)
        self.samples_seen = 0
        super().__init__(learning_rate)

    def get_lr(self):
        return self.base_lr * self.decay_rate ** (self.samples_seen // self.decay_samples)

    def start_batch(self, batch_size):
        """Count a batch of ``batch_size`` samples and set the rate it trains with."""
        self.samples_seen += int(batch_size)
        self.step()

    def state_keys(self):
        self.keys = ["last_epoch", "last_lr", "samples_seen"]

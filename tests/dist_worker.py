"""Run train.py's main and save this rank's weights before and after training (and its EMA, if any).

Used by test_training.py, alone or under ``python -m paddle.distributed.launch --nproc_per_node 2``:
``dist_worker.py WEIGHTS_DIR TRAIN_ARGS...`` writes ``WEIGHTS_DIR/rank<r>.npz`` with ``initial/<name>``,
``final/<name>`` and, with ``--ema``, ``ema/<name>`` arrays, observed through train.py's public callbacks.
"""

import sys

from paddle_googlenet import configure_threads

configure_threads()  # before Paddle is imported, as train.py does
import numpy as np  # noqa: E402

from paddle_googlenet import distributed, training  # noqa: E402


class WeightRecorder:
    """Keeps the model's weights when the run starts and, with its EMA, when it ends."""

    def __init__(self):
        self.arrays = {}

    def on_start(self, run):
        self.arrays.update({f"initial/{name}": value.numpy().copy() for name, value in run.model.state_dict().items()})

    def on_end(self, run, code):
        self.arrays.update({f"final/{name}": value.numpy() for name, value in run.model.state_dict().items()})
        if run.ema is not None:
            self.arrays.update({f"ema/{name}": value for name, value in run.ema.state_dict()["values"].items()})


if __name__ == "__main__":
    weights_dir, train_args = sys.argv[1], sys.argv[2:]
    recorder = WeightRecorder()
    code = training.main(train_args, callbacks=[recorder])
    np.savez(f"{weights_dir}/rank{distributed.rank()}.npz", **recorder.arrays)
    sys.exit(code)

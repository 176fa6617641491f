"""Run train.py's main and save this rank's weights before and after training (and its EMA, if any).

Used by test_training.py, alone or under ``python -m paddle.distributed.launch --nproc_per_node 2``:
``dist_worker.py WEIGHTS_DIR TRAIN_ARGS...`` writes ``WEIGHTS_DIR/rank<r>.npz`` with ``initial/<name>``,
``final/<name>`` and, with ``--ema``, ``ema/<name>`` arrays.
"""

import sys

from paddle_googlenet import configure_threads

configure_threads()  # before Paddle is imported, as train.py does
import numpy as np  # noqa: E402

from paddle_googlenet import distributed, training  # noqa: E402

built, averages = [], []


def capture_model(*args, **kwargs):
    model = original_get_model(*args, **kwargs)
    built.append((model, {name: value.numpy().copy() for name, value in model.state_dict().items()}))
    return model


class CapturedEMA(training.ModelEMA):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        averages.append(self)


if __name__ == "__main__":
    weights_dir, train_args = sys.argv[1], sys.argv[2:]
    original_get_model, training.get_model = training.get_model, capture_model
    training.ModelEMA = CapturedEMA
    code = training.main(train_args)
    model, initial = built[0]
    final = {name: value.numpy() for name, value in model.state_dict().items()}
    arrays = {**{f"initial/{k}": v for k, v in initial.items()}, **{f"final/{k}": v for k, v in final.items()}}
    if averages:
        arrays.update({f"ema/{k}": v for k, v in averages[0].state_dict()["values"].items()})
    np.savez(f"{weights_dir}/rank{distributed.rank()}.npz", **arrays)
    sys.exit(code)

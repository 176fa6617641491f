"""Run train.py's main under ``paddle.distributed.launch`` and save this rank's final weights.

Used by test_training.py: ``python -m paddle.distributed.launch --nproc_per_node 2 dist_worker.py WEIGHTS_DIR TRAIN_ARGS...``.
"""

import sys

import numpy as np

import paddle_googlenet  # noqa: F401
from paddle_googlenet import distributed, training

built = []


def capture_model(*args, **kwargs):
    model = original_get_model(*args, **kwargs)
    built.append(model)
    return model


if __name__ == "__main__":
    weights_dir, train_args = sys.argv[1], sys.argv[2:]
    original_get_model, training.get_model = training.get_model, capture_model
    code = training.main(train_args)
    np.savez(f"{weights_dir}/rank{distributed.rank()}.npz", **{k: v.numpy() for k, v in built[0].state_dict().items()})
    sys.exit(code)

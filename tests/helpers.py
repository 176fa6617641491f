"""What the tests share: a tiny image dataset written to disk, train.py command lines, and readers of a run's files."""

import subprocess
import sys
from pathlib import Path

import numpy as np

from paddle_googlenet.run_folder import read_metrics  # noqa: F401  (the tests read metrics.jsonl as the package does)

REPO = Path(__file__).resolve().parents[1]
CLASS_NAMES = ["blue square", "green square", "red square"]  # of the tiny dataset's labels 0, 1, 2


def write_tiny_list_dataset(root, classes=3, per_class=8, size=72, seed=0):
    """PNG images of coloured squares, one colour per class, and train/val list files; returns the lists."""
    import cv2

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = {"train": [], "val": []}
    for label in range(classes):
        colour = np.zeros(3)
        colour[label % 3] = 200
        for i in range(per_class):
            image = rng.integers(0, 60, (size, size, 3)).astype(np.float64)
            image[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] += colour
            name = f"c{label}_{i}.png"
            cv2.imwrite(str(root / name), np.clip(image, 0, 255).astype(np.uint8))
            lines["val" if i % 4 == 0 else "train"].append(f"{name}\t{label}")
    for split, split_lines in lines.items():
        (root / f"{split}.txt").write_text("\n".join(split_lines) + "\n")
    return root / "train.txt", root / "val.txt"


def tiny_args(lists, output, *extra, model="googlenet", epochs=2):
    """train.py arguments for a short run on the tiny list dataset: 64×64, batch 6, no loader workers."""
    train_list, val_list = lists
    return [model, "--dataset", "list", "--train-list", str(train_list), "--val-list", str(val_list),
            "--image-size", "64", "--batch-size", "6", "--epochs", str(epochs), "--workers", "0", "--output", str(output),
            *map(str, extra)]


def run_main(main, capsys, argv):
    """``(exit code, stdout, stderr)`` of a command's ``main`` run in this process."""
    code = main([str(arg) for arg in argv])
    out, err = capsys.readouterr()
    return code, out, err


def run_script(script, *args, **kwargs):
    """``subprocess.run`` of a script of the repository (``train.py``, ``infer.py``) or ``-m module``, text output."""
    command = [sys.executable, *(["-m", script[3:]] if script.startswith("-m ") else [str(REPO / script)]), *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=kwargs.pop("timeout", 600), **kwargs)


def start_script(script, *args, **kwargs):
    """``subprocess.Popen`` of a script of the repository, its output as text pipes."""
    return subprocess.Popen([sys.executable, str(REPO / script), *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def run_files(folder):
    """Every file under ``folder`` with its bytes: what a command must leave untouched."""
    return {path: path.read_bytes() for path in sorted(Path(folder).rglob("*")) if path.is_file()}


def weights(state):
    """A checkpoint's weights as NumPy arrays."""
    return {name: np.asarray(value) for name, value in state["model"].items()}

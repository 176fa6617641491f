"""Files from elsewhere never run code: every entry point refuses a crafted file in one line, before any work,
and still loads every legitimate kind of file (tests/test_safe_load.py checks the loader itself)."""

import os
import pickle

import numpy as np
import paddle
import pytest

from paddle_googlenet import export, inference
from paddle_googlenet.checkpoint import load_checkpoint
from paddle_googlenet.models import get_model
from paddle_googlenet.training import main as train_main

from helpers import run_main, tiny_args, weights


class RunsCommand:
    """Pickles as ``os.system(command)``: what ``paddle.load`` would run on opening the file."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


def crafted(path, marker):
    """A file that, unpickled, creates ``marker``: a dict like a checkpoint or a state dict with a hidden payload."""
    payload = {"format": "paddle-googlenet-checkpoint", "model": {"fc.weight": np.zeros((2, 2), np.float32)},
               "note": RunsCommand(f"touch '{marker}'")}
    with open(path, "wb") as stream:
        pickle.dump(payload, stream, protocol=4)
    return path


@pytest.fixture
def evil(tmp_path):
    marker = tmp_path / "RAN"
    return crafted(tmp_path / "evil.pdckpt", marker), crafted(tmp_path / "evil.pdparams", marker), marker


def assert_refused(code, err, path, marker, prog):
    assert code == 2, err
    assert err.startswith(f"{prog}: error: {path}: refused to load") and err.count("\n") == 1, err
    assert "system" in err and "Traceback" not in err
    assert not marker.exists(), "the crafted file ran its command"


@pytest.mark.parametrize("flag", ["--pretrained", "--resume", "--eval-only"])
def test_train_py_refuses_a_crafted_file(flag, evil, tiny_lists, tmp_path, capsys):
    checkpoint, state_dict, marker = evil
    path = state_dict if flag == "--pretrained" else checkpoint
    argv = tiny_args(tiny_lists, tmp_path / "out", flag, path, epochs=1)
    if flag == "--eval-only":
        argv = [arg for arg in argv if arg not in ("--output", str(tmp_path / "out"))]
    code, _, err = run_main(train_main, capsys, argv)
    assert_refused(code, err, path, marker, "train.py")
    assert not (tmp_path / "out").exists()


def test_a_crafted_file_named_pretrained_checkpoint_is_refused_too(evil, tiny_lists, tmp_path, capsys):
    checkpoint, _, marker = evil
    code, _, err = run_main(train_main, capsys, tiny_args(tiny_lists, tmp_path / "out", "--pretrained", checkpoint, epochs=1))
    assert_refused(code, err, checkpoint, marker, "train.py")


def test_infer_py_and_export_refuse_a_crafted_checkpoint(evil, tiny_lists, tmp_path, capsys):
    checkpoint, _, marker = evil
    image = next(tiny_lists[0].parent.glob("*.png"))
    code, out, err = run_main(inference.main, capsys, [checkpoint, image])
    assert_refused(code, err, checkpoint, marker, "infer.py")
    code, out, err = run_main(export.main, capsys, [checkpoint, "--output", tmp_path / "export"])
    assert_refused(code, err, checkpoint, marker, "python -m paddle_googlenet.export")
    assert not (tmp_path / "export").exists()


def test_every_legitimate_kind_still_loads_bit_equal(checkpoint, tiny_lists, tmp_path, capsys):
    """A checkpoint (with its optimizer state), a paddle.save state dict, paddle.vision weights and safetensors."""
    state = load_checkpoint(checkpoint)
    assert isinstance(state["optimizer"], dict) and state["optimizer"] and state["lr_scheduler"]["last_epoch"] > 0
    paddle.seed(3)
    model = get_model("googlenet", num_classes=3)
    paddle.save(model.state_dict(), str(tmp_path / "mine.pdparams"))
    vision = paddle.vision.models.resnet18(num_classes=3)
    paddle.save(vision.state_dict(), str(tmp_path / "vision.pdparams"), protocol=2)  # as older downloads were written
    for path, name in ((tmp_path / "mine.pdparams", "googlenet"), (tmp_path / "vision.pdparams", "resnet18"), (checkpoint, "googlenet")):
        code, out, err = run_main(train_main, capsys, tiny_args(tiny_lists, tmp_path / f"run-{path.stem}-{name}", "--pretrained", path,
                                                                model=name, epochs=1, ))
        assert code == 0, err
        assert "tensors loaded from" in out
    started = weights(load_checkpoint(tmp_path / "run-mine-googlenet" / "latest.pdckpt"))
    assert started.keys() == model.state_dict().keys()
    exported = tmp_path / "export"
    assert export.main([str(checkpoint), "--output", str(exported), "--safetensors"]) == 0
    pytest.importorskip("safetensors")
    from paddle_googlenet.safe_load import load_safetensors

    shared = load_safetensors(exported / "model.safetensors")
    for name, value in weights(state).items():
        np.testing.assert_array_equal(shared[name], value, err_msg=name)
    code, out, err = run_main(train_main, capsys, tiny_args(tiny_lists, tmp_path / "from-safetensors", "--pretrained",
                                                            exported / "model.safetensors", epochs=1))
    assert code == 0 and f"{len(shared)} tensors loaded" in out, err
